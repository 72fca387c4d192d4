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

/* Floats of the V and M chunks together: about 256 KiB, so that a chunk's transformed input,
 * its products and the output transform stay in a Zen 3's 512 KiB L2. */
#define CHUNK_FLOATS (64 * 1024)

/* Tiles per chunk for c input and oc output channels: a multiple of the avx2 kernel's 6 rows. */
static int64_t chunk_tiles(int c, int oc) {
    int64_t t = CHUNK_FLOATS / (16 * ((int64_t)c + oc));
    t = t / 6 * 6;
    return t < 6 ? 6 : t;
}

/* Tiles of one image: rows and columns of 2x2 output blocks (with a 2x2 stride-2 pool, only
 * those whose pooled output exists: an odd last row or column is dropped, as the pool does). */
static void tile_grid(int h, int w, int pool, int *th, int *tw) {
    *th = pool ? h / 2 : (h + 1) / 2;
    *tw = pool ? w / 2 : (w + 1) / 2;
}

void sm_k_wino3_weights(const float *W, int oc, int c, float *U) {
    /* U (16, c, oc): U[xi][ch][o] = (G g G^T)[xi] for g = W[o][.][.][ch], W (oc, 3, 3, c) */
    for (int o = 0; o < oc; o++)
        for (int ch = 0; ch < c; ch++) {
            float g[3][3], q[4][3];
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) g[ky][kx] = W[(((int64_t)o * 3 + ky) * 3 + kx) * c + ch];
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
                for (int j = 0; j < 4; j++) U[((int64_t)(i * 4 + j) * c + ch) * oc + o] = u[j];
            }
        }
}

size_t sm_k_wino3_1_ws(int n, int h, int w, int c, int oc, int pool) {
    int th, tw;
    tile_grid(h, w, pool, &th, &tw);
    int64_t tiles = (int64_t)n * th * tw, tb = chunk_tiles(c, oc);
    if (tiles < tb) tb = tiles;
    /* V (tb, 16, c), M (tb, 16, oc), a zero row (c) for the cells outside the image */
    return sizeof(float) * (size_t)(tb * 16 * ((int64_t)c + oc) + c);
}

/* V (16, c) = B^T d B for the 4x4 tile whose cells are the rows p[0..15] (c floats each) */
static inline void in_tile(const float *const *p, int c, float *restrict v) {
#pragma omp simd
    for (int ch = 0; ch < c; ch++) {
        float d[4][4], r[4][4];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) d[i][j] = p[i * 4 + j][ch];
        for (int j = 0; j < 4; j++) { /* r = B^T d */
            r[0][j] = d[0][j] - d[2][j];
            r[1][j] = d[1][j] + d[2][j];
            r[2][j] = d[2][j] - d[1][j];
            r[3][j] = d[1][j] - d[3][j];
        }
        for (int i = 0; i < 4; i++) { /* V = r B */
            v[(i * 4 + 0) * c + ch] = r[i][0] - r[i][2];
            v[(i * 4 + 1) * c + ch] = r[i][1] + r[i][2];
            v[(i * 4 + 2) * c + ch] = r[i][2] - r[i][1];
            v[(i * 4 + 3) * c + ch] = r[i][1] - r[i][3];
        }
    }
}

static inline float relu_if(float v, int relu) { return relu && !(v > 0.0f) ? 0.0f : v; }

/* The 2x2 outputs A^T m A of one tile, m (16, oc): + b, relu, into the rows q[0..3] (NULL: a
 * cell outside the image); with pool, their max, then + b and relu, into q[0]. */
static inline void out_tile(const float *restrict m, int oc, const float *b, int relu, int pool, float *const *q) {
#pragma omp simd
    for (int o = 0; o < oc; o++) {
        float s[2][4], y[2][2];
        for (int j = 0; j < 4; j++) { /* s = A^T m */
            s[0][j] = (m[(0 * 4 + j) * oc + o] + m[(1 * 4 + j) * oc + o]) + m[(2 * 4 + j) * oc + o];
            s[1][j] = (m[(1 * 4 + j) * oc + o] - m[(2 * 4 + j) * oc + o]) - m[(3 * 4 + j) * oc + o];
        }
        for (int i = 0; i < 2; i++) { /* y = s A */
            y[i][0] = (s[i][0] + s[i][1]) + s[i][2];
            y[i][1] = (s[i][1] - s[i][2]) - s[i][3];
        }
        if (pool) {
            float v = y[0][0];
            v = y[0][1] > v ? y[0][1] : v;
            v = y[1][0] > v ? y[1][0] : v;
            v = y[1][1] > v ? y[1][1] : v;
            if (b) v += b[o];
            q[0][o] = relu_if(v, relu);
        } else {
            for (int i = 0; i < 4; i++) {
                float v = y[i >> 1][i & 1];
                if (b) v += b[o];
                if (q[i]) q[i][o] = relu_if(v, relu);
            }
        }
    }
}

void sm_k_wino3_1(const float *x, int n, int h, int w, int c, const float *U, int oc, const float *b, int relu,
                  int pool, float *y, const sm_ws *ws) {
    assert(ws && ws->bytes >= sm_k_wino3_1_ws(n, h, w, c, oc, pool));
    int th, tw;
    tile_grid(h, w, pool, &th, &tw);
    const int64_t per = (int64_t)th * tw, tiles = n * per;
    if (tiles == 0) return;
    int64_t tb = chunk_tiles(c, oc);
    if (tiles < tb) tb = tiles;
    float *V = ws->base;                /* (tb, 16, c) */
    float *M = V + tb * 16 * c;         /* (tb, 16, oc) */
    float *zero = M + tb * 16 * oc;     /* (c) */
    memset(zero, 0, sizeof(float) * (size_t)c);
    const int yh = pool ? h / 2 : h, yw = pool ? w / 2 : w;
    const sm_gemm_kernels *kr = sm_gemm_active();
    for (int64_t t0 = 0; t0 < tiles; t0 += tb) {
        const int nt = (int)(tiles - t0 < tb ? tiles - t0 : tb);
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
            in_tile(p, c, V + (int64_t)t * 16 * c);
        }
        for (int xi = 0; xi < 16; xi++) /* M_xi (nt, oc) = V_xi (nt, c) U_xi (c, oc) */
            sm_gemm_run(kr, 0, 0, 0, nt, oc, c, 1.0f, V + (int64_t)xi * c, 16 * c, U + (int64_t)xi * c * oc, oc,
                        0.0f, M + (int64_t)xi * oc, 16 * oc);
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
            out_tile(M + (int64_t)t * 16 * oc, oc, b, relu, pool, q);
        }
    }
}
