/* gemm.c - the driver of simile's own matrix products (gemm.h): the run-time choice of an
 * instruction-set path (CPUID + XGETBV feature bits, or SIMILE_ISA / sm_set_isa), packing of
 * op(A) and op(B) panels into per-thread stack buffers of fixed size (no allocation), the
 * blocking (SM_GEMM_MC x SM_GEMM_KC x SM_GEMM_NC), a fixed partition of C's blocks over the
 * threads, and the alpha / beta pass shared by every path.  See gemm.h for the determinism rule. */
#include "backend/cpu/gemm.h"
#include "core/core.h"
#include "simile.h"
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- the choice of a path ------------------------------------------------------------------ */

static const sm_gemm_kernels *kernels_named(const char *name) {
#ifdef SM_GEMM_X86
    if (!strcmp(name, "avx512")) return &sm_gemm_avx512;
    if (!strcmp(name, "avx2")) return &sm_gemm_avx2;
#endif
    if (!strcmp(name, "scalar")) return &sm_gemm_scalar;
    return NULL;
}

/* 1 if this CPU and OS can run the path. */
static int usable(const sm_gemm_kernels *kr) {
    int lv = sm_cpu_simd_level();
#ifdef SM_GEMM_X86
    if (kr == &sm_gemm_avx512) return lv >= 3;
    if (kr == &sm_gemm_avx2) return lv >= 2;
#endif
    (void)lv;
    return kr == &sm_gemm_scalar;
}

static const sm_gemm_kernels *widest(void) {
#ifdef SM_GEMM_X86
    int lv = sm_cpu_simd_level();
    if (lv >= 3) return &sm_gemm_avx512;
    if (lv >= 2) return &sm_gemm_avx2;
#endif
    return &sm_gemm_scalar;
}

static _Atomic(const sm_gemm_kernels *) g_active = NULL;
static char g_env_note[160]; /* why SIMILE_ISA was not followed ("" if it was, or unset) */

const sm_gemm_kernels *sm_gemm_active(void) {
    const sm_gemm_kernels *kr = atomic_load(&g_active);
    if (kr) return kr;
    const sm_gemm_kernels *pick = widest();
    const char *env = getenv("SIMILE_ISA");
    char note[sizeof g_env_note] = "";
    if (env && *env && strcmp(env, "auto")) {
        const sm_gemm_kernels *want = kernels_named(env);
        if (!want)
            snprintf(note, sizeof note, "SIMILE_ISA=%.40s is not a path (scalar, avx2, avx512 or auto); using %s", env,
                     pick->name);
        else if (!usable(want))
            snprintf(note, sizeof note, "SIMILE_ISA=%s: this CPU or OS lacks %s; using %s", env,
                     want == &sm_gemm_scalar ? "it" : want->name, pick->name);
        else
            pick = want;
    }
    const sm_gemm_kernels *expected = NULL;
    if (atomic_compare_exchange_strong(&g_active, &expected, pick)) snprintf(g_env_note, sizeof g_env_note, "%s", note);
    return atomic_load(&g_active);
}

sm_status sm_set_isa(const char *name) {
    if (!name) return sm_fail(SM_ERR_INVALID, "sm_set_isa: no path name");
    if (!strcmp(name, "auto")) {
        atomic_store(&g_active, widest());
        g_env_note[0] = 0;
        return SM_OK;
    }
    const sm_gemm_kernels *kr = kernels_named(name);
    if (!kr) return sm_fail(SM_ERR_INVALID, "unknown instruction-set path '%s' (scalar, avx2, avx512 or auto)", name);
    if (!usable(kr))
        return sm_fail(SM_ERR_UNSUPPORTED, "instruction-set path '%s' needs %s, which this CPU or OS lacks", name,
                       kr == &sm_gemm_avx2 ? "AVX2 and FMA" : "AVX-512F");
    atomic_store(&g_active, kr);
    g_env_note[0] = 0;
    return SM_OK;
}

const char *sm_get_isa(void) { return sm_gemm_active()->name; }

