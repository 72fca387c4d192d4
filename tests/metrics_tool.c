/* metrics_tool.c - test-only helper for tests/test_metrics_peer.py: runs one search / metrics
 * function on raw little-endian arrays (as written by numpy's tofile) and writes raw results or
 * prints "name value" lines.  Not a CTest test itself (not named test_*).
 *   metrics_tool knn DB.f32 N Q.f32 NQ D K METRIC EXCLUDE DIST_OUT.f32 IDX_OUT.i64
 *   metrics_tool retrieval EMB.f32 LABELS.i32 N D METRIC
 *   metrics_tool nmi A.i32 B.i32 N
 *   metrics_tool roc SCORES.f32 GENUINE.i8 N FAR_OUT.f64 TAR_OUT.f64 THR_OUT.f32
 *   metrics_tool dist EMB.f32 LABELS.i32 N D
 * METRIC: l2, ip or cosine. */
#include "simile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *read_raw(const char *path, size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    FILE *f = fopen(path, "rb");
    if (!p || !f || fread(p, 1, bytes, f) != bytes) {
        fprintf(stderr, "metrics_tool: cannot read %zu bytes from %s\n", bytes, path);
        exit(2);
    }
    fclose(f);
    return p;
}

static void write_raw(const char *path, const void *p, size_t bytes) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, bytes, f) != bytes || fclose(f) != 0) {
        fprintf(stderr, "metrics_tool: cannot write %s\n", path);
        exit(2);
    }
}

static sm_metric parse_metric(const char *s) {
    if (!strcmp(s, "l2")) return SM_METRIC_L2;
    if (!strcmp(s, "ip")) return SM_METRIC_IP;
    if (!strcmp(s, "cosine")) return SM_METRIC_COSINE;
    fprintf(stderr, "metrics_tool: unknown metric %s\n", s);
    exit(2);
}

static void check(sm_status st, const char *what) {
    if (st != SM_OK) {
        fprintf(stderr, "metrics_tool: %s: %s: %s\n", what, sm_strerror(st), sm_errmsg());
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc >= 12 && !strcmp(argv[1], "knn")) {
        int64_t n = atoll(argv[3]), nq = atoll(argv[5]);
        int d = atoi(argv[6]), k = atoi(argv[7]);
        float *db = read_raw(argv[2], sizeof(float) * (size_t)(n * d)); /* (n, d) */
        float *q = read_raw(argv[4], sizeof(float) * (size_t)(nq * d)); /* (nq, d) */
        float *dist = malloc(sizeof(float) * (size_t)(nq * k));         /* (nq, k) */
        int64_t *idx = malloc(sizeof(int64_t) * (size_t)(nq * k));     /* (nq, k) */
        check(sm_knn_search(db, n, q, nq, d, k, parse_metric(argv[8]), atoi(argv[9]), dist, idx),
              "knn");
        write_raw(argv[10], dist, sizeof(float) * (size_t)(nq * k));
        write_raw(argv[11], idx, sizeof(int64_t) * (size_t)(nq * k));
        free(db); free(q); free(dist); free(idx);
        return 0;
    }
    if (argc >= 7 && !strcmp(argv[1], "retrieval")) {
        int64_t n = atoll(argv[4]);
        int d = atoi(argv[5]);
        float *e = read_raw(argv[2], sizeof(float) * (size_t)(n * d));
        int32_t *y = read_raw(argv[3], sizeof(int32_t) * (size_t)n);
        sm_retrieval_result r;
        check(sm_retrieval_metrics(e, y, n, d, parse_metric(argv[6]), &r), "retrieval");
        printf("precision_at_1 %.17g\nr_precision %.17g\nmap_at_r %.17g\n", r.precision_at_1,
               r.r_precision, r.map_at_r);
        printf("recall_at_1 %.17g\nrecall_at_2 %.17g\nrecall_at_4 %.17g\nrecall_at_8 %.17g\n",
               r.recall_at_k[0], r.recall_at_k[1], r.recall_at_k[2], r.recall_at_k[3]);
        printf("nmi %.17g\nnum_queries %lld\nnum_skipped %lld\nnum_classes %d\n", r.nmi,
               (long long)r.num_queries, (long long)r.num_skipped, r.num_classes);
        free(e); free(y);
        return 0;
    }
    if (argc >= 5 && !strcmp(argv[1], "nmi")) {
        int64_t n = atoll(argv[4]);
        int32_t *a = read_raw(argv[2], sizeof(int32_t) * (size_t)n);
        int32_t *b = read_raw(argv[3], sizeof(int32_t) * (size_t)n);
        double v;
        check(sm_nmi(a, b, n, &v), "nmi");
        printf("nmi %.17g\n", v);
        free(a); free(b);
        return 0;
    }
    if (argc >= 8 && !strcmp(argv[1], "roc")) {
        int64_t n = atoll(argv[4]), count = 0;
        float *s = read_raw(argv[2], sizeof(float) * (size_t)n);
        int8_t *g = read_raw(argv[3], (size_t)n);
        check(sm_roc(s, g, n, NULL, NULL, NULL, 0, &count), "roc count");
        double *far = malloc(sizeof(double) * (size_t)count), *tar = malloc(sizeof(double) * (size_t)count);
        float *thr = malloc(sizeof(float) * (size_t)count);
        check(sm_roc(s, g, n, far, tar, thr, count, &count), "roc");
        write_raw(argv[5], far, sizeof(double) * (size_t)count);
        write_raw(argv[6], tar, sizeof(double) * (size_t)count);
        write_raw(argv[7], thr, sizeof(float) * (size_t)count);
        double auc, eer, t2, t3, t4;
        float eth;
        check(sm_roc_auc(s, g, n, &auc), "auc");
        check(sm_eer(s, g, n, &eer, &eth), "eer");
        check(sm_tar_at_far(s, g, n, 1e-2, &t2, NULL), "tar@far");
        check(sm_tar_at_far(s, g, n, 1e-3, &t3, NULL), "tar@far");
        check(sm_tar_at_far(s, g, n, 1e-4, &t4, NULL), "tar@far");
        printf("count %lld\nauc %.17g\neer %.17g\neer_threshold %.9g\n", (long long)count, auc, eer,
               eth);
        printf("tar_at_far_1e-2 %.17g\ntar_at_far_1e-3 %.17g\ntar_at_far_1e-4 %.17g\n", t2, t3, t4);
        free(s); free(g); free(far); free(tar); free(thr);
        return 0;
    }
    if (argc >= 6 && !strcmp(argv[1], "dist")) {
        int64_t n = atoll(argv[4]);
        int d = atoi(argv[5]);
        float *e = read_raw(argv[2], sizeof(float) * (size_t)(n * d));
        int32_t *y = read_raw(argv[3], sizeof(int32_t) * (size_t)n);
        double a, b;
        check(sm_intra_inter_distances(e, y, n, d, &a, &b), "dist");
        printf("mean_intra %.17g\nmean_inter %.17g\n", a, b);
        free(e); free(y);
        return 0;
    }
    fprintf(stderr, "usage: metrics_tool knn|retrieval|nmi|roc|dist ... (see the source)\n");
    return 2;
}
