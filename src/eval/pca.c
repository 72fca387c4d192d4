/* pca.c - principal component analysis for 2-D pictures of embeddings (the report's, in
 * report/, among them): centre, covariance in double precision, cyclic Jacobi
 * eigen-decomposition (deterministic: a fixed sweep order, no random start), components sorted
 * by variance with a fixed sign, projection. */
#include "core/core.h"
#include <math.h>
#include <string.h>

/* Eigen-decomposition of the symmetric matrix A (d, d) (destroyed: its diagonal ends up holding
 * the eigenvalues) by cyclic Jacobi rotations; V (d, d) receives the eigenvectors as columns. */
static void jacobi_eigen(double *A, double *V, int d) {
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) V[(size_t)i * d + j] = i == j;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, diag = 0;
        for (int i = 0; i < d; i++) {
            diag += A[(size_t)i * d + i] * A[(size_t)i * d + i];
            for (int j = i + 1; j < d; j++) off += A[(size_t)i * d + j] * A[(size_t)i * d + j];
        }
        if (off <= 1e-30 * (diag > 0 ? diag : 1)) break;
        for (int p = 0; p < d - 1; p++) {
            for (int q = p + 1; q < d; q++) {
                double apq = A[(size_t)p * d + q];
                if (apq == 0) continue;
                double app = A[(size_t)p * d + p], aqq = A[(size_t)q * d + q];
                double theta = (aqq - app) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < d; k++) { /* columns p, q */
                    double akp = A[(size_t)k * d + p], akq = A[(size_t)k * d + q];
                    A[(size_t)k * d + p] = c * akp - s * akq;
                    A[(size_t)k * d + q] = s * akp + c * akq;
                }
                for (int k = 0; k < d; k++) { /* rows p, q */
                    double apk = A[(size_t)p * d + k], aqk = A[(size_t)q * d + k];
                    A[(size_t)p * d + k] = c * apk - s * aqk;
                    A[(size_t)q * d + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < d; k++) {
                    double vkp = V[(size_t)k * d + p], vkq = V[(size_t)k * d + q];
                    V[(size_t)k * d + p] = c * vkp - s * vkq;
                    V[(size_t)k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
}

sm_status sm_pca(const float *x, int64_t n, int d, int k, float *proj, float *components,
                 double *explained) {
    if (!x || !proj) return sm_fail(SM_ERR_INVALID, "sm_pca: NULL buffer");
    if (n < 2 || d < 1 || k < 1 || k > d)
        return sm_fail(SM_ERR_INVALID, "sm_pca: need n >= 2, d >= 1, 1 <= k <= d (got n %lld, d %d, k %d)",
                       (long long)n, d, k);
    if (d > 4096) return sm_fail(SM_ERR_RANGE, "sm_pca: dimension %d above 4096", d);
    if (!sm_all_finite(x, n * d)) return sm_fail(SM_ERR_NUMERIC, "sm_pca: NaN or Inf in the data");
    double *mean = sm_calloc((size_t)d, sizeof(double));        /* (d) */
    double *C = sm_calloc((size_t)d * d, sizeof(double));       /* (d, d) covariance */
    double *V = sm_alloc((size_t)d * d, sizeof(double));        /* (d, d) eigenvectors (columns) */
    double *row = sm_alloc((size_t)d, sizeof(double));          /* (d) centred row */
    int *order = sm_alloc((size_t)d, sizeof(int));              /* (d) components by variance */
    if (!mean || !C || !V || !row || !order) {
        sm_free(mean); sm_free(C); sm_free(V); sm_free(row); sm_free(order);
        return SM_ERR_NOMEM;
    }
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++) mean[j] += x[i * d + j];
    for (int j = 0; j < d; j++) mean[j] /= (double)n;
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < d; j++) row[j] = x[i * d + j] - mean[j];
        for (int a = 0; a < d; a++) {
            double ra = row[a];
            if (ra == 0) continue;
            for (int c = a; c < d; c++) C[(size_t)a * d + c] += ra * row[c];
        }
    }
    double total = 0;
    for (int a = 0; a < d; a++)
        for (int c = a; c < d; c++) {
            C[(size_t)a * d + c] /= (double)(n - 1);
            C[(size_t)c * d + a] = C[(size_t)a * d + c];
        }
    for (int a = 0; a < d; a++) total += C[(size_t)a * d + a];
    jacobi_eigen(C, V, d);
    /* sort by eigenvalue, descending (stable: lower index first on ties) */
    for (int i = 0; i < d; i++) order[i] = i;
    for (int i = 1; i < d; i++) {
        int v = order[i], j = i;
        while (j > 0 && C[(size_t)order[j - 1] * d + order[j - 1]] < C[(size_t)v * d + v]) { order[j] = order[j - 1]; j--; }
        order[j] = v;
    }
    for (int c = 0; c < k; c++) {
        int col = order[c], big = 0;
        for (int j = 1; j < d; j++)
            if (fabs(V[(size_t)j * d + col]) > fabs(V[(size_t)big * d + col]) + 1e-12) big = j;
        if (V[(size_t)big * d + col] < 0)
            for (int j = 0; j < d; j++) V[(size_t)j * d + col] = -V[(size_t)j * d + col];
        if (components)
            for (int j = 0; j < d; j++) components[(size_t)c * d + j] = (float)V[(size_t)j * d + col];
        if (explained) {
            double ev = C[(size_t)col * d + col];
            explained[c] = total > 0 ? (ev > 0 ? ev : 0) / total : 0;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < d; j++) row[j] = x[i * d + j] - mean[j];
        for (int c = 0; c < k; c++) {
            int col = order[c];
            double s = 0;
            for (int j = 0; j < d; j++) s += row[j] * V[(size_t)j * d + col];
            proj[i * k + c] = (float)s;
        }
    }
    sm_free(mean); sm_free(C); sm_free(V); sm_free(row); sm_free(order);
    return SM_OK;
}