const char *sm_gemm_env_note(void) {
    sm_gemm_active();
    return g_env_note;
}

/* ---- packing ------------------------------------------------------------------------------- */

/* Ap: the rows i0 .. i0+mc of op(A), columns p0 .. p0+kc, as ceil(mc/mr) micro-panels (kc, mr),
 * rows beyond m zero. */
static void pack_a(int ta, const float *A, int lda, int m, int i0, int mc, int p0, int kc, int mr, float *Ap) {
    const int np = (mc + mr - 1) / mr;
    if (ta) { /* op(A) = A^T: each row t of A read once, contiguously, and spread over the panels */
        const int nfull = (m - i0) / mr < np ? (m - i0) / mr : np; /* panels of mr rows of A^T */
        const size_t step = (size_t)mr * kc;
        for (int t = 0; t < kc; t++) {
            const float *src = A + (int64_t)(p0 + t) * lda + i0;
            float *dst = Ap + t * mr;
            int ip = 0;
            if (mr == 6) /* the avx2 panel: a fixed size, two moves inlined */
                for (; ip < nfull; ip++) memcpy(dst + ip * step, src + ip * 6, 6 * sizeof(float));
            else
                for (; ip < nfull; ip++) memcpy(dst + ip * step, src + ip * mr, (size_t)mr * sizeof(float));
            for (; ip < np; ip++) { /* the edge: rows beyond m zero */
                const int rows = m - (i0 + ip * mr) < 0 ? 0 : m - (i0 + ip * mr);
                for (int r = 0; r < rows; r++) dst[ip * step + r] = src[ip * mr + r];
                for (int r = rows; r < mr; r++) dst[ip * step + r] = 0.0f;
            }
        }
        return;
    }
    for (int ip = 0; ip < np; ip++, Ap += (size_t)mr * kc) {
        const int r0 = i0 + ip * mr, rows = m - r0 < mr ? m - r0 : mr;
        for (int r = 0; r < rows; r++) {
            const float *src = A + (int64_t)(r0 + r) * lda + p0;
            for (int t = 0; t < kc; t++) Ap[t * mr + r] = src[t];
        }
        for (int r = rows; r < mr; r++)
            for (int t = 0; t < kc; t++) Ap[t * mr + r] = 0.0f;
    }
}

/* Bp: the columns j0 .. j0+nc of op(B), rows p0 .. p0+kc, as ceil(nc/nr) micro-panels (kc, nr),
 * columns beyond n zero. */
static void pack_b(int tb, const float *B, int ldb, int n, int j0, int nc, int p0, int kc, int nr, float *Bp) {
    for (int jp = 0; jp * nr < nc; jp++, Bp += (size_t)nr * kc) {
        const int c0 = j0 + jp * nr, cols = n - c0 < nr ? n - c0 : nr;
        if (!tb && cols == 16 && nr == 16) { /* the avx2 panel: a fixed-size copy, inlined (no call a row) */
            for (int t = 0; t < kc; t++) memcpy(Bp + t * 16, B + (int64_t)(p0 + t) * ldb + c0, 16 * sizeof(float));
        } else if (!tb) {
            for (int t = 0; t < kc; t++) {
                float *dst = Bp + t * nr;
                memcpy(dst, B + (int64_t)(p0 + t) * ldb + c0, sizeof(float) * (size_t)cols);
                for (int c = cols; c < nr; c++) dst[c] = 0.0f;
            }
        } else {
            for (int c = 0; c < cols; c++) {
                const float *src = B + (int64_t)(c0 + c) * ldb + p0;
                for (int t = 0; t < kc; t++) Bp[t * nr + c] = src[t];
            }
            for (int c = cols; c < nr; c++)
                for (int t = 0; t < kc; t++) Bp[t * nr + c] = 0.0f;
        }
    }
}

/* The alpha / beta pass, the same code for every path: beta == 0 never reads c (BLAS). */
static inline float finish(float alpha, float acc, float beta, float c) {
    return beta == 0.0f ? alpha * acc : alpha * acc + beta * c;
}

