/* test_faults.c - robustness under faults (docs/robustness.md):
 *  - an allocation failure injected at every allocation (sm_alloc_fail_after(k), k = 1, 2, ...
 *    until the run completes) of a small run: model create + train (1 epoch) + save + load;
 *    IDX (plain and gzip), .npy and image-folder loading; gallery open + add + save.  Each step
 *    returns SM_ERR_NOMEM or succeeds, never crashes (nor leaks: run under ASan/LSan in CI), and
 *    the file on disk is the old one or the new one;
 *  - input limits refused before allocating: an IDX header of 2^40 pixels, a .npy of 2^40
 *    values, a 100,000-layer spec, a gallery with a negative (huge) item count, a tiny model
 *    file whose spec needs gigabytes;
 *  - numerical guards: NaN/Inf inputs refused, logits of +-1e4 give a finite loss, inputs of
 *    1e30 and a diverging learning rate stop training with SM_ERR_NUMERIC naming the step, and
 *    a model with NaN parameters is never written;
 *  - disk faults: a full disk (a 64 KiB tmpfs when mounting is allowed, else RLIMIT_FSIZE), a
 *    read-only directory (a read-only remount, else an unprivileged child), and SIGKILL at
 *    random moments of model saves: the previous file stays intact every time. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "core/core.h"
#include "model/model.h"
#include "simile.h"
#include "testing.h"
#include "testfiles.h"
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static char dir[256];

static const char *P(const char *name) {
    static char buf[8][512];
    static int slot;
    slot = (slot + 1) & 7;
    snprintf(buf[slot], sizeof buf[0], "%s/%s", dir, name);
    return buf[slot];
}

static void put_be32(unsigned char *b, uint32_t v) { b[0] = v >> 24; b[1] = v >> 16; b[2] = v >> 8; b[3] = v; }
static void put_le32(unsigned char *p, uint32_t v) { p[0] = (unsigned char)v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24; }

static void remove_tmp_files(void) {
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) unlink(P(e->d_name));
    if (d) closedir(d);
}

/* A small labelled dataset (n, 6, 6, 1) with 3 classes. */
enum { N = 24, H = 6, W = 6 };
static float X[N * H * W];
static int32_t Y[N];
static void make_data(void) {
    sm_rng r;
    sm_rng_seed(&r, 5);
    for (int i = 0; i < N; i++) Y[i] = i % 3;
    for (int i = 0; i < N * H * W; i++) X[i] = (float)sm_rng_uniform(&r) + 0.3f * (float)Y[i / (H * W)];
}
static const char *SPEC = "conv 3 k=3 p=1; bn; relu; maxpool k=2; gap; fc 4; l2norm";

/* ---- injected allocation failures --------------------------------------------------------- */

/* Create, train 1 epoch with a classifier head, save to path, load back.  Returns the first
 * failure, SM_OK if everything worked. */
static sm_status train_save_load(const char *path, uint64_t seed, uint32_t *fp_saved) {
    sm_dataset *ds = NULL;
    sm_model *m = NULL, *back = NULL;
    sm_loss *loss = NULL;
    sm_status st = sm_dataset_from_arrays(&ds, X, Y, N, H, W, 1);
    if (!st) st = sm_model_create(&m, SPEC, H, W, 1, seed);
    if (!st) st = sm_loss_create(&loss, "softmax", "classes=3", 4, seed);
    if (!st) {
        sm_train_config c;
        sm_train_config_default(&c);
        c.epochs = 1; c.batch_size = 8; c.seed = seed;
        st = sm_train(m, loss, ds, &c);
    }
    if (!st) st = sm_model_save(m, path);
    if (!st && fp_saved) *fp_saved = sm_model_fingerprint(m);
    if (!st) st = sm_model_load(&back, path);
    if (!st && sm_model_fingerprint(back) != sm_model_fingerprint(m)) st = SM_ERR_MISMATCH;
    sm_model_free(back);
    sm_loss_free(loss);
    sm_model_free(m);
    sm_dataset_free(ds);
    return st;
}

static uint32_t file_fingerprint(const char *path) {
    sm_model *m;
    if (sm_model_load(&m, path)) return 0;
    uint32_t fp = sm_model_fingerprint(m);
    sm_model_free(m);
    return fp;
}

