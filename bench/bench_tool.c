/* bench_tool.c - the simile side of the benchmarks (bench/bench_embed.py, bench_eval.py,
 * bench_search.py): times one library call on data
 * the Python driver wrote, and prints one JSON line (the driver runs the peer on the same data).
 *   bench_tool embed IMAGES LABELS THREADS BATCH [MODEL]   sm_model_embed of every image (cnn-s,
 *                                                          untrained from seed 1, unless MODEL)
 *   bench_tool eval EMB.npy LABELS.npy THREADS             sm_retrieval_metrics, L2 metric
 *   bench_tool search DB.npy Q.npy K THREADS NSINGLE IDX_OUT.npy
 *                                                          sm_knn_search IP: all queries in one
 *                                                          call, then NSINGLE queries one by one
 *   bench_tool resnet SPEC SIZE THREADS BATCH STEPS NEMBED
 *                                                          training steps (forward, backward with a
 *                                                          fixed random output gradient, plain SGD
 *                                                          over the parameters) of SPEC at
 *                                                          SIZE x SIZE x 3 on synthetic images, one
 *                                                          untimed step first; then sm_model_embed
 *                                                          of NEMBED images (bench_resnet.py)
 * SIMILE_PROFILE=1 prints per-layer forward times for embed.  Not a test; exits 1 on error. */
#include "simile.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void check(sm_status st, const char *what) {
    if (st != SM_OK) {
        fprintf(stderr, "bench_tool: %s: %s: %s\n", what, sm_strerror(st), sm_errmsg());
        exit(1);
    }
}

static int bench_embed(int argc, char **argv) {
    if (argc < 6) return 2;
    int threads = atoi(argv[4]), batch = atoi(argv[5]);
    if (batch < 1) return 2;
    sm_set_num_threads(threads);
    sm_dataset *ds = NULL;
    check(sm_dataset_load_idx(&ds, argv[2], argv[3]), "load");
    check(sm_dataset_normalize(ds, 0.2860f, 0.3530f), "normalize");
    int h, w, c;
    sm_dataset_shape(ds, &h, &w, &c);
    sm_model *m = NULL;
    if (argc > 6) check(sm_model_load(&m, argv[6]), "model load");
    else check(sm_model_create(&m, "cnn-s", h, w, c, 1), "model create");
    int64_t n = sm_dataset_size(ds), in = (int64_t)h * w * c;
    int d = sm_model_embedding_dim(m);
    float *emb = malloc(sizeof(float) * (size_t)(n * d)); /* (n, d) */
    if (!emb) return 1;
    const float *x = sm_dataset_images(ds);
    check(sm_model_embed(m, x, n < batch ? n : batch, emb), "warm-up"); /* as the peer does */
    double t0 = now();
    for (int64_t s = 0; s < n; s += batch) {
        int64_t b = n - s < batch ? n - s : batch;
        check(sm_model_embed(m, x + s * in, b, emb + s * d), "embed");
    }
    double dt = now() - t0;
    fputs(sm_model_profile(m), stderr);
    printf("{\"mode\": \"embed\", \"images\": %lld, \"batch\": %d, \"threads\": %d, \"seconds\": %.4f, "
           "\"images_per_sec\": %.1f}\n", (long long)n, batch, threads, dt, (double)n / dt);
    free(emb);
    sm_model_free(m);
    sm_dataset_free(ds);
    return 0;
}

static int bench_eval(int argc, char **argv) {
    if (argc < 5) return 2;
    sm_set_num_threads(atoi(argv[4]));
    float *emb = NULL;
    int32_t *labels = NULL;
    int64_t se[4], sl[4];
    int ne, nl;
    check(sm_npy_read(argv[2], SM_NPY_F32, (void **)&emb, se, &ne), "read embeddings");
    check(sm_npy_read(argv[3], SM_NPY_I32, (void **)&labels, sl, &nl), "read labels");
    if (ne != 2 || nl != 1 || sl[0] != se[0]) {
        fprintf(stderr, "bench_tool: embeddings (n, d) and labels (n) expected\n");
        return 1;
    }
    sm_retrieval_result r;
    double t0 = now();
    check(sm_retrieval_metrics(emb, labels, se[0], (int)se[1], SM_METRIC_L2, &r), "retrieval");
    double dt = now() - t0;
    printf("{\"mode\": \"eval\", \"n\": %lld, \"d\": %d, \"seconds\": %.4f, \"precision_at_1\": %.6f, "
           "\"r_precision\": %.6f, \"map_at_r\": %.6f, \"nmi\": %.6f}\n", (long long)se[0], (int)se[1], dt,
           r.precision_at_1, r.r_precision, r.map_at_r, r.nmi);
    free(emb);
    free(labels);
    return 0;
}