/* C (m, n) = beta * C for k == 0 or alpha == 0 (BLAS: A and B are not read). */
static void scale_c(int m, int n, float beta, float *C, int ldc) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) C[(int64_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(int64_t)i * ldc + j];
}

typedef struct {
    int ta, tb, m, n, k, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B;
    float *C;
} gemm_args;

/* Ap, gemm_rows's packed op(A): the (rows / mr) panels (kc, mr) of a whole row group of A^T with
 * kc = AP_FLOATS / rows (at most SM_GEMM_KC), or MC_AT rows (a multiple of every mr) at a time
 * with kc <= SM_GEMM_KC, or one edge panel (mr <= 16, kc <= SM_GEMM_KC). */
#define MC_AT 48
#define AP_FLOATS (64 * 1024)
_Static_assert(MC_AT * SM_GEMM_KC <= AP_FLOATS && 16 * SM_GEMM_KC <= AP_FLOATS, "Ap too small");

/* 1 if gemm_rows packs the panels of op(A) = A^T on this path: rows of A^T in place walk a
 * stride of lda for every t (a new cache line each step, from memory for a long, cold A);
 * packed, each row of A is read whole, contiguously, once per k-block, and the kernel reads its
 * panel contiguously (measured on Zen 3, avx2: the weight gradients' A^T B).  The AVX-512 path
 * keeps what it was measured with (A^T in place, the kernel prefetching it). */
static int pack_at(const sm_gemm_kernels *kr) {
#ifdef SM_GEMM_X86
    if (kr == &sm_gemm_avx512) return 0;
#endif
    (void)kr;
    return 1;
}

/* One (rows <= mr, cols <= nr) tile: whole tiles straight into C, edge tiles through the tile
 * buffer (the alpha / beta pass in C). */
static inline void rows_tile(const sm_gemm_kernels *kr, const gemm_args *g, int kc, const float *a, int64_t rs,
                             int64_t cs, const float *bp, float *C, int rows, int cols, int first, int last,
                             float *tile) {
    const int nr = kr->nr;
    if (rows == kr->mr && cols == nr) {
        kr->ukr(kc, a, rs, cs, bp, C, g->ldc, (first ? 0 : SM_UKR_LOAD) | (last ? SM_UKR_FINISH : 0), g->alpha,
                g->beta);
        return;
    }
    if (!first)
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < cols; j++) tile[r * nr + j] = C[(int64_t)r * g->ldc + j];
    kr->ukr(kc, a, rs, cs, bp, tile, nr, first ? 0 : SM_UKR_LOAD, 1.0f, 0.0f);
    /* finish's arithmetic with its test on beta taken out of the loops, so that they vectorise
     * (the per-element branch kept them scalar: a short-k edge tile, as in the Winograd chunks,
     * spent longer here than in its products); the same operations on every element */
    const float alpha = g->alpha, beta = g->beta;
    for (int r = 0; r < rows; r++) {
        float *c = C + (int64_t)r * g->ldc;
        const float *t = tile + r * nr;
        if (!last)
            for (int j = 0; j < cols; j++) c[j] = t[j];
        else if (beta == 0.0f)
            for (int j = 0; j < cols; j++) c[j] = alpha * t[j];
        else
            for (int j = 0; j < cols; j++) c[j] = alpha * t[j] + beta * c[j];
    }
}

#define A_STREAM_BYTES ((int64_t)2 << 20) /* a task's rows of A beyond this: gemm_rows prefetches the next panel */
/* Rows i_begin .. i_end (all of them, or a multiple of mr) by columns j0 .. j0+nc of C, with
 * op(B) packed once per k-block into Bp (panels (kc, nr)) and op(A) read in place, or packed
 * into Ap (panels (kc, mr)) when it is A^T and the path packs it (pack_at), and always for a
 * last panel of fewer than mr rows.  Between k-blocks the float accumulators wait in C itself,
 * so this runs for k <= SM_GEMM_KC or beta == 0 (and keeps one k-block when beta != 0). */