static void test_alloc_train_save_load(void) {
    const char *path = P("model.smm");
    uint32_t old_fp = 0, new_fp = 0;
    CHECK_OK(train_save_load(path, 1, &old_fp)); /* the "old" file */
    CHECK_OK(train_save_load(P("new.smm"), 2, &new_fp));
    CHECK(old_fp && new_fp && old_fp != new_fp);
    int k, failures = 0, wrong_status = 0, bad_file = 0;
    for (k = 1; k < 100000; k++) {
        sm_alloc_fail_after(k);
        sm_status st = train_save_load(path, 2, NULL);
        long used = sm_alloc_count();
        sm_alloc_fail_after(0);
        uint32_t fp = file_fingerprint(path);
        if (st == SM_OK) {
            if (fp != new_fp) { bad_file++; fprintf(stderr, "k=%d: succeeded, but the file is %s\n", k, fp ? "another model" : "unreadable"); }
            if (used < k) break; /* the k-th allocation was never reached: every point tried */
        } else {
            failures++;
            if (st != SM_ERR_NOMEM) { wrong_status++; fprintf(stderr, "k=%d: %s: %s\n", k, sm_strerror(st), sm_errmsg()); }
            if (fp != old_fp && fp != new_fp) { bad_file++; fprintf(stderr, "k=%d: %s (file: %s)\n", k, sm_errmsg(), fp ? "another model" : "unreadable"); }
        }
        /* back to the old file */
        if (fp != old_fp) CHECK_OK(train_save_load(path, 1, NULL));
    }
    CHECK_MSG(wrong_status == 0, "%d injected failures gave a status other than SM_ERR_NOMEM", wrong_status);
    CHECK_MSG(bad_file == 0, "%d injected failures left a file that is neither the old nor the new model", bad_file);
    CHECK(failures > 20);
    CHECK(t_count_tmp_files(dir) == 0);
    printf("alloc faults: model create + train + save + load failed cleanly at each of %d allocations\n", k - 1);
}

/* Run fn with a failure injected at every allocation until it completes; every failure must be
 * SM_ERR_NOMEM.  Returns the number of allocation points. */
static int every_allocation(const char *what, sm_status (*fn)(void)) {
    int k, wrong = 0;
    for (k = 1; k < 100000; k++) {
        sm_alloc_fail_after(k);
        sm_status st = fn();
        long used = sm_alloc_count();
        sm_alloc_fail_after(0);
        if (st == SM_OK) { if (used < k) break; continue; }
        if (st != SM_ERR_NOMEM) { wrong++; fprintf(stderr, "%s, k=%d: %s: %s\n", what, k, sm_strerror(st), sm_errmsg()); }
    }
    CHECK_MSG(wrong == 0, "%s: %d injected failures gave another status than SM_ERR_NOMEM", what, wrong);
    CHECK_MSG(fn() == SM_OK, "%s fails without injected failures: %s", what, sm_errmsg());
    printf("alloc faults: %s failed cleanly at each of %d allocations\n", what, k - 1);
    return k - 1;
}

