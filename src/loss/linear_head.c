/* linear_head.c - the linear classifier head z = f W^T + b and its backward, shared by the
 * softmax / focal loss objects (softmax_head.c) and the standalone sm_softmax_head
 * (classify.c).  Above SM_HEAD_GEMM_MIN multiply-adds (n * c * d) the products are sgemm calls
 * (gemm); below it plain loops that accumulate in double. */
#include "loss/loss.h"
#include "backend/backend.h"
#include <string.h>

#define SM_HEAD_GEMM_MIN ((int64_t)1 << 15)

void sm_linear_head_forward(const float *f, const float *W, const float *b, int n, int d, int c, float *z) {
    if ((int64_t)n * c * d >= SM_HEAD_GEMM_MIN) {
        for (int i = 0; i < n; i++) {
            float *zi = z + (int64_t)i * c;
            if (b) memcpy(zi, b, (size_t)c * sizeof(float));
            else memset(zi, 0, (size_t)c * sizeof(float));
        }
        sm_be_gemm(sm_backend_default(), 0, 1, n, c, d, 1.0f, f, d, W, d, 1.0f, z, c);
        return;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c; j++) {
            const float *fi = f + (int64_t)i * d, *wj = W + (int64_t)j * d;
            double acc = b ? b[j] : 0.0;
            for (int k = 0; k < d; k++) acc += (double)fi[k] * wj[k];
            z[(int64_t)i * c + j] = (float)acc;
        }
}

void sm_linear_head_backward(const float *G, const float *f, const float *W, int n, int d, int c, float *df,
                             float *dW, float *db, int accumulate) {
    const int big = (int64_t)n * c * d >= SM_HEAD_GEMM_MIN;
    if (df) {
        if (big) {
            sm_be_gemm(sm_backend_default(), 0, 0, n, d, c, 1.0f, G, c, W, d, 0.0f, df, d);
        } else {
            for (int i = 0; i < n; i++)
                for (int k = 0; k < d; k++) {
                    double acc = 0.0;
                    for (int j = 0; j < c; j++) acc += (double)G[(int64_t)i * c + j] * W[(int64_t)j * d + k];
                    df[(int64_t)i * d + k] = (float)acc;
                }
        }
    }
    if (dW) {
        if (big) {
            sm_be_gemm(sm_backend_default(), 1, 0, c, d, n, 1.0f, G, c, f, d, accumulate ? 1.0f : 0.0f, dW, d);
        } else {
            for (int j = 0; j < c; j++)
                for (int k = 0; k < d; k++) {
                    double acc = 0.0;
                    for (int i = 0; i < n; i++) acc += (double)G[(int64_t)i * c + j] * f[(int64_t)i * d + k];
                    if (accumulate) dW[(int64_t)j * d + k] += (float)acc;
                    else dW[(int64_t)j * d + k] = (float)acc;
                }
        }
    }
    if (db)
        for (int j = 0; j < c; j++) {
            double acc = 0.0;
            for (int i = 0; i < n; i++) acc += G[(int64_t)i * c + j];
            if (accumulate) db[j] += (float)acc;
            else db[j] = (float)acc;
        }
}
