/* test_gemm.c - simile's own matrix products (src/backend/cpu/gemm*.c) on every instruction-set
 * path this CPU has, each forced with sm_set_isa: sm_k_gemm, sm_k_gemv and sm_k_gemm_at_b
 * against a double-precision reference over random shapes with the edge ones (m, n or k = 1,
 * odd sizes, sizes that are not multiples of any block, k longer than a k-block, both
 * transposes, alpha / beta, leading dimensions wider than the rows, strided gemv vectors); the
 * determinism rule checked exactly: every output equals alpha * (one fmaf chain over k in
 * order from 0) [+ beta * c], written out here in plain C; and the same bits from every path
 * and from 1 and 2 threads.  Also sm_set_isa's errors and that beta = 0 never reads C. */
#include "backend/cpu/kernels.h"
#include "backend/cpu/gemm.h"
#include "core/core.h"
#include "simile.h"
#include "testing.h"
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static sm_rng R;
static const char *paths[3];
static int npaths;

static float *randf(int64_t n) {
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = sm_rng_normal(&R);
    return p;
}

/* The products under test: sm_k_gemm / sm_k_gemv, or with -DSIMILE_BLAS=openblas (where those
 * call OpenBLAS) simile's own kernels directly. */
static void gemm(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc) {
#ifdef SM_BLAS_OPENBLAS
    sm_gemm_run(sm_gemm_active(), 1, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    sm_k_gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}
static void gemv(int ta, int m, int n, float alpha, const float *A, int lda, const float *x, int incx, float beta,
                 float *y, int incy) {
#ifdef SM_BLAS_OPENBLAS
    sm_gemv_run(sm_gemm_active(), 1, ta, m, n, alpha, A, lda, x, incx, beta, y, incy);
#else
    sm_k_gemv(ta, m, n, alpha, A, lda, x, incx, beta, y, incy);
#endif
}

static void set_threads(int n) {
    sm_set_num_threads(n);
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
}

/* The rule: alpha * fmaf-chain + beta * c (beta * c only for beta != 0), in float. */
static float rule(int ta, int tb, int i, int j, int k, float alpha, const float *A, int lda, const float *B, int ldb,
                  float beta, float c) {
    float acc = 0.0f;
    for (int t = 0; t < k; t++)
        acc = fmaf(ta ? A[(int64_t)t * lda + i] : A[(int64_t)i * lda + t], tb ? B[(int64_t)j * ldb + t] : B[(int64_t)t * ldb + j], acc);
    if (k == 0) acc = 0.0f;
    return beta == 0.0f ? alpha * acc : alpha * acc + beta * c;
}

static double ref(int ta, int tb, int i, int j, int k, double alpha, const float *A, int lda, const float *B, int ldb,
                  double beta, float c) {
    double s = 0;
    for (int t = 0; t < k; t++)
        s += (double)(ta ? A[(int64_t)t * lda + i] : A[(int64_t)i * lda + t]) * (tb ? B[(int64_t)j * ldb + t] : B[(int64_t)t * ldb + j]);
    return alpha * s + (beta != 0 ? beta * c : 0);
}

static void one_gemm(int ta, int tb, int m, int n, int k, float alpha, float beta, int pad) {
    int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    float *A = randf((int64_t)(ta ? k : m) * lda), *B = randf((int64_t)(tb ? n : k) * ldb);
    float *C0 = randf((int64_t)m * ldc);
    if (beta == 0.0f) /* beta = 0 must not read C: NaN there stays out of the result */
        for (int64_t i = 0; i < (int64_t)m * ldc; i++) C0[i] = NAN;
    float *first = NULL;
    for (int p = 0; p < npaths; p++)
        for (int th = 1; th <= 2; th++) {
            CHECK_OK(sm_set_isa(paths[p]));
            set_threads(th);
            float *C = malloc(sizeof(float) * (size_t)m * ldc);
            memcpy(C, C0, sizeof(float) * (size_t)m * ldc);
            gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
            if (!first) {
                first = C;
                double e = 0, s = 0;
                int exact = 1, pads_kept = 1;
                for (int i = 0; i < m; i++) {
                    for (int j = 0; j < n; j++) {
                        float got = C[(int64_t)i * ldc + j], c0 = C0[(int64_t)i * ldc + j];
                        double r = ref(ta, tb, i, j, k, alpha, A, lda, B, ldb, beta, c0);
                        e += (got - r) * (got - r);
                        s += r * r;
                        float want = rule(ta, tb, i, j, k, alpha, A, lda, B, ldb, beta, c0);
                        if (memcmp(&got, &want, sizeof got)) exact = 0;
                    }
                    for (int j = n; j < ldc; j++) /* beyond n: untouched */
                        if (memcmp(&C[(int64_t)i * ldc + j], &C0[(int64_t)i * ldc + j], sizeof(float))) pads_kept = 0;
                }
                CHECK_MSG((s > 0 ? e / s : e) <= 1e-10, "gemm ta %d tb %d %dx%dx%d: nmse %.3g (path %s)", ta, tb, m, n, k,
                          s > 0 ? e / s : e, paths[p]);
                CHECK_MSG(exact, "gemm ta %d tb %d %dx%dx%d alpha %g beta %g: not the fmaf chain (path %s)", ta, tb, m, n,
                          k, alpha, beta, paths[p]);
                CHECK_MSG(pads_kept, "gemm wrote beyond n (%dx%d ldc %d)", m, n, ldc);
            } else {
                CHECK_MSG(!memcmp(C, first, sizeof(float) * (size_t)m * ldc),
                          "gemm ta %d tb %d %dx%dx%d: path %s on %d threads differs from %s on 1", ta, tb, m, n, k,
                          paths[p], th, paths[0]);
                free(C);
            }
        }
    free(first);
    free(A), free(B), free(C0);
}

static void check_gemm(void) {
    const int sizes[] = {1, 2, 7, 13, 33, 97, 130, 300};
    const float alphas[] = {1.0f, -2.0f, 0.5f}, betas[] = {0.0f, 1.0f, 0.5f};
    int cases = 0;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int c = 0; c < 14; c++) {
                int m = sizes[(c * 3 + ta) % 8], n = sizes[(c * 5 + tb + 1) % 8], k = sizes[(c * 7 + ta + tb + 2) % 8];
                one_gemm(ta, tb, m, n, k, alphas[c % 3], betas[(c / 3) % 3], c % 2 ? 3 : 0);
                cases++;
            }
    /* more than one block of every kind at once, and k = 0 / alpha = 0 (C = beta C) */
    one_gemm(0, 1, 203, 290, 517, 1.0f, 0.0f, 1);
    one_gemm(1, 0, 129, 257, 600, 1.0f, 1.0f, 0);
    /* A^T packed a row group at a time (gemm.c gemm_rows): k cut into blocks of 65536 / rows,
     * an edge panel inside the block, beta != 0 keeping one k-block, too many rows for a block */
    one_gemm(1, 0, 300, 70, 700, 1.0f, 0.0f, 1);
    one_gemm(1, 0, 301, 33, 1500, 0.5f, 0.0f, 3);
    one_gemm(1, 0, 600, 40, 500, 1.0f, 0.5f, 0);
    one_gemm(1, 0, 1100, 20, 300, 1.0f, 0.0f, 0);
    one_gemm(0, 0, 5, 6, 0, 1.0f, 0.5f, 0);
    one_gemm(0, 0, 5, 6, 4, 0.0f, 0.5f, 2);
    printf("gemm: %d random cases + 8 on %d paths x 2 thread counts\n", cases, npaths);
}