static sm_status load_idx_plain(void) {
    sm_dataset *ds;
    sm_status st = sm_dataset_load_idx(&ds, P("img"), P("lab"));
    if (!st && sm_dataset_size(ds) != N) st = SM_ERR_MISMATCH;
    sm_dataset_free(ds);
    return st;
}
static sm_status load_idx_gz(void) {
    sm_dataset *ds;
    sm_status st = sm_dataset_load_idx(&ds, P("img.gz"), P("lab.gz"));
    if (!st) { st = sm_dataset_filter_classes(ds, (const int32_t[]){0, 2}, 2); }
    if (!st) st = sm_dataset_normalize(ds, 0.5f, 0.25f);
    sm_dataset_free(ds);
    return st;
}
static sm_status load_npy(void) {
    void *a = NULL, *b = NULL;
    int64_t s[4];
    int nd;
    sm_status st = sm_npy_read(P("x.npy"), SM_NPY_F32, &a, s, &nd);
    if (!st) st = sm_npy_read(P("y.npy"), SM_NPY_I32, &b, s, &nd);
    free(a); free(b);
    return st;
}
static sm_status load_folder(void) {
    sm_dataset *ds;
    char **names = NULL;
    int nc = 0;
    sm_status st = sm_dataset_load_folder(&ds, P("folder"), 4, 4, 1, &names, &nc);
    if (!st && nc != 2) st = SM_ERR_MISMATCH;
    free(names);
    sm_dataset_free(ds);
    return st;
}
static sm_status gallery_round(void) {
    /* open + add + save over g.smg, then restore it (outside the injected run's assertions) */
    sm_gallery *g;
    sm_status st = sm_gallery_open(&g, P("g.smg"));
    if (st) return st;
    float e[8] = {1, 0, 0, 1, 0.5f, 0.5f, 0.2f, 0.9f};
    st = sm_gallery_add(g, e, 4, 2, "new", NULL, NULL);
    if (!st) st = sm_gallery_save(g, P("g2.smg"));
    sm_gallery_free(g);
    return st;
}

static void test_alloc_loaders(void) {
    unsigned char img[16 + N * H * W], lab[8 + N];
    put_be32(img, 0x803); put_be32(img + 4, N); put_be32(img + 8, H); put_be32(img + 12, W);
    for (int i = 0; i < N * H * W; i++) img[16 + i] = (unsigned char)(i * 7);
    put_be32(lab, 0x801); put_be32(lab + 4, N);
    for (int i = 0; i < N; i++) lab[8 + i] = (unsigned char)Y[i];
    t_write_file(P("img"), img, sizeof img, 0);
    t_write_file(P("lab"), lab, sizeof lab, 0);
    t_write_file(P("img.gz"), img, sizeof img, 1);
    t_write_file(P("lab.gz"), lab, sizeof lab, 1);
    int64_t sx[2] = {N, H * W}, sy[1] = {N};
    CHECK_OK(sm_npy_write(P("x.npy"), SM_NPY_F32, X, sx, 2));
    CHECK_OK(sm_npy_write(P("y.npy"), SM_NPY_I32, Y, sy, 1));
    mkdir(P("folder"), 0700); mkdir(P("folder/a"), 0700); mkdir(P("folder/b"), 0700);
    const char pgm[] = "P5\n2 2\n255\n\x10\x80\xff\x00";
    t_write_file(P("folder/a/1.pgm"), pgm, sizeof pgm - 1, 0);
    t_write_file(P("folder/a/2.pgm"), pgm, sizeof pgm - 1, 0);
    t_write_file(P("folder/b/1.pgm"), pgm, sizeof pgm - 1, 0);
    sm_gallery *g;
    CHECK_OK(sm_gallery_create(&g, 2, SM_METRIC_L2, 0));
    float e[4] = {1, 2, 3, 4};
    CHECK_OK(sm_gallery_add(g, e, 2, 2, "old", NULL, NULL));
    CHECK_OK(sm_gallery_save(g, P("g.smg")));
    CHECK_OK(sm_gallery_save(g, P("g2.smg")));
    sm_gallery_free(g);
    every_allocation("IDX load (plain)", load_idx_plain);
    every_allocation("IDX load (gzip) + filter + normalise", load_idx_gz);
    every_allocation(".npy read", load_npy);
    every_allocation("image folder load", load_folder);
    every_allocation("gallery open + add + save", gallery_round);
    /* the target of the saves is the old gallery or the new one, never a partial file */
    sm_gallery *back;
    CHECK_OK(sm_gallery_open(&back, P("g2.smg")));
    if (back) CHECK(sm_gallery_size(back) == 6);
    sm_gallery_free(back);
    CHECK(t_count_tmp_files(dir) == 0);
}

/* ---- limits: refused before allocating ----------------------------------------------------- */

