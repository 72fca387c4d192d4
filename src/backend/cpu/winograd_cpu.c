/* winograd_cpu.c - 3x3 stride-1 pad-1 convolution of an NHWC input by Winograd F(2x2, 3x3):
 * each 2x2 block of outputs comes from a 4x4 input tile d (stride 2, zeros outside the image) as
 * A^T [ (G g G^T) .* (B^T d B) ] A, summed over the input channels, i.e. 16 products
 * M_xi (tiles, oc) = V_xi (tiles, c) U_xi (c, oc), one per position xi of the 4x4 transformed
 * tile, through simile's own sgemm on the calling thread.  2.25 times fewer multiply-adds than
 * im2col + sgemm, at the price of different rounding (not the bits of the direct convolution).
 *
 *   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]       (weights, 3 -> 4)
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]       (input tile, 4 -> 4)
 *   A^T = [1 1 1 0; 0 1 -1 -1]                          (output tile, 4 -> 2)
 *
 * Determinism: in the transforms a lane owns a channel and each value is the same sequence of
 * float adds (and exact halvings) written below, compiled once (no run-time choice of a path,
 * -ffp-contract=off in CMakeLists.txt); the products follow gemm.h's rule, the same bits on every
 * instruction-set path.  Tiles are cut into fixed chunks that change no bit (rows of a product
 * are independent).  So every path and every thread count give the same bits. */
#include "backend/cpu/kernels.h"
#include "backend/cpu/gemm.h"
#include <assert.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Floats of the V and M chunks together: at most 1 MiB.  Measured on Zen 3 (user CPU seconds of
 * `bench_tool embed` on the 10,000 test images, one thread, five alternating runs each, load
 * 0.6-1.4): 4 MiB chunks 2.32-3.07 s (median 2.85), 1 MiB 2.32-2.53 s (median 2.34), 256 KiB
 * 2.31-2.61 s, once sm_gemm_run stopped opening a parallel region of one thread for each of the
 * 16 products of a chunk (with that region, 4 MiB had been the fastest).  The size changes no bit:
 * the tiles of a chunk are independent rows of its products.  -DCHUNK_FLOATS=N overrides it. */
#ifndef CHUNK_FLOATS
#define CHUNK_FLOATS (256 * 1024)
#endif

/* Floats per tile in V (16 x c) or M (16 x oc), plus 16: rows of a power-of-two size would put
 * the product's 6 rows (and its output tile's) in the same L1 sets. */
static int64_t ld_of(int c) { return 16 * (int64_t)c + 16; }

/* Tiles per chunk for c input and oc output channels: a multiple of the avx2 kernel's 6 rows. */
static int64_t chunk_tiles(int c, int oc) {
    int64_t t = CHUNK_FLOATS / (ld_of(c) + ld_of(oc));
    t = t / 6 * 6;
    return t < 6 ? 6 : t;
}

/* Tiles per chunk for a call of `tiles` tiles: at most chunk_tiles, the chunks about even (a
 * multiple of 6 each, the last one less). */
static int64_t chunk_for(int64_t tiles, int c, int oc) {
    const int64_t cap = chunk_tiles(c, oc), nch = (tiles + cap - 1) / cap;
    int64_t tb = (tiles + nch - 1) / nch;
    tb = (tb + 5) / 6 * 6;
    return tb < tiles ? tb : tiles;
}

/* Tiles of one image: rows and columns of 2x2 output blocks (with a 2x2 stride-2 pool, only
 * those whose pooled output exists: an odd last row or column is dropped, as the pool does). */
static void tile_grid(int h, int w, int pool, int *th, int *tw) {
    *th = pool ? h / 2 : (h + 1) / 2;
    *tw = pool ? w / 2 : (w + 1) / 2;
}

