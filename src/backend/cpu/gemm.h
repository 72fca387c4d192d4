/* gemm.h - simile's own single-precision matrix products (src/backend/cpu/gemm*.c): the
 * interface between the driver (gemm.c: packing, blocking, threading, the alpha/beta pass, the
 * run-time choice of a path) and the micro-kernels of each instruction set (gemm_avx512.c,
 * gemm_avx2.c, gemm_scalar.c, each compiled with its own target flags).
 *
 * The determinism rule every path keeps: an output element is one chain of fused multiply-adds
 * over k in order 0, 1, ..., k-1, starting from 0 (acc = fma(a_t, b_t, acc)), and only then
 * alpha * acc + beta * c, computed by the driver's shared C code.  Vector lanes each own
 * distinct outputs; blocking k only stores the float accumulator and loads it back, which is
 * exact; threads own whole output blocks.  So every path and every thread count give the same
 * bits. */
#ifndef SM_BACKEND_GEMM_H
#define SM_BACKEND_GEMM_H
#include <stdint.h>

/* Largest blocking any path uses: the driver's per-thread stack buffers are this size. */
#define SM_GEMM_MC 96  /* rows per block when partial sums wait in a buffer (a multiple of every mr) */
#define SM_GEMM_KC 640 /* k per packed block of op(B): the layers' k (9 to 576) fit in one */
#define SM_GEMM_NC 128 /* columns of op(B) per packed block (a multiple of every path's nr) */
#define SM_GEMV_L 64   /* outputs per gemv block (every path) */
#define SM_GEMV_KC 256 /* k per gemv block (the row block's cache lines stay in L1) */

#define SM_UKR_LOAD 1   /* start from the partial sums in C */
#define SM_UKR_FINISH 2 /* apply alpha and beta (the last k-block) */

typedef struct sm_gemm_kernels {
    const char *name; /* "scalar", "avx2", "avx512" */
    int mr, nr;       /* micro-tile: mr rows x nr columns of C held in registers */
    /* One (mr, nr) tile of C (row stride ldc, any alignment): acc = (flags & SM_UKR_LOAD ? C : 0)
     * + sum over t < kc (in order) of a[r * rs + t * cs] * Bp[t][c] as a chain of fmas; then
     * C = acc, or with SM_UKR_FINISH C = alpha * acc (+ beta * C when beta != 0), rounded as the
     * driver's C does (no contraction).  a is op(A)'s rows in place (rs = lda, cs = 1, or rs = 1,
     * cs = lda) or a packed, zero-padded panel (rs = 1, cs = mr: an edge panel, and on the avx2
     * and scalar paths every panel of an op(A) = A^T); Bp (kc, nr) packed and zero-padded,
     * 64-byte aligned. */
    void (*ukr)(int kc, const float *a, int64_t rs, int64_t cs, const float *Bp, float *C, int64_t ldc, int flags,
                float alpha, float beta);
    /* acc (rows <= SM_GEMV_L) = (load ? acc : 0) + fma chain over t < kc of A[r * lda + t] *
     * x[t * incx], A in place (rows of it, gathered a column at a time): lanes over the rows of
     * y = A x. */
    void (*gemv_n)(int kc, const float *A, int64_t lda, int rows, const float *x, int incx, float *acc, int load);
    /* acc (nb) = fma chain over i < m (in order) of A[i * lda + j] * x[i * incx], nb <= SM_GEMV_L:
     * lanes over the columns of y = A^T x. */
    void (*gemv_t)(int m, int nb, const float *A, int lda, const float *x, int incx, float *acc);
} sm_gemm_kernels;

extern const sm_gemm_kernels sm_gemm_scalar;
#if defined(__x86_64__)
extern const sm_gemm_kernels sm_gemm_avx2;
extern const sm_gemm_kernels sm_gemm_avx512;
#define SM_GEMM_X86 1
#endif

/* The widest vector extension this CPU has and the OS enables, from CPUID feature bits and
 * XGETBV (never from model numbers): 3 AVX-512F, 2 AVX2 + FMA, 1 AVX, 0 otherwise (cpuinfo.c). */
int sm_cpu_simd_level(void);
/* 1 if the CPU has AVX512_BF16 (CPUID leaf 7 subleaf 1) and the OS enables AVX-512 (cpuinfo.c). */
int sm_cpu_has_avx512bf16(void);
/* Why SIMILE_ISA was not followed (a bad name, or a path the CPU lacks), or "" (gemm.c). */
const char *sm_gemm_env_note(void);

/* The path in use (chosen on first use: SIMILE_ISA if set and usable, else the widest the CPU
 * and OS support) and the one for a name. */
const sm_gemm_kernels *sm_gemm_active(void);

/* The products themselves, on a given path (tests and bench/bench_kernels compare paths).
 * threaded: 0 runs on the calling thread only. */
void sm_gemm_run(const sm_gemm_kernels *kr, int threaded, int ta, int tb, int m, int n, int k,
                 float alpha, const float *A, int lda, const float *B, int ldb, float beta, float *C,
                 int ldc);
/* C (m, n) = A^T B for a long k (A (k, m), B (k, n)): k cut into nch equal chunks (the last
 * shorter), each chunk's product an fma chain in part (nch, n, m) (transposed: P^T = B^T A), then
 * C = ((0 + P_0) + P_1) + ... in chunk order.  The tasks (a chunk times a group of B's columns)
 * are spread over the threads; the bits depend on nch alone (sm_k_gemm_at_b). */
void sm_gemm_at_b_chunks(const sm_gemm_kernels *kr, int m, int n, int64_t k, int64_t nch, const float *A, int lda,
                         const float *B, int ldb, float *C, int ldc, float *part);
void sm_gemv_run(const sm_gemm_kernels *kr, int threaded, int ta, int m, int n, float alpha,
                 const float *A, int lda, const float *x, int incx, float beta, float *y, int incy);

#endif