static void test_limits(void) {
    /* IDX: 2^24 images of 256 x 256 = 2^40 pixel bytes claimed by a 25-byte file pair */
    unsigned char img[17], lab[9];
    put_be32(img, 0x803); put_be32(img + 4, 1u << 24); put_be32(img + 8, 256); put_be32(img + 12, 256); img[16] = 0;
    put_be32(lab, 0x801); put_be32(lab + 4, 1u << 24); lab[8] = 0;
    for (int gz = 0; gz < 2; gz++) {
        t_write_file(P("big_img"), img, sizeof img, gz);
        t_write_file(P("big_lab"), lab, sizeof lab, gz);
        sm_dataset *ds = (sm_dataset *)1;
        sm_alloc_fail_after(LONG_MAX); /* count allocations, fail none */
        double t0 = sm_now();
        CHECK_STATUS(sm_dataset_load_idx(&ds, P("big_img"), P("big_lab")), SM_ERR_RANGE);
        CHECK(sm_alloc_count() == 0 && ds == NULL && sm_now() - t0 < 1.0);
        sm_alloc_fail_after(0);
        CHECK(strstr(sm_errmsg(), "pixel") != NULL);
    }
    /* IDX: 2^31 images (beyond the count limit) */
    put_be32(img + 4, 0x80000000u); put_be32(img + 8, 1); put_be32(img + 12, 1);
    t_write_file(P("big_img"), img, sizeof img, 0);
    sm_dataset *ds;
    CHECK_STATUS(sm_dataset_load_idx(&ds, P("big_img"), P("big_lab")), SM_ERR_RANGE);

    /* .npy claiming 2^40 values */
    const char *hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }";
    unsigned char npy[128] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    size_t hl = strlen(hdr);
    npy[8] = (unsigned char)hl; npy[9] = 0;
    memcpy(npy + 10, hdr, hl);
    t_write_file(P("big.npy"), npy, 10 + hl, 0);
    void *data;
    int64_t shape[4];
    int nd;
    sm_alloc_fail_after(LONG_MAX);
    CHECK_STATUS(sm_npy_read(P("big.npy"), SM_NPY_F32, &data, shape, &nd), SM_ERR_RANGE);
    CHECK(sm_alloc_count() == 1); /* the file itself, not the array */
    sm_alloc_fail_after(0);

    /* a spec of 100,000 layers: refused by its size before anything is allocated */
    size_t n = 100000;
    char *spec = malloc(n * 5 + 1);
    for (size_t i = 0; i < n; i++) memcpy(spec + 5 * i, "relu;", 5);
    memcpy(spec + 5 * (n - 1), "gap  ", 5);
    spec[5 * n] = 0;
    sm_model *m = (sm_model *)1;
    sm_alloc_fail_after(LONG_MAX);
    CHECK_STATUS(sm_model_create(&m, spec, 4, 4, 1, 1), SM_ERR_SPEC);
    CHECK(sm_alloc_count() <= 1 && m == NULL); /* at most the model struct */
    sm_alloc_fail_after(0);
    /* ... and 1,000 layers that fit the byte limit: refused by the layer limit */
    spec[5 * 1000] = 0;
    CHECK_STATUS(sm_model_create(&m, spec, 4, 4, 1, 1), SM_ERR_SPEC);
    CHECK(strstr(sm_errmsg(), "layers") != NULL);
    free(spec);
    /* layers whose outputs or parameters would need terabytes */
    CHECK_STATUS(sm_model_create(&m, "conv 4 k=1 p=1000000; gap", 4, 4, 1, 1), SM_ERR_SPEC);
    CHECK_STATUS(sm_model_create(&m, "fc 1000000; fc 1000000", 4, 4, 1, 1), SM_ERR_SPEC);
    CHECK_STATUS(sm_model_create(&m, "fc 200000 ; fc 1000", 32, 32, 1, 1), SM_ERR_SPEC); /* 2^27+ */

    /* a gallery with a negative item count (-1 as u64) and a correct checksum */
    sm_gallery *g;
    CHECK_OK(sm_gallery_create(&g, 2, SM_METRIC_L2, 0));
    CHECK_OK(sm_gallery_save(g, P("neg.smg")));
    sm_gallery_free(g);
    size_t len;
    unsigned char *b = t_read_all(P("neg.smg"), &len);
    /* header: magic 8, version, dim, metric, fp, thr, rule, nclasses (7 x u32), nitems u64 */
    for (int i = 0; i < 8; i++) b[8 + 28 + i] = 0xff;
    put_le32(b + len - 4, sm_crc32(0, b, len - 4));
    t_write_file(P("neg.smg"), b, len, 0);
    free(b);
    sm_alloc_fail_after(LONG_MAX);
    CHECK_STATUS(sm_gallery_open(&g, P("neg.smg")), SM_ERR_FORMAT);
    CHECK(sm_alloc_count() == 1); /* the file buffer only */
    sm_alloc_fail_after(0);
    CHECK(strstr(sm_errmsg(), "item count") != NULL);

    /* a 100-byte model file whose spec asks for 64M parameters: refused before allocating */
    CHECK_OK(sm_model_create(&m, "fc 2", 2, 2, 1, 1));
    CHECK_OK(sm_model_save(m, P("small.smm")));
    sm_model_free(m);
    b = t_read_all(P("small.smm"), &len);
    /* rewrite: magic, version, 2 meta (spec, input), 0 tensors, CRC */
    unsigned char f[256];
    size_t o = 0;
    memcpy(f, "SMILEMDL", 8); o = 8;
    put_le32(f + o, 1); o += 4;
    put_le32(f + o, 2); o += 4;
    const char *kv[4] = {"spec", "fc 1000", "input", "256 256 1"};
    for (int i = 0; i < 4; i++) { put_le32(f + o, (uint32_t)strlen(kv[i])); o += 4; memcpy(f + o, kv[i], strlen(kv[i])); o += strlen(kv[i]); }
    put_le32(f + o, 0); o += 4;
    put_le32(f + o, sm_crc32(0, f, o)); o += 4;
    t_write_file(P("liar.smm"), f, o, 0);
    free(b);
    sm_alloc_fail_after(LONG_MAX);
    CHECK_STATUS(sm_model_load(&m, P("liar.smm")), SM_ERR_FORMAT);
    CHECK(sm_alloc_count() <= 8); /* file, model struct, spec text: no parameter block */
    sm_alloc_fail_after(0);
}