static void gemm_rows(const sm_gemm_kernels *kr, const gemm_args *g, int i_begin, int i_end, int j0, int nc,
                      float *Bp, float *Ap, float *tile) {
    const int mr = kr->mr, nr = kr->nr, np = (nc + nr - 1) / nr;
    const int packed = g->ta && pack_at(kr);
    /* the next panel's rows are prefetched (below) only when this task's rows of A are too many
     * for L2 to still hold them from the caller's writing: where they are (the Winograd chunks'
     * 1 MiB products) the prefetch instructions only cost (one thread, Zen 3: embedding 8%, a
     * training epoch 7% more CPU time with them) */
    const int a_streams = (int64_t)(i_end - i_begin) * g->lda * (int64_t)sizeof(float) > A_STREAM_BYTES;
    int mc = mr, kcb = SM_GEMM_KC;
    if (packed) { /* all the group's rows at once (A's rows read whole), k-blocks as long as Ap holds */
        const int rows = (i_end - i_begin + mr - 1) / mr * mr;
        mc = rows;
        kcb = AP_FLOATS / rows;
        if (kcb > SM_GEMM_KC) kcb = SM_GEMM_KC;
        /* too many rows for a useful k-block, or a beta that needs all of k in one block: MC_AT rows
         * at a time */
        if (kcb < 64 || (g->beta != 0.0f && g->k > kcb)) mc = MC_AT, kcb = SM_GEMM_KC;
    }
    for (int p0 = 0; p0 < g->k; p0 += kcb) {
        const int kc = g->k - p0 < kcb ? g->k - p0 : kcb;
        const int first = p0 == 0, last = p0 + kc >= g->k;
        pack_b(g->tb, g->B, g->ldb, g->n, j0, nc, p0, kc, nr, Bp);
        for (int ib = i_begin; ib < i_end; ib += mc) {
            const int ie = i_end - ib < mc ? i_end : ib + mc, mp = (ie - ib + mr - 1) / mr;
            if (packed || ie - ib < mr) pack_a(g->ta, g->A, g->lda, g->m, ib, ie - ib, p0, kc, mr, Ap);
            /* packed: the next k-block's rows of A, prefetched a few lines per tile while this
             * block computes (the long, cold A streams from memory behind the fmas) */
            const int pf = packed && last == 0 && ib + mc >= i_end;
            const int kn = pf ? (g->k - p0 - kc < kcb ? g->k - p0 - kc : kcb) : 0;
            const int64_t lines_row = ((int64_t)(i_end - i_begin) * 4 + 63) / 64, lines = kn * lines_row;
            const int64_t per_tile = (lines + mp * np - 1) / (mp * np);
            int64_t cur = 0, pl = 0; /* lines issued; the line within the row pr */
            const float *pr = g->A + (int64_t)(p0 + kc) * g->lda + i_begin;
            /* rows of op(A) in place, one panel a pass (mc = mr): the next panel's rows of A and,
             * in the first k-block, its rows of C (written: prefetched for writing), a few lines
             * per tile */
            const int nx = a_streams && !packed && !g->ta && ie + mr <= i_end ? mr : 0;
            const int a_row = (kc + 15) / 16, c_row = first ? (nc + 15) / 16 : 0;
            const int per_tile_x = (nx * (a_row + c_row) + np - 1) / np;
            int xr = 0, xl = 0; /* the next panel's row, and the line within it (A's, then C's) */
            for (int ip = 0; ip < mp; ip++) /* each row panel over every column panel */
                for (int jp = 0; jp < np; jp++) {
                    for (int64_t q = 0; q < per_tile && cur < lines; q++, cur++) {
                        __builtin_prefetch(pr + 16 * pl, 0, 2);
                        if (++pl == lines_row) pl = 0, pr += g->lda;
                    }
                    for (int q = 0; q < per_tile_x && xr < nx; q++) {
                        if (xl < a_row) __builtin_prefetch(g->A + (int64_t)(ie + xr) * g->lda + p0 + 16 * xl, 0, 3);
                        else __builtin_prefetch(g->C + (int64_t)(ie + xr) * g->ldc + j0 + 16 * (xl - a_row), 1, 3);
                        if (++xl == a_row + c_row) xl = 0, xr++;
                    }
                    const int i = ib + ip * mr, rows = ie - i < mr ? ie - i : mr;
                    const int c0 = j0 + jp * nr, cols = nc - jp * nr < nr ? nc - jp * nr : nr;
                    const float *a;
                    int64_t rs, cs;
                    if (packed || rows < mr) {
                        a = Ap + (size_t)ip * mr * kc, rs = 1, cs = mr;
                    } else {
                        a = g->ta ? g->A + (int64_t)p0 * g->lda + i : g->A + (int64_t)i * g->lda + p0;
                        rs = g->ta ? 1 : g->lda, cs = g->ta ? g->lda : 1;
                    }
                    rows_tile(kr, g, kc, a, rs, cs, Bp + (size_t)jp * nr * kc, g->C + (int64_t)i * g->ldc + c0,
                              rows, cols, first, last, tile);
                }
        }
    }
}