static int bench_search(int argc, char **argv) {
    if (argc < 8) return 2;
    int k = atoi(argv[4]);
    int64_t nsingle = atoll(argv[6]);
    sm_set_num_threads(atoi(argv[5]));
    float *db = NULL, *q = NULL;
    int64_t sd[4], sq[4];
    int nd, nq_dims;
    check(sm_npy_read(argv[2], SM_NPY_F32, (void **)&db, sd, &nd), "read database");
    check(sm_npy_read(argv[3], SM_NPY_F32, (void **)&q, sq, &nq_dims), "read queries");
    if (nd != 2 || nq_dims != 2 || sd[1] != sq[1] || k < 1) {
        fprintf(stderr, "bench_tool: database (n, d) and queries (nq, d) expected\n");
        return 1;
    }
    int64_t n = sd[0], nq = sq[0];
    int d = (int)sd[1];
    if (nsingle > nq) nsingle = nq;
    float *dist = malloc(sizeof(float) * (size_t)(nq * k));     /* (nq, k) */
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)(nq * k)); /* (nq, k) */
    int32_t *idx32 = malloc(sizeof(int32_t) * (size_t)(nq * k)); /* (nq, k) for the .npy */
    if (!dist || !idx || !idx32) return 1;
    check(sm_knn_search(db, n, q, 1, d, k, SM_METRIC_IP, 0, dist, idx), "warm-up");
    double t0 = now();
    check(sm_knn_search(db, n, q, nq, d, k, SM_METRIC_IP, 0, dist, idx), "batch search");
    double dt_batch = now() - t0;
    for (int64_t i = 0; i < nq * k; i++) idx32[i] = (int32_t)idx[i];
    t0 = now();
    for (int64_t i = 0; i < nsingle; i++)
        check(sm_knn_search(db, n, q + i * d, 1, d, k, SM_METRIC_IP, 0, dist + i * k, idx + i * k),
              "single search");
    double dt_single = now() - t0;
    int64_t mismatch = 0; /* single-query results must equal the batched ones */
    for (int64_t i = 0; i < nsingle * k; i++) mismatch += idx32[i] != (int32_t)idx[i];
    int64_t shape[2] = {nq, k};
    check(sm_npy_write(argv[7], SM_NPY_I32, idx32, shape, 2), "write indices");
    printf("{\"mode\": \"search\", \"n\": %lld, \"nq\": %lld, \"d\": %d, \"k\": %d, \"batch_seconds\": %.4f, "
           "\"batch_qps\": %.1f, \"single_queries\": %lld, \"single_seconds\": %.4f, \"single_qps\": %.1f, "
           "\"single_vs_batch_mismatch\": %lld}\n", (long long)n, (long long)nq, d, k, dt_batch,
           (double)nq / dt_batch, (long long)nsingle, dt_single, nsingle ? (double)nsingle / dt_single : 0.0,
           (long long)mismatch);
    free(db);
    free(q);
    free(dist);
    free(idx);
    free(idx32);
    return 0;
}

static int bench_resnet(int argc, char **argv) {
    if (argc < 8) return 2;
    const char *spec = argv[2];
    int size = atoi(argv[3]), threads = atoi(argv[4]), batch = atoi(argv[5]), steps = atoi(argv[6]),
        nembed = atoi(argv[7]);
    if (size < 1 || batch < 1 || steps < 1 || nembed < 1) return 2;
    sm_set_num_threads(threads);
    sm_model *m = NULL;
    check(sm_model_create(&m, spec, size, size, 3, 1), "create");
    const int64_t in = (int64_t)size * size * 3;
    const int d = sm_model_embedding_dim(m);
    int64_t nx = (batch > nembed ? batch : nembed) * in;
    float *x = malloc(sizeof(float) * (size_t)nx);           /* (max(batch, nembed), size, size, 3) */
    float *R = malloc(sizeof(float) * (size_t)batch * d);    /* (batch, d) the output gradient */
    float *emb = malloc(sizeof(float) * (size_t)nembed * d); /* (nembed, d) */
    if (!x || !R || !emb) return 1;
    uint64_t z = 88172645463325252ull;
    for (int64_t i = 0; i < nx; i++) { z ^= z << 13; z ^= z >> 7; z ^= z << 17; x[i] = (float)((z >> 11) * 0x1.0p-53) - 0.5f; }
    for (int64_t i = 0; i < (int64_t)batch * d; i++) { z ^= z << 13; z ^= z >> 7; z ^= z << 17; R[i] = (float)((z >> 11) * 0x1.0p-53) - 0.5f; }
    check(sm_model_reserve(m, batch), "reserve");
    double t0 = 0;
    for (int s = 0; s <= steps; s++) {
        if (s == 1) t0 = now(); /* step 0 is the warm-up */
        sm_model_forward(m, x, batch, 1);
        sm_model_backward(m, x, R, batch);
        for (int64_t i = 0; i < m->nparams; i++) m->params[i] -= 1e-4f * m->grads[i];
    }
    double dt_train = now() - t0;
    check(sm_model_embed(m, x, batch < nembed ? batch : nembed, emb), "embed warm-up");
    t0 = now();
    check(sm_model_embed(m, x, nembed, emb), "embed");
    double dt_embed = now() - t0;
    printf("{\"mode\": \"resnet\", \"size\": %d, \"batch\": %d, \"steps\": %d, \"params\": %lld, "
           "\"train_images_per_sec\": %.2f, \"embed_images\": %d, \"embed_images_per_sec\": %.2f}\n",
           size, batch, steps, (long long)m->nparams, (double)steps * batch / dt_train, nembed, nembed / dt_embed);
    sm_model_free(m);
    free(x); free(R); free(emb);
    return 0;
}

int main(int argc, char **argv) {
    int rc = 2;
    if (argc >= 2 && !strcmp(argv[1], "embed")) rc = bench_embed(argc, argv);
    else if (argc >= 2 && !strcmp(argv[1], "eval")) rc = bench_eval(argc, argv);
    else if (argc >= 2 && !strcmp(argv[1], "search")) rc = bench_search(argc, argv);
    else if (argc >= 2 && !strcmp(argv[1], "resnet")) rc = bench_resnet(argc, argv);
    if (rc == 2)
        fprintf(stderr, "usage: bench_tool embed IMAGES LABELS THREADS BATCH [MODEL]\n"
                        "       bench_tool eval EMB.npy LABELS.npy THREADS\n"
                        "       bench_tool search DB.npy Q.npy K THREADS NSINGLE IDX_OUT.npy\n"
                        "       bench_tool resnet SPEC SIZE THREADS BATCH STEPS NEMBED\n");
    return rc;
}
