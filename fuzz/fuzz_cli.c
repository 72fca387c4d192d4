/* fuzz_cli.c - libFuzzer target for the command line: option values of every command but
 * `compare` (whose work is a whole experiment).  Input: newline-separated arguments; the first
 * is the command (argv[1]).  Each run starts in a fresh copy of a scratch folder holding tiny
 * inputs made with the library (data/ with 8x8 IDX files, m.smm, ms.smm (softmax), g.smg, e.npy,
 * l.npy, img.pgm, f/<class>/<image>.pgm, spec.txt), so that commands run to the end quickly.
 * Bounds: arguments containing '/' are refused (every path stays inside the scratch folder),
 * and at link time (-Wl,--wrap) sm_train runs at most 1 epoch of batches of at most 16 on
 * models of at most 2^20 parameters and sm_set_num_threads always sets 1 thread. */
#include "fuzz_common.h"
#include <ftw.h>
#include <getopt.h>
#include <stdarg.h>

int simile_main(int argc, char **argv); /* cli/main.c compiled with -Dmain=simile_main */
int cmd_compare(int argc, char **argv) { (void)argc; (void)argv; return 2; }

/* ---- link-time wrappers bounding the work ------------------------------------------------- */
sm_status __real_sm_train(sm_model *m, sm_loss *loss, const sm_dataset *ds, const sm_train_config *cfg);
sm_status __wrap_sm_train(sm_model *m, sm_loss *loss, const sm_dataset *ds, const sm_train_config *cfg) {
    if (!cfg || !m) return __real_sm_train(m, loss, ds, cfg);
    if (sm_model_num_params(m) > (1 << 20)) return SM_ERR_NOMEM;
    sm_train_config c = *cfg;
    if (c.epochs > 1) c.epochs = 1;
    if (c.batch_size > 16) c.batch_size = 16;
    if (c.per_class > c.batch_size) c.per_class = c.batch_size;
    return __real_sm_train(m, loss, ds, &c);
}
void __real_sm_set_num_threads(int n);
void __wrap_sm_set_num_threads(int n) { (void)n; __real_sm_set_num_threads(1); }
/* embedding with a big model or many inputs is slow, not interesting */
sm_status __real_sm_model_embed(sm_model *m, const float *x, int64_t n, float *emb);
sm_status __wrap_sm_model_embed(sm_model *m, const float *x, int64_t n, float *emb) {
    if (m && sm_model_num_params(m) > (1 << 20)) return SM_ERR_NOMEM;
    return __real_sm_model_embed(m, x, n, emb);
}

/* ---- the scratch folder ------------------------------------------------------------------- */
static char pristine[300], work[300], home[4096];

static int rm_fn(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}
static int cp_fn(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)ftw;
    char dst[1024];
    snprintf(dst, sizeof dst, "%s%s", work, p + strlen(pristine));
    if (flag == FTW_D) return mkdir(dst, 0700) && strcmp(p, pristine) ? -1 : 0;
    FILE *in = fopen(p, "rb"), *out = fopen(dst, "wb");
    if (!in || !out) abort();
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, k, out);
    fclose(in); fclose(out);
    (void)sb;
    return 0;
}

static void put_be32(unsigned char *b, uint32_t v) { b[0] = v >> 24; b[1] = v >> 16; b[2] = v >> 8; b[3] = v; }

static void make_file(const char *name, const void *data, size_t len) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", pristine, name);
    fz_write(p, data, len);
}
#define CHECKED(expr) do { if ((expr) != SM_OK) { fprintf(stderr, "fuzz_cli setup: %s: %s\n", #expr, sm_errmsg()); abort(); } } while (0)