#define KC_BUF 256 /* k per block in gemm_block */

/* One block of C (mc <= SM_GEMM_MC rows, nc columns) for k > SM_GEMM_KC with beta != 0: the
 * partial sums wait in a buffer (Cb) while C keeps its values for beta; op(A) packed. */
static void gemm_block(const sm_gemm_kernels *kr, const gemm_args *g, int i0, int mc, int j0, int nc, float *Bp) {
    _Alignas(64) float Ap[SM_GEMM_MC * KC_BUF]; /* (MC / mr) panels (kc, mr) */
    _Alignas(64) float Cb[SM_GEMM_MC * SM_GEMM_NC]; /* accumulators, (mr, nr) tiles */
    const int mr = kr->mr, nr = kr->nr, mp = (mc + mr - 1) / mr, np = (nc + nr - 1) / nr;
    for (int p0 = 0; p0 < g->k; p0 += KC_BUF) {
        const int kc = g->k - p0 < KC_BUF ? g->k - p0 : KC_BUF;
        pack_a(g->ta, g->A, g->lda, g->m, i0, mc, p0, kc, mr, Ap);
        pack_b(g->tb, g->B, g->ldb, g->n, j0, nc, p0, kc, nr, Bp);
        for (int ip = 0; ip < mp; ip++)
            for (int jp = 0; jp < np; jp++)
                kr->ukr(kc, Ap + (size_t)ip * mr * kc, 1, mr, Bp + (size_t)jp * nr * kc,
                        Cb + ((size_t)ip * np + jp) * mr * nr, nr, p0 > 0 ? SM_UKR_LOAD : 0, 1.0f, 0.0f);
    }
    for (int ip = 0; ip < mp; ip++)
        for (int jp = 0; jp < np; jp++) {
            const float *acc = Cb + ((size_t)ip * np + jp) * mr * nr;
            const int r0 = i0 + ip * mr, c0 = j0 + jp * nr;
            const int rows = mc - ip * mr < mr ? mc - ip * mr : mr, cols = nc - jp * nr < nr ? nc - jp * nr : nr;
            for (int r = 0; r < rows; r++) {
                float *c = g->C + (int64_t)(r0 + r) * g->ldc + c0;
                for (int j = 0; j < cols; j++) c[j] = finish(g->alpha, acc[r * nr + j], g->beta, c[j]);
            }
        }
}

static int team_size(int threaded, double work) {
#ifdef _OPENMP
    if (!threaded || omp_in_parallel() || work < 2e5) return 1;
    return omp_get_max_threads();
#else
    (void)threaded, (void)work;
    return 1;
#endif
}