/* ---- numerical guards ---------------------------------------------------------------------- */

static void test_numeric(void) {
    float x[4 * 4] = {0};
    int32_t y[4] = {0, 1, 0, 1};
    sm_dataset *ds;
    x[5] = NAN;
    CHECK_STATUS(sm_dataset_from_arrays(&ds, x, y, 4, 2, 2, 1), SM_ERR_NUMERIC);
    x[5] = INFINITY;
    CHECK_STATUS(sm_dataset_from_arrays(&ds, x, y, 4, 2, 2, 1), SM_ERR_NUMERIC);
    x[5] = -INFINITY;
    CHECK_STATUS(sm_dataset_from_arrays(&ds, x, y, 4, 2, 2, 1), SM_ERR_NUMERIC);

    /* logits of 1e4: the loss and its gradient stay finite */
    float z[3 * 4] = {1e4f, -1e4f, 0, 1e4f, 1e4f, 1e4f, 1e4f, 1e4f, -1e4f, -1e4f, -1e4f, -1e4f};
    int32_t lz[3] = {1, 2, 3};
    float loss, dz[12];
    CHECK_OK(sm_softmax_cross_entropy(z, lz, 3, 4, 0, &loss, dz));
    CHECK(isfinite(loss) && sm_all_finite(dz, 12));
    CHECK_NEAR(loss, (2e4 + log(2.0) + 2 * log(4.0)) / 3.0, 1e-2); /* rows: 2e4 + log 2, log 4, log 4 */
    CHECK_OK(sm_softmax_cross_entropy(z, lz, 3, 4, 0.1f, &loss, dz));
    CHECK(isfinite(loss) && sm_all_finite(dz, 12));
    CHECK_OK(sm_focal_loss(z, lz, 3, 4, 1, 2, &loss, dz));
    CHECK(isfinite(loss) && sm_all_finite(dz, 12));
    z[0] = NAN;
    CHECK_STATUS(sm_softmax_cross_entropy(z, lz, 3, 4, 0, &loss, dz), SM_ERR_NUMERIC);
    /* embeddings of 1e4 through a head and metric losses */
    sm_loss *l;
    float emb[4 * 2] = {1e4f, -1e4f, 1e4f, 1e4f, -1e4f, 1e4f, 3, -1e4f}, g[8];
    const char *names[] = {"softmax", "contrastive", "triplet", "multisimilarity"};
    for (int i = 0; i < 4; i++) {
        CHECK_OK(sm_loss_create(&l, names[i], i == 0 ? "classes=2" : "", 2, 1));
        if (!l) continue;
        CHECK_OK(sm_loss_compute(l, emb, y, 4, 2, &loss, g));
        CHECK_MSG(isfinite(loss) && sm_all_finite(g, 8), "%s: non-finite loss or gradient at 1e4", names[i]);
        sm_loss_free(l);
    }

    /* inputs of 1e30: training stops with SM_ERR_NUMERIC naming the step, nothing is saved
     * broken */
    float big[N * H * W];
    for (int i = 0; i < N * H * W; i++) big[i] = X[i] * 1e30f;
    sm_model *m;
    CHECK_OK(sm_dataset_from_arrays(&ds, big, Y, N, H, W, 1));
    CHECK_OK(sm_model_create(&m, "fc 4", H, W, 1, 3));
    CHECK_OK(sm_loss_create(&l, "softmax", "classes=3", 4, 4));
    sm_train_config c;
    sm_train_config_default(&c);
    c.optimizer = SM_OPT_SGD; c.lr = 0.1f; c.momentum = 0; c.epochs = 3; c.batch_size = 8;
    CHECK_STATUS(sm_train(m, l, ds, &c), SM_ERR_NUMERIC);
    CHECK_MSG(strstr(sm_model_errmsg(m), "step ") != NULL, "message '%s' does not name the step", sm_model_errmsg(m));
    CHECK(sm_all_finite(m->params, m->nparams));
    CHECK_OK(sm_model_save(m, P("after_nan.smm"))); /* the last good state is finite */
    sm_loss_free(l); sm_model_free(m); sm_dataset_free(ds);

    /* a learning rate that diverges (SGD, lr 100 on a bn network): SM_ERR_NUMERIC or a finite
     * model, never NaN parameters */
    CHECK_OK(sm_dataset_from_arrays(&ds, X, Y, N, H, W, 1));
    CHECK_OK(sm_model_create(&m, "fc 64 bias=0; relu; fc 64; relu; fc 4", H, W, 1, 3));
    CHECK_OK(sm_loss_create(&l, "softmax", "classes=3", 4, 4));
    c.lr = 100; c.momentum = 0.9f; c.epochs = 20; c.batch_size = 4;
    sm_status st = sm_train(m, l, ds, &c);
    CHECK_MSG(st == SM_ERR_NUMERIC, "lr 100 did not diverge (status %s)", sm_strerror(st));
    if (st == SM_ERR_NUMERIC) {
        const char *msg = sm_model_errmsg(m);
        long long step = 0;
        const char *at = strstr(msg, "step ");
        CHECK_MSG(at && sscanf(at, "step %lld", &step) == 1 && step >= 1, "no step in '%s'", msg);
        printf("numeric guard: %s\n", msg);
    }
    CHECK(sm_all_finite(m->params, m->nparams) && sm_all_finite(m->buffers, m->nbuffers));
    sm_loss_free(l); sm_dataset_free(ds);

    /* a model with a NaN parameter is never written, and the previous file stays */
    CHECK_OK(sm_model_save(m, P("keep.smm")));
    uint32_t fp = file_fingerprint(P("keep.smm"));
    m->params[0] = NAN;
    CHECK_STATUS(sm_model_save(m, P("keep.smm")), SM_ERR_NUMERIC);
    m->params[0] = 0; m->buffers[0] = INFINITY;
    if (m->nbuffers) CHECK_STATUS(sm_model_save(m, P("keep.smm")), SM_ERR_NUMERIC);
    CHECK(file_fingerprint(P("keep.smm")) == fp && fp != 0);
    CHECK(t_count_tmp_files(dir) == 0);
    sm_model_free(m);
}