void sm_k_wino3_weights(const float *W, int oc, int c, int flip, float *U) {
    /* U (16, c, oc): U[xi][ch][o] = (G g G^T)[xi] for g = W[o][.][.][ch], W (oc, 3, 3, c); with
     * flip, U (16, oc, c) of the convolution from oc to c channels by W rotated 180 degrees:
     * U[xi][o][ch] for g[ky][kx] = W[o][2 - ky][2 - kx][ch] (the input gradient's).  Each U entry
     * is computed alone, so the threads' split changes no bits (on one thread this was about 2% of
     * a training epoch, with the other thread waiting). */
#pragma omp parallel for schedule(static) if ((int64_t)oc * c >= 2048)
    for (int a = 0; a < (flip ? oc : c); a++)
        for (int b = 0; b < (flip ? c : oc); b++) { /* the stores' contiguous index innermost */
            const int o = flip ? a : b, ch = flip ? b : a;
            float g[3][3], q[4][3];
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++)
                    g[ky][kx] = flip ? W[(((int64_t)o * 3 + (2 - ky)) * 3 + (2 - kx)) * c + ch]
                                     : W[(((int64_t)o * 3 + ky) * 3 + kx) * c + ch];
            for (int j = 0; j < 3; j++) { /* q = G g */
                q[0][j] = g[0][j];
                q[1][j] = ((g[0][j] + g[1][j]) + g[2][j]) * 0.5f;
                q[2][j] = ((g[0][j] - g[1][j]) + g[2][j]) * 0.5f;
                q[3][j] = g[2][j];
            }
            for (int i = 0; i < 4; i++) { /* u = q G^T */
                float u[4];
                u[0] = q[i][0];
                u[1] = ((q[i][0] + q[i][1]) + q[i][2]) * 0.5f;
                u[2] = ((q[i][0] - q[i][1]) + q[i][2]) * 0.5f;
                u[3] = q[i][2];
                for (int j = 0; j < 4; j++)
                    U[flip ? ((int64_t)(i * 4 + j) * oc + o) * c + ch : ((int64_t)(i * 4 + j) * c + ch) * oc + o] = u[j];
            }
        }
}

size_t sm_k_wino3_1_ws(int n, int h, int w, int c, int oc, int pool) {
    int th, tw;
    tile_grid(h, w, pool, &th, &tw);
    const int64_t tiles = (int64_t)n * th * tw, tb = chunk_for(tiles, c, oc);
    /* V (tb, ldv), M (tb, ldm), a zero row (c) for the cells outside the image */
    return sizeof(float) * (size_t)(tb * (ld_of(c) + ld_of(oc)) + c);
}

/* The transforms work on VW channels at a time in GCC's generic vectors: 16 (one zmm register) in
 * a build for AVX-512, else 8 (one ymm register with AVX2, two xmm without).  Each lane is one
 * channel and takes the float operations written below, in that order, the same as a scalar
 * would, so the width changes no bit; a tail of fewer than VW channels goes through a
 * zero-padded copy of VW (the same operations on the same values).  (The names keep the 8 of
 * the first width.)  16 lanes on Zen 5: embedding 33.0-33.1k -> 34.6-35.0k images/s. */
#if defined(__AVX512F__)
#define VW 16 /* lanes: one zmm register (a build for AVX-512; the same operations in each lane) */
#else
#define VW 8
#endif
typedef float v8 __attribute__((vector_size(VW * 4)));
typedef int32_t v8i __attribute__((vector_size(VW * 4)));

