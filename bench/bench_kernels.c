/* bench_kernels.c - GFLOP/s of simile's own GEMM (src/backend/cpu/gemm*.c) at the shapes cnn-s
 * and the search use, on every instruction-set path this CPU has (forced with sm_set_isa),
 * beside OpenBLAS's sgemm at the same shapes (the peer only: loaded with dlopen, so simile
 * itself links no BLAS) and beside the CPU's fp32 peak, given on the command line or measured.
 *   bench_kernels [--threads N] [--peak GFLOPS|measure] [--openblas PATH] [--seconds S] [--clock wall|cpu]
 *                 [--only TEXT] (only the shapes whose name contains TEXT)
 *                 [--isa NAME] (only that path: scalar, avx2 or avx512)
 * (--peak measure: every thread runs 12 independent chains of FMAs of the widest vector the CPU
 * has (256 or 512 bits) for about half a second, three times; the figure is the best of the
 * three, FLOP over wall time with all threads busy at once, so it includes whatever clock the
 * CPU holds under that load)
 * (--clock cpu times with the process's CPU seconds: with --threads 1 that leaves out the time
 * other processes take on a shared machine; with more threads it would count OpenMP's spinning)
 * Shapes (row-major, C (m, n) = op(A) op(B), as the layers call them; B = batch):
 *   conv1/2/3 fwd   im2col (B*HW, 9*ic) times W^T (9*ic, oc): 28x28x1->32, 14x14x32->64, 7x7x64->128
 *   conv2/3 dx      dy (B*HW, oc) times W (oc, 9*ic)
 *   conv1/2/3 dW    dy^T (oc, B*HW) times col (B*HW, 9*ic), sm_k_gemm_at_b (k-chunked; the peer
 *                   runs one sgemm over the whole k)
 *   conv1 direct    the 1-channel first layer as the layers run it (sm_k_conv1ch, sm_k_conv1ch_dw:
 *                   no im2col; plain C vectorised by the compiler, the same code in every path's
 *                   column); the peer runs the im2col product of the same shape (im2col not timed)
 *   fc fwd          (B, 128) times W^T (128, 64)
 *   search tile     4096 queries x 1024 database rows x 128 (one tile of 200k x 128)
 *   search 1 query  sgemv: 200k x 128 database times one query
 * Each figure is the best of 3 timings of repeated calls (at least --seconds each). */
#include "backend/cpu/kernels.h"
#include "core/core.h"
#include "simile.h"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *,
                         int);