/* ---- disk faults ---------------------------------------------------------------------------- */

/* A model of about 200 KB (big enough to overflow a 64 KiB disk). */
static sm_model *big_model(uint64_t seed) {
    sm_model *m = NULL;
    CHECK_OK(sm_model_create(&m, "fc 1500; fc 8", H, W, 1, seed));
    return m;
}

/* In a child: save a model to path under an RLIMIT_FSIZE of limit bytes (SIGXFSZ ignored), exit
 * with the status. */
static int save_with_fsize_limit(sm_model *m, const char *path, rlim_t limit) {
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {limit, limit};
        setrlimit(RLIMIT_FSIZE, &rl);
        _exit((int)sm_model_save(m, path));
    }
    int s;
    waitpid(pid, &s, 0);
    return WIFEXITED(s) ? WEXITSTATUS(s) : -1;
}

static void test_full_disk(void) {
    sm_model *small = NULL, *big = big_model(1);
    CHECK_OK(sm_model_create(&small, "fc 2", H, W, 1, 1));
    if (!small || !big) { sm_model_free(small); sm_model_free(big); return; }
    char mnt[300];
    snprintf(mnt, sizeof mnt, "%s/tiny", dir);
    mkdir(mnt, 0700);
    int mounted = mount("tmpfs", mnt, "tmpfs", 0, "size=64k") == 0;
    char path[400];
    snprintf(path, sizeof path, "%s/m.smm", mnt);
    CHECK_OK(sm_model_save(small, path));
    uint32_t fp = file_fingerprint(path);
    if (mounted) {
        sm_status st = sm_model_save(big, path);
        CHECK_STATUS(st, SM_ERR_IO);
        printf("full disk (64 KiB tmpfs): save refused with '%s'\n", sm_errmsg());
        /* a gallery too */
        sm_gallery *g;
        CHECK_OK(sm_gallery_create(&g, 512, SM_METRIC_L2, 0));
        float *e = calloc(512 * 64, sizeof(float));
        CHECK_OK(sm_gallery_add(g, e, 64, 512, "x", NULL, NULL));
        char gp[400];
        snprintf(gp, sizeof gp, "%s/g.smg", mnt);
        sm_gallery *g0;
        CHECK_OK(sm_gallery_create(&g0, 512, SM_METRIC_L2, 0));
        CHECK_OK(sm_gallery_save(g0, gp));
        CHECK_STATUS(sm_gallery_save(g, gp), SM_ERR_IO);
        sm_gallery *back;
        CHECK_OK(sm_gallery_open(&back, gp));
        if (back) CHECK(sm_gallery_size(back) == 0);
        sm_gallery_free(back); sm_gallery_free(g); sm_gallery_free(g0);
        free(e);
    } else {
        printf("full disk: cannot mount a tmpfs here (%s); simulated with RLIMIT_FSIZE\n", strerror(errno));
        int st = save_with_fsize_limit(big, path, 64 * 1024);
        CHECK_MSG(st == SM_ERR_IO, "save under RLIMIT_FSIZE: status %d", st);
    }
    CHECK(file_fingerprint(path) == fp);
    DIR *d = opendir(mnt);
    struct dirent *e;
    int tmps = 0;
    while (d && (e = readdir(d))) tmps += strstr(e->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    CHECK_MSG(tmps == 0, "%d temporary files left on the full disk", tmps);
    if (mounted) umount(mnt);
    rmdir(mnt);
    /* the RLIMIT_FSIZE path in any case (where the test runs unprivileged, this is the one) */
    CHECK_OK(sm_model_save(small, P("lim.smm")));
    fp = file_fingerprint(P("lim.smm"));
    CHECK(save_with_fsize_limit(big, P("lim.smm"), 50 * 1024) == SM_ERR_IO);
    CHECK(file_fingerprint(P("lim.smm")) == fp);
    CHECK_MSG(t_count_tmp_files(dir) == 0, "a failed save left its temporary file");
    sm_model_free(small);
    sm_model_free(big);
}

static void test_readonly_dir(void) {
    sm_model *a = big_model(1), *b = big_model(2);
    if (!a || !b) { sm_model_free(a); sm_model_free(b); return; }
    char ro[300], path[400];
    snprintf(ro, sizeof ro, "%s/ro", dir);
    mkdir(ro, 0755);
    int mounted = mount("tmpfs", ro, "tmpfs", 0, "size=1m") == 0;
    snprintf(path, sizeof path, "%s/m.smm", ro);
    CHECK_OK(sm_model_save(a, path));
    uint32_t fp = file_fingerprint(path);
    char gpath[400];
    snprintf(gpath, sizeof gpath, "%s/g.smg", ro);
    sm_gallery *g;
    float e[4] = {1, 2, 3, 4};
    CHECK_OK(sm_gallery_create(&g, 2, SM_METRIC_L2, 0));
    CHECK_OK(sm_gallery_save(g, gpath));
    CHECK_OK(sm_gallery_add(g, e, 2, 2, "x", NULL, NULL));
    int done = 0;
    if (mounted && mount("tmpfs", ro, "tmpfs", MS_REMOUNT | MS_RDONLY, "size=1m") == 0) {
        CHECK_STATUS(sm_model_save(b, path), SM_ERR_IO);
        printf("read-only directory (read-only tmpfs): save refused with '%s'\n", sm_errmsg());
        CHECK_STATUS(sm_gallery_save(g, gpath), SM_ERR_IO);
        sm_gallery *back = NULL;
        CHECK_OK(sm_gallery_open(&back, gpath));
        CHECK(back && sm_gallery_size(back) == 0);
        sm_gallery_free(back);
        done = 1;
    } else {
        /* unprivileged: chmod is enough; as root (without mount rights) drop to nobody in a child */
        chmod(ro, 0555);
        pid_t pid = fork();
        if (pid == 0) {
            if (geteuid() == 0 && setuid(65534) != 0) _exit(100);
            _exit((int)sm_model_save(b, path));
        }
        int s;
        waitpid(pid, &s, 0);
        if (WIFEXITED(s) && WEXITSTATUS(s) == 100) printf("read-only directory: cannot drop privileges; skipped\n");
        else { CHECK(WIFEXITED(s) && WEXITSTATUS(s) == SM_ERR_IO); done = 1; printf("read-only directory (chmod 0555): save refused\n"); }
        chmod(ro, 0755);
    }
    if (done) CHECK(file_fingerprint(path) == fp);
    sm_gallery_free(g);
    if (mounted) umount(ro);
    unlink(path);
    unlink(gpath);
    rmdir(ro);
    sm_model_free(a);
    sm_model_free(b);
}

static void test_kill_during_save(void) {
    sm_model *a = big_model(1), *b = big_model(2);
    if (!a || !b) { sm_model_free(a); sm_model_free(b); return; }
    uint32_t fa = sm_model_fingerprint(a), fb = sm_model_fingerprint(b);
    const char *path = P("killed.smm");
    CHECK_OK(sm_model_save(a, path));
    srand(4242);
    int kills = 40, broken = 0, saw_b = 0;
    for (int t = 0; t < kills; t++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (int i = 0;; i++) if (sm_model_save(i % 2 ? a : b, path)) _exit(3);
        }
        struct timespec ts = {0, (long)(rand() % 8000) * 1000}; /* 0-8 ms */
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int s;
        waitpid(pid, &s, 0);
        if (!WIFSIGNALED(s)) broken++;
        uint32_t fp = file_fingerprint(path);
        if (fp != fa && fp != fb) { broken++; fprintf(stderr, "kill %d: %s\n", t, sm_errmsg()); }
        saw_b += fp == fb;
    }
    CHECK_MSG(broken == 0, "%d of %d kills left a broken model file", broken, kills);
    printf("kill during model saves: %d SIGKILLs, the file was a whole model every time (%d times the "
           "newer one)\n", kills, saw_b);
    remove_tmp_files(); /* a killed writer leaves its <path>.tmp.<pid>; the target is never partial */
    sm_model_free(a);
    sm_model_free(b);
}

static void cleanup(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/simile_faults_XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    sm_set_num_threads(1);
    make_data();
    test_alloc_train_save_load();
    test_alloc_loaders();
    test_limits();
    test_numeric();
    test_full_disk();
    test_readonly_dir();
    test_kill_during_save();
    cleanup();
    TEST_MAIN_END();
}