static inline v8 load8(const float *p) {
    v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void store8(float *p, v8 v) { memcpy(p, &v, sizeof v); }
static inline v8 max8(v8 a, v8 b) { /* b > a ? b : a, lane by lane */
    const v8i m = b > a;
    return (v8)(((v8i)b & m) | ((v8i)a & ~m));
}
static inline v8 relu8(v8 a) { /* a > 0 ? a : 0 (NaN gives 0) */
    const v8 z = {0};
    const v8i m = a > z;
    return (v8)((v8i)a & m);
}

/* V (16, ld) at lanes ch .. ch+VW = B^T d B for the 4x4 tile d, d[k] = p[k] + ch */
static inline void in8(const float *const *p, int ch, float *v, int64_t ld) {
    v8 d[16], r[16];
    for (int k = 0; k < 16; k++) d[k] = load8(p[k] + ch);
    for (int j = 0; j < 4; j++) { /* r = B^T d */
        r[0 * 4 + j] = d[0 * 4 + j] - d[2 * 4 + j];
        r[1 * 4 + j] = d[1 * 4 + j] + d[2 * 4 + j];
        r[2 * 4 + j] = d[2 * 4 + j] - d[1 * 4 + j];
        r[3 * 4 + j] = d[1 * 4 + j] - d[3 * 4 + j];
    }
    for (int i = 0; i < 4; i++) { /* V = r B */
        store8(v + (i * 4 + 0) * ld + ch, r[i * 4 + 0] - r[i * 4 + 2]);
        store8(v + (i * 4 + 1) * ld + ch, r[i * 4 + 1] + r[i * 4 + 2]);
        store8(v + (i * 4 + 2) * ld + ch, r[i * 4 + 2] - r[i * 4 + 1]);
        store8(v + (i * 4 + 3) * ld + ch, r[i * 4 + 1] - r[i * 4 + 3]);
    }
}

/* V (16, c) = B^T d B for the 4x4 tile whose cells are the rows p[0..15] (c floats each) */
static void in_tile(const float *const *p, int c, float *v) {
    int ch = 0;
    for (; ch + VW <= c; ch += VW) in8(p, ch, v, c);
    if (ch < c) { /* the tail through zero-padded copies */
        float pad[16][VW] = {{0}}, vt[16 * VW];
        const float *pp[16];
        for (int k = 0; k < 16; k++) {
            memcpy(pad[k], p[k] + ch, sizeof(float) * (size_t)(c - ch));
            pp[k] = pad[k];
        }
        in8(pp, 0, vt, VW);
        for (int k = 0; k < 16; k++) memcpy(v + k * c + ch, vt + k * VW, sizeof(float) * (size_t)(c - ch));
    }
}

/* The 2x2 outputs A^T m A at lanes o .. o+VW of one tile, m (16, ld): y[0..3] (row-major) */
static inline void out8(const float *m, int64_t ld, int o, v8 *y) {
    v8 s[8];
    for (int j = 0; j < 4; j++) { /* s = A^T m */
        s[0 * 4 + j] = (load8(m + (0 * 4 + j) * ld + o) + load8(m + (1 * 4 + j) * ld + o)) + load8(m + (2 * 4 + j) * ld + o);
        s[1 * 4 + j] = (load8(m + (1 * 4 + j) * ld + o) - load8(m + (2 * 4 + j) * ld + o)) - load8(m + (3 * 4 + j) * ld + o);
    }
    for (int i = 0; i < 2; i++) { /* y = s A */
        y[i * 2 + 0] = (s[i * 4 + 0] + s[i * 4 + 1]) + s[i * 4 + 2];
        y[i * 2 + 1] = (s[i * 4 + 1] - s[i * 4 + 2]) - s[i * 4 + 3];
    }
}

/* The 2x2 outputs of one tile, m (16, oc), + b (NULL: none), then relu if set, into the rows
 * q[0..3] (NULL: a cell outside the image); with pool, their max (row-major order, a later cell
 * on a strictly larger value), then + b and relu, into q[0]. */
static void out_tile(const float *m, int oc, const float *b, int relu, int pool, float *const *q) {
    for (int o = 0; o < oc; o += VW) {
        const int len = oc - o < VW ? oc - o : VW;
        float mt[16 * VW], bt[VW] = {0};
        const float *src = m;
        int64_t ld = oc, at = o;
        if (len < VW) { /* the tail through a zero-padded copy */
            memset(mt, 0, sizeof mt);
            for (int k = 0; k < 16; k++) memcpy(mt + k * VW, m + k * oc + o, sizeof(float) * (size_t)len);
            src = mt, ld = VW, at = 0;
        }
        v8 y[4], bv = {0};
        out8(src, ld, (int)at, y);
        if (b) {
            memcpy(bt, b + o, sizeof(float) * (size_t)len);
            bv = load8(bt);
        }
        const int nout = pool ? 1 : 4;
        if (pool) y[0] = max8(max8(max8(y[0], y[1]), y[2]), y[3]);
        for (int i = 0; i < nout; i++) {
            if (!q[i]) continue;
            v8 v = y[i];
            if (b) v = v + bv;
            if (relu) v = relu8(v);
            if (len == VW) store8(q[i] + o, v);
            else {
                float t[VW];
                store8(t, v);
                memcpy(q[i] + o, t, sizeof(float) * (size_t)len);
            }
        }
    }
}

/* Tiles t0 .. t0+nt of the call (tiles numbered image by image, row by row), with the chunk
 * buffers V (nt, ldv), M (nt, ldm) and a zero row (c) of buf. */
static void run_chunk(const float *x, int h, int w, int c, const float *U, int oc, const float *b, int relu,
                      int pool, float *y, int64_t t0, int nt, float *buf) {
    int th, tw;
    tile_grid(h, w, pool, &th, &tw);
    const int64_t per = (int64_t)th * tw;
    const int64_t ldv = ld_of(c), ldm = ld_of(oc);
    float *V = buf;              /* (nt, ldv): a tile's 16 rows (16, c) */
    float *M = V + nt * ldv;     /* (nt, ldm): a tile's 16 rows (16, oc) */
    float *zero = M + nt * ldm;  /* (c) */
    memset(zero, 0, sizeof(float) * (size_t)c);
    const int yh = pool ? h / 2 : h, yw = pool ? w / 2 : w;
    const sm_gemm_kernels *kr = sm_gemm_active();
    {
        for (int t = 0; t < nt; t++) {
            const int64_t id = t0 + t, img = id / per;
            const int ty = (int)(id % per) / tw, tx = (int)(id % per) % tw;
            const float *p[16];
            for (int i = 0; i < 4; i++) {
                const int iy = 2 * ty - 1 + i;
                for (int j = 0; j < 4; j++) {
                    const int ix = 2 * tx - 1 + j;
                    p[i * 4 + j] = iy >= 0 && iy < h && ix >= 0 && ix < w
                                       ? x + ((img * h + iy) * w + ix) * (int64_t)c : zero;
                }
            }
            in_tile(p, c, V + (int64_t)t * ldv);
        }
        for (int xi = 0; xi < 16; xi++) /* M_xi (nt, oc) = V_xi (nt, c) U_xi (c, oc) */
            sm_gemm_run(kr, 0, 0, 0, nt, oc, c, 1.0f, V + (int64_t)xi * c, (int)ldv, U + (int64_t)xi * c * oc, oc,
                        0.0f, M + (int64_t)xi * oc, (int)ldm);
        for (int t = 0; t < nt; t++) {
            const int64_t id = t0 + t, img = id / per;
            const int ty = (int)(id % per) / tw, tx = (int)(id % per) % tw;
            float *q[4] = {NULL, NULL, NULL, NULL};
            if (pool) {
                q[0] = y + ((img * yh + ty) * yw + tx) * (int64_t)oc;
            } else {
                for (int i = 0; i < 4; i++) {
                    const int oy = 2 * ty + (i >> 1), ox = 2 * tx + (i & 1);
                    if (oy < h && ox < w) q[i] = y + ((img * yh + oy) * yw + ox) * (int64_t)oc;
                }
            }
            out_tile(M + (int64_t)t * ldm, oc, b, relu, pool, q);
        }
    }
}

void sm_k_wino3_1(const float *x, int n, int h, int w, int c, const float *U, int oc, const float *b, int relu,
                  int pool, float *y, const sm_ws *ws) {
    assert(ws && ws->bytes >= sm_k_wino3_1_ws(n, h, w, c, oc, pool));
    int th, tw;
    tile_grid(h, w, pool, &th, &tw);
    const int64_t tiles = (int64_t)n * th * tw;
    if (tiles == 0) return;
    const int64_t tb = chunk_for(tiles, c, oc);
    for (int64_t t0 = 0; t0 < tiles; t0 += tb)
        run_chunk(x, h, w, c, U, oc, b, relu, pool, y, t0, (int)(tiles - t0 < tb ? tiles - t0 : tb), ws->base);
}

/* The threaded form: chunks of TRAIN_CHUNK tiles (fixed by the shape alone) over the threads,
 * each thread with its own chunk buffers in the workspace.  96 and 288 measured alike on Zen 3
 * (cnn-s's layers at batch 128, one thread), 576 slower. */
#define TRAIN_CHUNK 96
static size_t chunk_bytes(int c, int oc) {
    return sizeof(float) * (size_t)(TRAIN_CHUNK * (ld_of(c) + ld_of(oc)) + c + 16);
}

size_t sm_k_wino3_ws(int n, int h, int w, int c, int oc) {
    int nth = 1;
#ifdef _OPENMP
    nth = omp_get_max_threads();
#endif
    return (size_t)nth * chunk_bytes(c, oc);
}

void sm_k_wino3(const float *x, int n, int h, int w, int c, const float *U, int oc, const float *b, int relu,
                float *y, const sm_ws *ws) {
    const size_t per_thread = chunk_bytes(c, oc);
    assert(ws && ws->bytes >= per_thread);
    const int64_t tiles = (int64_t)n * ((h + 1) / 2) * ((w + 1) / 2), nch = (tiles + TRAIN_CHUNK - 1) / TRAIN_CHUNK;
    int nth = (int)(ws->bytes / per_thread);
#ifdef _OPENMP
    if (nth > omp_get_max_threads()) nth = omp_get_max_threads();
#endif
    if (nth > nch) nth = (int)(nch > 0 ? nch : 1);
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *buf = (float *)((char *)ws->base + (size_t)tid * per_thread);
#pragma omp for schedule(dynamic, 1)
        for (int64_t k = 0; k < nch; k++) {
            const int64_t t0 = k * TRAIN_CHUNK;
            run_chunk(x, h, w, c, U, oc, b, relu, 0, y, t0, (int)(tiles - t0 < TRAIN_CHUNK ? tiles - t0 : TRAIN_CHUNK),
                      buf);
        }
    }
}