static void one_gemv(int ta, int m, int n, float alpha, float beta, int lda_pad, int incx, int incy) {
    int lda = n + lda_pad, nx = ta ? m : n, ny = ta ? n : m;
    float *A = randf((int64_t)m * lda), *x = randf((int64_t)nx * incx), *y0 = randf((int64_t)ny * incy);
    float *first = NULL;
    for (int p = 0; p < npaths; p++)
        for (int th = 1; th <= 2; th++) {
            CHECK_OK(sm_set_isa(paths[p]));
            set_threads(th);
            float *y = malloc(sizeof(float) * (size_t)ny * incy);
            memcpy(y, y0, sizeof(float) * (size_t)ny * incy);
            gemv(ta, m, n, alpha, A, lda, x, incx, beta, y, incy);
            if (!first) {
                first = y;
                int exact = 1, gaps = 1;
                double e = 0, s = 0;
                for (int i = 0; i < ny; i++) {
                    /* y = A x is C (ny, 1) = op(A) x with op(A) = A (ta 0) or A^T (ta 1) */
                    float got = y[(int64_t)i * incy], c0 = y0[(int64_t)i * incy];
                    float acc = 0.0f;
                    double r = 0;
                    for (int t = 0; t < nx; t++) {
                        float a = ta ? A[(int64_t)t * lda + i] : A[(int64_t)i * lda + t], xv = x[(int64_t)t * incx];
                        acc = fmaf(a, xv, acc);
                        r += (double)a * xv;
                    }
                    float want = beta == 0.0f ? alpha * acc : alpha * acc + beta * c0;
                    r = alpha * r + (beta != 0 ? beta * c0 : 0);
                    if (memcmp(&got, &want, sizeof got)) exact = 0;
                    e += (got - r) * (got - r);
                    s += r * r;
                    for (int g = 1; g < incy; g++)
                        if (y[(int64_t)i * incy + g] != y0[(int64_t)i * incy + g]) gaps = 0;
                }
                CHECK_MSG((s > 0 ? e / s : e) <= 1e-10, "gemv ta %d %dx%d: nmse %.3g", ta, m, n, s > 0 ? e / s : e);
                CHECK_MSG(exact, "gemv ta %d %dx%d incx %d incy %d: not the fmaf chain", ta, m, n, incx, incy);
                CHECK_MSG(gaps, "gemv wrote between the strided outputs");
            } else {
                CHECK_MSG(!memcmp(y, first, sizeof(float) * (size_t)ny * incy), "gemv ta %d %dx%d: path %s, %d threads differ",
                          ta, m, n, paths[p], th);
                free(y);
            }
        }
    free(first);
    free(A), free(x), free(y0);
}