/* Tiny inputs for every command, written with the library itself. */
static void make_pristine(void) {
    enum { N = 16, H = 8, W = 8 };
    unsigned char img[16 + N * H * W], lab[8 + N];
    put_be32(img, 0x803); put_be32(img + 4, N); put_be32(img + 8, H); put_be32(img + 12, W);
    put_be32(lab, 0x801); put_be32(lab + 4, N);
    float x[N * H * W];
    int32_t y[N];
    for (int i = 0; i < N * H * W; i++) { img[16 + i] = (unsigned char)((i * 37 + i / 64 * 11) & 255); x[i] = img[16 + i] / 255.0f; }
    for (int i = 0; i < N; i++) { lab[8 + i] = (unsigned char)(i % 4); y[i] = i % 4; }
    char p[600];
    snprintf(p, sizeof p, "%s/data", pristine);
    mkdir(p, 0700);
    make_file("data/train-images-idx3-ubyte", img, sizeof img);
    make_file("data/train-labels-idx1-ubyte", lab, sizeof lab);
    make_file("data/t10k-images-idx3-ubyte", img, sizeof img);
    make_file("data/t10k-labels-idx1-ubyte", lab, sizeof lab);
    const char *spec = "conv 4 k=3 p=1; bn; relu; maxpool k=2; gap; fc 8; l2norm";
    make_file("spec.txt", spec, strlen(spec));
    /* images: a PGM file and a folder of two classes */
    char pgm[64 + H * W];
    int hl = snprintf(pgm, 64, "P5\n%d %d\n255\n", W, H);
    memcpy(pgm + hl, img + 16, H * W);
    make_file("img.pgm", pgm, (size_t)hl + H * W);
    snprintf(p, sizeof p, "%s/f", pristine); mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/f/a", pristine); mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/f/b", pristine); mkdir(p, 0700);
    make_file("f/a/1.pgm", pgm, (size_t)hl + H * W);
    make_file("f/a/2.pgm", pgm, (size_t)hl + H * W);
    make_file("f/b/1.pgm", pgm, (size_t)hl + H * W);
    /* models: untrained embedder and a softmax-trained one */
    sm_model *m, *ms;
    sm_dataset *ds;
    sm_loss *loss;
    CHECKED(sm_dataset_from_arrays(&ds, x, y, N, H, W, 1));
    CHECKED(sm_model_create(&m, spec, H, W, 1, 1));
    CHECKED(sm_model_create(&ms, spec, H, W, 1, 2));
    CHECKED(sm_loss_create(&loss, "softmax", "classes=4", 8, 3));
    sm_train_config cfg;
    sm_train_config_default(&cfg);
    cfg.epochs = 1; cfg.batch_size = 8;
    CHECKED(sm_train(ms, loss, ds, &cfg));
    snprintf(p, sizeof p, "%s/m.smm", pristine); CHECKED(sm_model_save(m, p));
    snprintf(p, sizeof p, "%s/ms.smm", pristine); CHECKED(sm_model_save(ms, p));
    /* embeddings, labels and a gallery */
    float e[N * 8];
    CHECKED(sm_model_embed(m, x, N, e));
    int64_t es[2] = {N, 8}, ls[1] = {N};
    snprintf(p, sizeof p, "%s/e.npy", pristine); CHECKED(sm_npy_write(p, SM_NPY_F32, e, es, 2));
    snprintf(p, sizeof p, "%s/l.npy", pristine); CHECKED(sm_npy_write(p, SM_NPY_I32, y, ls, 1));
    sm_gallery *g;
    CHECKED(sm_gallery_create(&g, 8, SM_METRIC_COSINE, sm_model_fingerprint(m)));
    CHECKED(sm_gallery_add(g, e, 4, 8, "0", NULL, NULL));
    CHECKED(sm_gallery_add(g, e + 32, 4, 8, "1", NULL, NULL));
    snprintf(p, sizeof p, "%s/g.smg", pristine); CHECKED(sm_gallery_save(g, p));
    sm_gallery_free(g);
    sm_loss_free(loss);
    sm_model_free(m); sm_model_free(ms);
    sm_dataset_free(ds);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    const char *base = fz_scratch();
    snprintf(pristine, sizeof pristine, "%s/pristine", base);
    snprintf(work, sizeof work, "%s/work", base);
    mkdir(pristine, 0700);
    make_pristine();
    if (!getcwd(home, sizeof home)) abort(); /* libFuzzer's corpus paths may be relative */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    enum { MAXARGS = 48 };
    if (size > 4096) return 0;
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = 0;
    if (memchr(buf, '/', size)) { free(buf); return 0; }
    char *argv[MAXARGS + 2];
    int argc = 0;
    argv[argc++] = "simile";
    for (char *p = buf; argc < MAXARGS + 1;) {
        char *nl = strchr(p, '\n');
        argv[argc++] = p;
        if (!nl) break;
        *nl = 0;
        p = nl + 1;
    }
    argv[argc] = NULL;
    if (argc < 2 || !strcmp(argv[1], "compare")) { free(buf); return 0; }
    /* fresh copy of the scratch folder, and a full reset of getopt's state */
    nftw(work, rm_fn, 16, FTW_DEPTH | FTW_PHYS);
    if (nftw(pristine, cp_fn, 16, FTW_PHYS)) abort();
    if (chdir(work)) abort();
    char *dummy[] = {"x", NULL};
    optind = 0;
    static const struct option none[] = {{0, 0, 0, 0}};
    getopt_long(1, dummy, "", none, NULL);
    opterr = 0;
    int is_verify = !strcmp(argv[1], "verify");
    int rc = simile_main(argc, argv);
    if (chdir(home)) abort();
    FZ_ASSERT((rc >= 0 && rc <= 4) || (is_verify && rc == 10)); /* verify: 10 = "different" */
    free(buf);
    return 0;
}