typedef void (*sgemv_fn)(int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
static sgemm_fn peer_gemm;
static sgemv_fn peer_gemv;
enum { ROW = 101, NOTRANS = 111, TRANS = 112 }; /* CBLAS enum values */

static int cpu_clock; /* --clock cpu: process CPU time (for --threads 1 on a loaded machine) */
static double now(void) {
    struct timespec t;
    clock_gettime(cpu_clock ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

typedef struct {
    const char *name;
    int kind; /* 0 gemm, 1 at_b, 2 gemv, 3 direct 1-channel conv forward, 4 its weight gradient */
    int ta, tb, m, n, k;
} shape;

static float *A, *B, *C;
static sm_ws ws;
static double min_seconds = 0.3;

static void run_own(const shape *s) {
    if (s->kind == 0)
        sm_k_gemm(s->ta, s->tb, s->m, s->n, s->k, 1.0f, A, s->ta ? s->m : s->k, B, s->tb ? s->k : s->n, 0.0f, C, s->n);
    else if (s->kind == 1)
        sm_k_gemm_at_b(s->m, s->n, s->k, A, s->m, B, s->n, C, s->n, &ws);
    else if (s->kind == 3) /* x (m / 784 images of 28x28) in A, W (n, 9) in B */
        sm_k_conv1ch(A, s->m / 784, 28, 28, 3, 1, 1, 28, 28, B, s->n, C);
    else if (s->kind == 4) /* x (k / 784 images) in B, dy (k, m) in A */
        sm_k_conv1ch_dw(B, A, (int)(s->k / 784), 28, 28, 3, 1, 1, 28, 28, s->m, C, &ws);
    else
        sm_k_gemv(0, s->m, s->k, 1.0f, A, s->k, B, 1, 0.0f, C, 1);
}

static void run_peer(const shape *s) {
    if (s->kind == 2)
        peer_gemv(ROW, NOTRANS, s->m, s->k, 1.0f, A, s->k, B, 1, 0.0f, C, 1);
    else
        peer_gemm(ROW, s->ta ? TRANS : NOTRANS, s->tb ? TRANS : NOTRANS, s->m, s->n, s->k, 1.0f, A, s->ta ? s->m : s->k,
                  B, s->tb ? s->k : s->n, 0.0f, C, s->n);
}

/* The fp32 FMA peak with every thread busy: 12 independent accumulator chains (more than FMA
 * latency x FMA units on the CPUs we know), 2 FLOP x lanes per FMA. */
#define PEAK_STEPS 2000000000L /* lanes x steps: about 0.5 s a timing at 3 GHz */
#define PEAK_BODY(V, FMA, SET)                                                                           \
    V a0 = SET(1.0f), a1 = SET(1.1f), a2 = SET(1.2f), a3 = SET(1.3f), a4 = SET(1.4f), a5 = SET(1.5f);    \
    V a6 = SET(1.6f), a7 = SET(1.7f), a8 = SET(1.8f), a9 = SET(1.9f), a10 = SET(2.0f), a11 = SET(2.1f); \
    const V b = SET(0.99999f), c = SET(1e-7f);                                                         \
    for (long i = 0; i < steps; i++) {                                                                 \
        a0 = FMA(a0, b, c), a1 = FMA(a1, b, c), a2 = FMA(a2, b, c), a3 = FMA(a3, b, c);                \
        a4 = FMA(a4, b, c), a5 = FMA(a5, b, c), a6 = FMA(a6, b, c), a7 = FMA(a7, b, c);                \
        a8 = FMA(a8, b, c), a9 = FMA(a9, b, c), a10 = FMA(a10, b, c), a11 = FMA(a11, b, c);            \
        __asm__ volatile("" ::: "memory");                                                             \
    }                                                                                                  \
    V s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;                                \
    return s[0];
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx2,fma"))) static float fma_chains256(long steps) {
    PEAK_BODY(__m256, _mm256_fmadd_ps, _mm256_set1_ps)
}
__attribute__((target("avx512f"))) static float fma_chains512(long steps) {
    PEAK_BODY(__m512, _mm512_fmadd_ps, _mm512_set1_ps)
}
static double measure_peak(void) {
    int wide = __builtin_cpu_supports("avx512f") ? 16 : __builtin_cpu_supports("fma") ? 8 : 0;
    if (!wide) return 0;
    long steps = PEAK_STEPS / wide;
    float sink = 0;
    int nt = 1, saved_clock = cpu_clock;
    cpu_clock = 0; /* wall time: the peak is all threads at once */
    double best = 0;
    for (int rep = 0; rep < 3; rep++) { /* the best of 3 timings */
#pragma omp parallel num_threads(sm_get_num_threads())
        { /* start the threads outside the timing */
        }
        double t0 = now();
#pragma omp parallel num_threads(sm_get_num_threads()) reduction(+ : sink)
        {
#ifdef _OPENMP
#pragma omp single
            nt = omp_get_num_threads();
#endif
            sink += wide == 16 ? fma_chains512(steps) : fma_chains256(steps);
        }
        double g = (double)nt * steps * 12 * 2 * wide / (now() - t0) * 1e-9;
        best = g > best ? g : best;
    }
    cpu_clock = saved_clock;
    if (sink == 12345.0f) printf(" ");
    return best;
}
#else
static double measure_peak(void) { return 0; }
#endif

static double gflops(const shape *s, void (*fn)(const shape *)) {
    double flop = 2.0 * s->m * (s->kind == 2 ? 1 : s->n) * s->k, best = 0;
    fn(s); /* warm up */
    for (int rep = 0; rep < 3; rep++) {
        int calls = 0;
        double t0 = now(), t;
        do {
            fn(s);
            calls++;
        } while ((t = now() - t0) < min_seconds);
        double g = flop * calls / t * 1e-9;
        if (g > best) best = g;
    }
    return best;
}

int main(int argc, char **argv) {
    int threads = 0;
    double peak = 0;
    const char *blas = "/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0", *only = NULL, *isa = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--peak")) peak = !strcmp(argv[i + 1], "measure") ? -1 : atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--openblas")) blas = argv[i + 1];
        else if (!strcmp(argv[i], "--seconds")) min_seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--clock")) cpu_clock = !strcmp(argv[i + 1], "cpu");
        else if (!strcmp(argv[i], "--only")) only = argv[i + 1];
        else if (!strcmp(argv[i], "--isa")) isa = argv[i + 1];
        else { fprintf(stderr, "bench_kernels: unknown option %s\n", argv[i]); return 2; }
    }
    sm_set_num_threads(threads);
    int measured = peak < 0;
    if (measured && (peak = measure_peak()) <= 0)
        fprintf(stderr, "bench_kernels: no FMA on this CPU; no peak measured\n"), peak = 0;
    void *h = dlopen(blas, RTLD_NOW | RTLD_LOCAL);
    const char *(*corename)(void) = NULL;
    if (h) {
        peer_gemm = (sgemm_fn)dlsym(h, "cblas_sgemm");
        peer_gemv = (sgemv_fn)dlsym(h, "cblas_sgemv");
        void (*set_threads)(int) = (void (*)(int))dlsym(h, "openblas_set_num_threads");
        corename = (const char *(*)(void))dlsym(h, "openblas_get_corename");
        if (set_threads) set_threads(sm_get_num_threads());
    }
    if (!peer_gemm || !peer_gemv) fprintf(stderr, "bench_kernels: no OpenBLAS peer (%s): %s\n", blas, dlerror());

    const int batch = 128;
    const shape shapes[] = {
        {"conv1 fwd  (B*784, 9) x (9, 32)", 0, 0, 1, batch * 784, 32, 9},
        {"conv2 fwd  (B*196, 288) x (288, 64)", 0, 0, 1, batch * 196, 64, 288},
        {"conv3 fwd  (B*49, 576) x (576, 128)", 0, 0, 1, batch * 49, 128, 576},
        {"conv3 fwd, batch 256", 0, 0, 1, 256 * 49, 128, 576},
        {"conv2 dx   (B*196, 64) x (64, 288)", 0, 0, 0, batch * 196, 288, 64},
        {"conv3 dx   (B*49, 128) x (128, 576)", 0, 0, 0, batch * 49, 576, 128},
        {"conv1 dW   (32, B*784) x (B*784, 9)", 1, 1, 0, 32, 9, batch * 784},
        {"conv1 fwd, direct (no im2col)", 3, 0, 1, batch * 784, 32, 9},
        {"conv1 dW, direct (no im2col)", 4, 1, 0, 32, 9, batch * 784},
        {"conv2 dW   (64, B*196) x (B*196, 288)", 1, 1, 0, 64, 288, batch * 196},
        {"conv3 dW   (128, B*49) x (B*49, 576)", 1, 1, 0, 128, 576, batch * 49},
        {"fc fwd     (B, 128) x (128, 64)", 0, 0, 1, batch, 64, 128},
        {"search tile 4096 x 1024 x 128", 0, 0, 1, 4096, 1024, 128},
        {"search 1 query: 200k x 128 gemv", 2, 0, 0, 200000, 1, 128},
    };
    const int ns = sizeof shapes / sizeof shapes[0];
    size_t na = 0, nb = 0, nc = 0, nws = 0;
    for (int i = 0; i < ns; i++) {
        const shape *s = &shapes[i];
        size_t a = (size_t)s->m * s->k, b = (size_t)s->k * (s->kind == 2 ? 1 : s->n), c = (size_t)s->m * s->n;
        na = a > na ? a : na, nb = b > nb ? b : nb, nc = c > nc ? c : nc;
        if (s->kind == 1 || s->kind == 4) {
            size_t w = s->kind == 1 ? sm_k_gemm_at_b_ws(s->m, s->n, s->k) : sm_k_conv1ch_dw_ws(s->m, 3, s->k);
            nws = w > nws ? w : nws;
        }
    }
    A = malloc(na * sizeof(float)), B = malloc(nb * sizeof(float)), C = malloc(nc * sizeof(float));
    ws.base = nws ? malloc(nws) : NULL, ws.bytes = nws;
    sm_rng r;
    sm_rng_seed(&r, 1);
    for (size_t i = 0; i < na; i++) A[i] = sm_rng_normal(&r);
    for (size_t i = 0; i < nb; i++) B[i] = sm_rng_normal(&r);

    sm_compute_info ci;
    sm_compute_info_get(&ci);
    const char *paths[3];
    int np = 0;
    const char *all[] = {"avx512", "avx2", "scalar"};
    for (int i = 0; i < 3; i++)
        if ((!isa || !strcmp(isa, all[i])) && sm_set_isa(all[i]) == SM_OK) paths[np++] = all[i];
    printf("cpu %s (family %d model %d), %d threads, batch %d; OpenBLAS peer core %s; fp32 peak %.0f GFLOP/s%s; %s clock\n\n",
           ci.cpu, ci.cpu_family, ci.cpu_model, sm_get_num_threads(), batch, corename ? corename() : "-", peak,
           measured ? " (measured: FMA chains on every thread)" : "",
           cpu_clock ? "CPU-time" : "wall");
    printf("| shape |");
    for (int p = 0; p < np; p++) printf(" simile %s |", paths[p]);
    printf(" OpenBLAS | best simile / OpenBLAS |%s\n", peak > 0 ? " best simile / peak |" : "");
    printf("|---|");
    for (int p = 0; p < np; p++) printf("---|");
    printf("---|---|%s\n", peak > 0 ? "---|" : "");
    for (int i = 0; i < ns; i++) {
        const shape *s = &shapes[i];
        if (only && !strstr(s->name, only)) continue;
        printf("| %s |", s->name);
        double best = 0;
        for (int p = 0; p < np; p++) {
            sm_set_isa(paths[p]);
            double g = gflops(s, run_own);
            best = g > best ? g : best;
            printf(" %.1f |", g);
            fflush(stdout);
        }
        double gp = peer_gemm ? gflops(s, run_peer) : 0;
        printf(" %.1f | %.2f |", gp, gp > 0 ? best / gp : 0);
        if (peak > 0) printf(" %.0f%% |", 100 * best / peak);
        printf("\n");
        fflush(stdout);
    }
    sm_set_isa("auto");
    free(A), free(B), free(C), free(ws.base);
    return 0;
}
