/* knn_few.c - the portable C scores of the few-queries fused search pass (knn_few.h), compiled
 * with -ffp-contract=off (CMakeLists.txt) so that it rounds as its AVX2 copy does. */
#include "backend/cpu/knn_few.h"
#include <math.h>

int sm_few_keys_c(const float *rows, int m, int d, const float *q, int nq, int kind, const float *qn, float *keys) {
    int bad = 0;
    for (int j = 0; j < m; j++) {
        const float *row = rows + (int64_t)j * d;
        for (int i = 0; i < nq; i++) {
            const float *qi = q + (int64_t)i * d;
            float s = 0, bb = 0, v;
            if (kind == 1) {
                for (int t = 0; t < d; t++) s += qi[t] * row[t];
                v = -s;
            } else {
                for (int t = 0; t < d; t++) { s += qi[t] * row[t]; bb += row[t] * row[t]; }
                if (kind == 0) { v = qn[i] + bb - 2.0f * s; v = v > 0.0f ? v : (v != v ? v : 0.0f); }
                else v = bb > 0.0f ? -(s * qn[i] / sqrtf(bb)) : (bb == bb ? -0.0f * s : bb);
            }
            if (!(v - v == 0.0f)) { bad = 1; v = INFINITY; } /* NaN or inf */
            keys[(int64_t)i * SM_FEW_BLOCK + j] = v;
        }
    }
    return bad;
}