static void check_gemv(void) {
    const int sizes[] = {1, 3, 16, 63, 65, 129, 300, 1000};
    int cases = 0;
    for (int ta = 0; ta < 2; ta++)
        for (int c = 0; c < 12; c++) {
            one_gemv(ta, sizes[(c * 3 + ta) % 8], sizes[(c * 5 + 1) % 8], c % 2 ? -2.0f : 1.0f, c % 3 ? 0.0f : 0.5f,
                     c % 4 == 1 ? 5 : 0, c % 5 == 2 ? 2 : 1, c % 3 == 1 ? 3 : 1);
            cases++;
        }
    one_gemv(0, 20000, 128, 1.0f, 0.0f, 0, 1, 1); /* a search shape: many rows, d = 128 */
    printf("gemv: %d cases + 1 on %d paths x 2 thread counts\n", cases, npaths);
}

/* A^T B with a long k: the fixed k-chunks summed in order give the same bits on every path and
 * thread count, close to the double reference. */
/* sm_k_gemm_at_b: against the double reference; exactly the rule of its chunks (each chunk an
 * fmaf chain over its k in order, then ((0 + P_0) + P_1) + ... in chunk order, written out here);
 * the same bits from every path and from 1 and 2 threads.  k = 5000 gives 2 chunks (one task a
 * thread), 6500 gives 3 (gemm.c cuts each chunk's columns in two for 2 threads), n = 300 and
 * m = 70 the wide B of a weight gradient (a row group of A^T packed in k-blocks). */