/* Task b of sm_gemm_run's fixed partition: row group b / nbn times column block b % nbn. */
static void gemm_task(const sm_gemm_kernels *kr, const gemm_args *g, int64_t b, int nbn, int rows_per, int ncb,
                      int in_c, float *Bp, float *Ap, float *tile) {
    const int bi = (int)(b / nbn), bj = (int)(b % nbn);
    const int i0 = bi * rows_per, i1 = g->m - i0 < rows_per ? g->m : i0 + rows_per;
    const int j0 = bj * ncb, nc = g->n - j0 < ncb ? g->n - j0 : ncb;
    if (in_c) gemm_rows(kr, g, i0, i1, j0, nc, Bp, Ap, tile);
    else gemm_block(kr, g, i0, i1 - i0, j0, nc, Bp);
}

void sm_gemm_run(const sm_gemm_kernels *kr, int threaded, int ta, int tb, int m, int n, int k, float alpha,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) {
        scale_c(m, n, beta, C, ldc);
        return;
    }
    const gemm_args g = {ta, tb, m, n, k, lda, ldb, ldc, alpha, beta, A, B, C};
    const int nth = team_size(threaded, (double)m * n * k);
    const int in_c = k <= SM_GEMM_KC || beta == 0.0f;
    /* The work: blocks of nc columns times groups of rows, a fixed partition (each output is
     * computed the same way whichever thread owns it).  A short k leaves room in Bp for more
     * columns: fewer passes over op(A). */
    int ncb = SM_GEMM_NC;
    if (in_c) {
        const int kc1 = k < SM_GEMM_KC ? k : SM_GEMM_KC;
        ncb = SM_GEMM_NC * SM_GEMM_KC / kc1 / 32 * 32; /* a multiple of every nr */
        if (ncb > 2048) ncb = 2048;
    }
    const int nbn = (n + ncb - 1) / ncb;
    int rows_per;
    if (in_c) { /* about two groups a thread (one on a single thread: op(A) read in one sweep) */
        int groups = nth > 1 ? (2 * nth + nbn - 1) / nbn : 1;
        rows_per = (m + groups - 1) / groups;
        rows_per = (rows_per + kr->mr - 1) / kr->mr * kr->mr;
    } else {
        rows_per = SM_GEMM_MC;
    }
    const int ngroups = (m + rows_per - 1) / rows_per;
    const int64_t ntasks = (int64_t)ngroups * nbn;
    if (nth == 1) { /* no parallel region (not even one of one thread): a call inside another
                     * thread's region, as the inference plan and the Winograd chunks make them */
        _Alignas(64) float Bp[SM_GEMM_NC * SM_GEMM_KC];
        _Alignas(64) float Ap[AP_FLOATS];
        _Alignas(64) float tile[16 * 32];
        for (int64_t b = 0; b < ntasks; b++) gemm_task(kr, &g, b, nbn, rows_per, ncb, in_c, Bp, Ap, tile);
        return;
    }
#pragma omp parallel num_threads(nth)
    {
        _Alignas(64) float Bp[SM_GEMM_NC * SM_GEMM_KC]; /* (NC / nr) panels (kc, nr) */
        _Alignas(64) float Ap[AP_FLOATS]; /* (mc / mr) panels (kc, mr) of op(A), or one edge panel */
        _Alignas(64) float tile[16 * 32];               /* one (mr, nr) tile of accumulators */
#pragma omp for schedule(static)
        for (int64_t b = 0; b < ntasks; b++) gemm_task(kr, &g, b, nbn, rows_per, ncb, in_c, Bp, Ap, tile);
    }
}

