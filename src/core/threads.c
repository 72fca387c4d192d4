/* threads.c - one knob for the thread count of OpenMP kernels and OpenBLAS. */
#include "core.h"
#ifdef _OPENMP
#include <omp.h>
#endif

extern void openblas_set_num_threads(int);
extern int openblas_get_num_procs(void);

static int g_threads = 0;

void sm_set_num_threads(int n) {
    if (n <= 0) {
#ifdef _OPENMP
        n = omp_get_num_procs();
#else
        n = 1;
#endif
    }
    g_threads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

int sm_get_num_threads(void) {
    if (g_threads <= 0) sm_set_num_threads(0);
    return g_threads;
}