static void one_at_b(int m, int n, int64_t k) {
    float *A = randf(k * m), *B = randf(k * n), *first = NULL, *rulec = malloc(sizeof(float) * m * n);
    sm_ws ws = {NULL, sm_k_gemm_at_b_ws(m, n, k)};
    const int64_t nch = sm_k_at_b_chunks(k), per = (k + nch - 1) / nch;
    CHECK(ws.bytes > 0 && nch > 1); /* long enough to be chunked */
    ws.base = malloc(ws.bytes);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float acc = 0.0f;
            for (int64_t ch = 0; ch < nch; ch++) {
                const int64_t s0 = ch * per, len = s0 + per < k ? per : k - s0;
                acc += len > 0 ? rule(1, 0, i, j, (int)len, 1.0f, A + s0 * m, m, B + s0 * n, n, 0.0f, 0.0f) : 0.0f;
            }
            rulec[i * n + j] = acc;
        }
    for (int p = 0; p < npaths; p++)
        for (int th = 1; th <= 2; th++) {
            CHECK_OK(sm_set_isa(paths[p]));
            set_threads(th);
            float *C = malloc(sizeof(float) * m * n);
            sm_k_gemm_at_b(m, n, k, A, m, B, n, C, n, &ws);
            CHECK_MSG(!memcmp(C, rulec, sizeof(float) * m * n), "at_b %dx%dx%lld: not the chunks' rule (path %s, %d threads)",
                      m, n, (long long)k, paths[p], th);
            if (!first) {
                first = C;
                double e = 0, s = 0;
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++) {
                        double r = ref(1, 0, i, j, (int)k, 1.0, A, m, B, n, 0.0, 0.0f);
                        e += (C[i * n + j] - r) * (C[i * n + j] - r);
                        s += r * r;
                    }
                CHECK_MSG(e / s <= 1e-10, "at_b: nmse %.3g", e / s);
            } else {
                CHECK_MSG(!memcmp(C, first, sizeof(float) * m * n), "at_b: path %s, %d threads differ", paths[p], th);
                free(C);
            }
        }
    free(first), free(rulec), free(A), free(B), free(ws.base);
}

static void check_at_b(void) {
    one_at_b(19, 37, 5000);
    one_at_b(19, 37, 6500);
    one_at_b(70, 300, 6500);
}

static void check_api(void) {
    CHECK_STATUS(sm_set_isa("bogus"), SM_ERR_INVALID);
    CHECK(strstr(sm_errmsg(), "bogus") != NULL);
    CHECK_STATUS(sm_set_isa(NULL), SM_ERR_INVALID);
    sm_compute_info ci;
    sm_compute_info_get(&ci);
    const char *all[] = {"scalar", "avx2", "avx512"};
    int has_avx2 = strstr(ci.cpu_flags, "avx2") && strstr(ci.cpu_flags, "fma"), has_512 = strstr(ci.cpu_flags, "avx512f") != NULL;
    const int have[] = {1, has_avx2, has_512};
    for (int i = 0; i < 3; i++) {
        if (have[i]) {
            CHECK_OK(sm_set_isa(all[i]));
            CHECK(!strcmp(sm_get_isa(), all[i]));
            sm_compute_info_get(&ci);
            CHECK(!strcmp(ci.isa, all[i]));
            paths[npaths++] = all[i];
        } else {
            CHECK_OK(sm_set_isa("scalar"));
            CHECK_STATUS(sm_set_isa(all[i]), SM_ERR_UNSUPPORTED); /* a clear error; the path is unchanged */
            CHECK(!strcmp(sm_get_isa(), "scalar"));
            printf("this CPU lacks the %s path: its checks are skipped\n", all[i]);
        }
    }
    CHECK_OK(sm_set_isa("auto"));
    CHECK(!strcmp(sm_get_isa(), has_512 ? "avx512" : has_avx2 ? "avx2" : "scalar"));
    printf("paths on this CPU:");
    for (int i = 0; i < npaths; i++) printf(" %s", paths[i]);
    printf("\n");
}

int main(void) {
    sm_rng_seed(&R, 15);
    check_api();
    check_gemm();
    check_gemv();
#ifndef SM_BLAS_OPENBLAS
    check_at_b(); /* with OpenBLAS, A^T B's chunks are OpenBLAS products */
#else
    (void)check_at_b;
#endif
    sm_set_isa("auto");
    TEST_MAIN_END();
}