void sm_gemm_at_b_chunks(const sm_gemm_kernels *kr, int m, int n, int64_t k, int64_t nch, const float *A, int lda,
                         const float *B, int ldb, float *C, int ldc, float *part) {
    const int64_t per = (k + nch - 1) / nch;
    const int nth = team_size(1, (double)m * n * (double)k);
    /* groups of B's columns per chunk: enough tasks for every thread to get the same number
     * (3 chunks on 2 threads: 2 groups each, 6 tasks), each group a multiple of mr wide; more
     * groups pack the chunk's rows of A once more each, so no more than that */
    int groups = 1;
    while (nth > 1 && (nch * groups) % nth && groups < nth) groups++;
    int cols = (n + groups - 1) / groups;
    cols = (cols + kr->mr - 1) / kr->mr * kr->mr;
    groups = (n + cols - 1) / cols;
    const int64_t ntasks = nch * groups;
#pragma omp parallel for schedule(static) num_threads(nth) if (nth > 1)
    for (int64_t task = 0; task < ntasks; task++) {
        const int64_t ch = task / groups, start = ch * per, len = start + per < k ? per : k - start;
        const int j0 = (int)(task % groups) * cols, nc = n - j0 < cols ? n - j0 : cols;
        float *P = part + ch * (int64_t)m * n + (int64_t)j0 * m; /* rows j0 .. j0+nc of P^T (n, m) */
        if (len <= 0) {
            memset(P, 0, sizeof(float) * (size_t)nc * (size_t)m);
            continue;
        }
        /* P^T = B^T A on this thread: B (the long, wide one: im2col rows) is op(A) = B^T, packed a
         * row group at a time on the avx2 and scalar paths (each row of B read whole; pack_at), read
         * in place on avx512; A (m = output channels wide) is op(B), packed */
        sm_gemm_run(kr, 0, 1, 0, nc, m, (int)len, 1.0f, B + start * ldb + j0, ldb, A + start * lda, lda, 0.0f, P, m);
    }
    /* C = the chunks' sum in chunk order, a column j of C (a row of every P^T) at a time */
#pragma omp parallel for schedule(static) num_threads(nth) if (nth > 1)
    for (int j = 0; j < n; j++) {
        float acc[1024]; /* (m) partial sums of column j, m <= 1024 at a time */
        for (int i0 = 0; i0 < m; i0 += 1024) {
            const int mb = m - i0 < 1024 ? m - i0 : 1024;
            for (int i = 0; i < mb; i++) acc[i] = 0.0f;
            for (int64_t ch = 0; ch < nch; ch++) {
                const float *P = part + (ch * n + j) * (int64_t)m + i0;
                for (int i = 0; i < mb; i++) acc[i] += P[i];
            }
            for (int i = 0; i < mb; i++) C[(int64_t)(i0 + i) * ldc + j] = acc[i];
        }
    }
}

void sm_gemv_run(const sm_gemm_kernels *kr, int threaded, int ta, int m, int n, float alpha, const float *A, int lda,
                 const float *x, int incx, float beta, float *y, int incy) {
    if (m <= 0 || n <= 0) return;
    const int ny = ta ? n : m; /* outputs; the sum runs over the other dimension */
    if (alpha == 0.0f) {
        for (int i = 0; i < ny; i++) y[(int64_t)i * incy] = beta == 0.0f ? 0.0f : beta * y[(int64_t)i * incy];
        return;
    }
    const int nb = (ny + SM_GEMV_L - 1) / SM_GEMV_L;
    const int nth = team_size(threaded, (double)m * n);
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        _Alignas(64) float acc[SM_GEMV_L];
#pragma omp for schedule(static)
        for (int b = 0; b < nb; b++) {
            const int o0 = b * SM_GEMV_L, len = ny - o0 < SM_GEMV_L ? ny - o0 : SM_GEMV_L;
            if (ta) {
                kr->gemv_t(m, len, A + o0, lda, x, incx, acc);
            } else {
                for (int p0 = 0; p0 < n; p0 += SM_GEMV_KC) {
                    const int kc = n - p0 < SM_GEMV_KC ? n - p0 : SM_GEMV_KC;
                    kr->gemv_n(kc, A + (int64_t)o0 * lda + p0, lda, len, x + (int64_t)p0 * incx, incx, acc, p0 > 0);
                }
            }
            for (int i = 0; i < len; i++) {
                float *yi = y + (int64_t)(o0 + i) * incy;
                *yi = finish(alpha, acc[i], beta, *yi);
            }
        }
    }
}
