/* threads.c - one knob for the thread count of OpenMP kernels (and OpenBLAS's, when the build
 * uses it: -DSIMILE_BLAS=openblas). */
#include "core.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef SM_BLAS_OPENBLAS
extern void openblas_set_num_threads(int);
#endif

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
#ifdef SM_BLAS_OPENBLAS
    openblas_set_num_threads(n);
#endif
}

int sm_get_num_threads(void) {
    if (g_threads <= 0) sm_set_num_threads(0);
    return g_threads;
}
