/* make_corpus.c - writes the seed corpora of the fuzz targets, made with simile's own writers:
 * make_corpus DIR creates DIR/<target>/<seed> for idx, npy, model, gallery, spec, image, cli, checkpoint and onnx.
 * Seeds are small valid inputs (plus a few near-misses) in each target's input layout. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "simile.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "ckpt_setup.h"
#include <stb/stb_image_write.h> /* the writers of Debian's libstb (not instrumented) */

static char root[512];

static void die(const char *what) { fprintf(stderr, "make_corpus: %s: %s\n", what, sm_errmsg()); exit(1); }
#define OK(expr) do { if ((expr) != SM_OK) die(#expr); } while (0)

static unsigned char *slurp(const char *p, size_t *len) {
    FILE *f = fopen(p, "rb");
    if (!f) die(p);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) die(p);
    fclose(f);
    *len = (size_t)n;
    return b;
}
/* Write a seed: prefix bytes then the body. */
static void seed(const char *target, const char *name, const void *pre, size_t npre, const void *body, size_t n) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", root, target);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/%s/%s", root, target, name);
    FILE *f = fopen(p, "wb");
    if (!f) die(p);
    if (npre) fwrite(pre, 1, npre, f);
    if (n) fwrite(body, 1, n, f);
    fclose(f);
}
/* A file written by the library at a scratch path, as a seed (model and gallery files without
 * their trailing CRC-32: the harness appends it). */
static void seed_file(const char *target, const char *name, const void *pre, size_t npre, const char *path) {
    size_t n;
    unsigned char *b = slurp(path, &n);
    if ((!strcmp(target, "model") || !strcmp(target, "gallery") || !strcmp(target, "checkpoint")) && n >= 4) n -= 4;
    seed(target, name, pre, npre, b, n);
    free(b);
    unlink(path);
}
static const char *tmp(const char *name) {
    static char p[1024];
    snprintf(p, sizeof p, "%s/.tmp_%s", root, name);
    return p;
}
static void be32(unsigned char *b, uint32_t v) { b[0] = v >> 24; b[1] = v >> 16; b[2] = v >> 8; b[3] = v; }

static size_t gz_bytes(const unsigned char *in, size_t n, unsigned char *out, size_t cap) {
    z_stream z;
    memset(&z, 0, sizeof z);
    deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
    z.next_in = (unsigned char *)in; z.avail_in = (uInt)n;
    z.next_out = out; z.avail_out = (uInt)cap;
    deflate(&z, Z_FINISH);
    size_t k = z.total_out;
    deflateEnd(&z);
    return k;
}

static void idx_seeds(void) {
    enum { N = 6, H = 4, W = 5 };
    unsigned char buf[3 + 16 + N * H * W + 8 + N];
    unsigned char *img = buf + 3, *lab = img + 16 + N * H * W;
    be32(img, 0x803); be32(img + 4, N); be32(img + 8, H); be32(img + 12, W);
    for (int i = 0; i < N * H * W; i++) img[16 + i] = (unsigned char)(i * 13);
    be32(lab, 0x801); be32(lab + 4, N);
    for (int i = 0; i < N; i++) lab[8 + i] = (unsigned char)(i % 3);
    size_t ni = 16 + N * H * W, nl = 8 + N;
    for (int mode = 0; mode < 4; mode++) {
        buf[0] = (unsigned char)mode; buf[1] = (unsigned char)ni; buf[2] = (unsigned char)(ni >> 8);
        char name[32];
        snprintf(name, sizeof name, "plain_mode%d", mode);
        seed("idx", name, NULL, 0, buf, sizeof buf);
    }
    /* gzip streams as file contents */
    unsigned char gi[1024], gl[256], out[2048];
    size_t a = gz_bytes(img, ni, gi, sizeof gi), b = gz_bytes(lab, nl, gl, sizeof gl);
    out[0] = 0; out[1] = (unsigned char)a; out[2] = (unsigned char)(a >> 8);
    memcpy(out + 3, gi, a); memcpy(out + 3 + a, gl, b);
    seed("idx", "gz_streams", NULL, 0, out, 3 + a + b);
    /* a header claiming 2^31 - 1 images, one label */
    unsigned char big[3 + 16 + 8 + 1] = {0, 16, 0};
    be32(big + 3, 0x803); be32(big + 7, 0x7fffffff); be32(big + 11, 1); be32(big + 15, 1);
    be32(big + 19, 0x801); be32(big + 23, 1); big[27] = 0;
    seed("idx", "huge_header", NULL, 0, big, sizeof big);
}

static void npy_seeds(void) {
    float x[6] = {0.5f, -1, 2, 3, 4.25f, 1e-3f};
    int32_t y[5] = {0, 7, -1, 100000, 3};
    int64_t s2[2] = {2, 3}, s1[1] = {5}, s4[4] = {1, 2, 3, 1}, s0[2] = {0, 4};
    OK(sm_npy_write(tmp("a"), SM_NPY_F32, x, s2, 2)); seed_file("npy", "f32_2d", NULL, 0, tmp("a"));
    OK(sm_npy_write(tmp("a"), SM_NPY_I32, y, s1, 1)); seed_file("npy", "i32_1d", NULL, 0, tmp("a"));
    OK(sm_npy_write(tmp("a"), SM_NPY_F32, x, s4, 4)); seed_file("npy", "f32_4d", NULL, 0, tmp("a"));
    OK(sm_npy_write(tmp("a"), SM_NPY_F32, x, s0, 2)); seed_file("npy", "empty", NULL, 0, tmp("a"));
    /* float64 and int64 with a version 2.0 header, written by hand as NumPy does */
    const char *d8 = "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }";
    unsigned char b[256] = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0};
    size_t hl = strlen(d8);
    b[8] = (unsigned char)hl; b[9] = b[10] = b[11] = 0;
    memcpy(b + 12, d8, hl);
    double dv[3] = {1.5, -2, 1e10};
    memcpy(b + 12 + hl, dv, sizeof dv);
    seed("npy", "f8_v2", NULL, 0, b, 12 + hl + sizeof dv);
    const char *i8 = "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 1), }";
    unsigned char c[256] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    hl = strlen(i8);
    c[8] = (unsigned char)hl; c[9] = 0;
    memcpy(c + 10, i8, hl);
    int64_t iv[2] = {3, -5};
    memcpy(c + 10 + hl, iv, sizeof iv);
    seed("npy", "i8_v1", NULL, 0, c, 10 + hl + sizeof iv);
}

static void model_seeds(void) {
    const char *specs[] = {"fc 4", "conv 2 k=3 p=1; bn; relu; maxpool k=2; gap; fc 3; l2norm",
                           "conv 2 k=2 s=2 bias=0; relu; gap; fc 2 bias=0", "fc 3; bn eps=0.001 momentum=0.5; relu; fc 2; l2norm"};
    for (int i = 0; i < 4; i++) {
        sm_model *m;
        OK(sm_model_create(&m, specs[i], 4, 4, 1, (uint64_t)i + 1));
        char name[32];
        snprintf(name, sizeof name, "model%d", i);
        OK(sm_model_save(m, tmp("m"))); seed_file("model", name, NULL, 0, tmp("m"));
        sm_model_free(m);
    }
    /* a softmax-trained model: a classifier head in the file */
    float x[8 * 16];
    int32_t y[8];
    for (int i = 0; i < 8 * 16; i++) x[i] = (float)((i * 7) % 11) / 11.0f;
    for (int i = 0; i < 8; i++) y[i] = i % 2;
    sm_dataset *ds; sm_model *m; sm_loss *loss;
    OK(sm_dataset_from_arrays(&ds, x, y, 8, 4, 4, 1));
    OK(sm_model_create(&m, "fc 3; relu; fc 2", 4, 4, 1, 5));
    OK(sm_loss_create(&loss, "softmax", "classes=2", 2, 1));
    sm_train_config c;
    sm_train_config_default(&c);
    c.epochs = 1; c.batch_size = 4;
    OK(sm_train(m, loss, ds, &c));
    OK(sm_model_save(m, tmp("m"))); seed_file("model", "softmax_head", NULL, 0, tmp("m"));
    sm_loss_free(loss); sm_model_free(m);
    OK(sm_model_create(&m, "fc 3; l2norm", 4, 4, 1, 5));
    OK(sm_loss_create(&loss, "arcface", "classes=2", 3, 1));
    OK(sm_train(m, loss, ds, &c));
    OK(sm_model_save(m, tmp("m"))); seed_file("model", "arcface_head", NULL, 0, tmp("m"));
    sm_loss_free(loss); sm_model_free(m);
    sm_dataset_free(ds);
}

static void gallery_seeds(void) {
    sm_gallery *g;
    OK(sm_gallery_create(&g, 3, SM_METRIC_L2, 0));
    OK(sm_gallery_save(g, tmp("g"))); seed_file("gallery", "empty", NULL, 0, tmp("g"));
    float e[12] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 0.5f, 0.5f, 0};
    OK(sm_gallery_add(g, e, 2, 3, "alice", NULL, NULL));
    OK(sm_gallery_add(g, e + 6, 2, 3, "bob", NULL, NULL));
    OK(sm_gallery_save(g, tmp("g"))); seed_file("gallery", "two_classes", NULL, 0, tmp("g"));
    OK(sm_gallery_set_threshold(g, 0.75f, SM_RULE_CENTROID));
    OK(sm_gallery_remove_item(g, 0));
    int64_t ids[1] = {77};
    OK(sm_gallery_add(g, e, 1, 3, "carol", ids, NULL));
    OK(sm_gallery_remove_class(g, "bob", NULL));
    OK(sm_gallery_save(g, tmp("g"))); seed_file("gallery", "tombstones", NULL, 0, tmp("g"));
    sm_gallery_free(g);
    OK(sm_gallery_create(&g, 2, SM_METRIC_COSINE, 0xdeadbeefu));
    float f[4] = {1, 2, 3, 4};
    OK(sm_gallery_add(g, f, 2, 2, "x", NULL, NULL));
    OK(sm_gallery_save(g, tmp("g"))); seed_file("gallery", "cosine", NULL, 0, tmp("g"));
    sm_gallery_free(g);
}

/* ONNX files written by simile's exporter (batch norm folded and kept) from small models with
 * every kind it maps; nothing when built without ONNX support. */
static void onnx_seeds(void) {
    if (!sm_onnx_available()) return;
    const char *specs[] = {"conv 2 k=3 p=1 bias=0; bn; relu; maxpool k=2; gap; fc 3; l2norm",
                           "conv 3 k=3 s=2 p=1; relu; avgpool k=2; fc 4 bias=0; bn; relu; fc 2",
                           "fc 4; bn; relu; fc 3; l2norm"};
    for (int i = 0; i < 3; i++)
        for (int keep = 0; keep < 2; keep++) {
            sm_model *m;
            OK(sm_model_create(&m, specs[i], i == 2 ? 1 : 8, i == 2 ? 1 : 8, i == 2 ? 6 : 1, (uint64_t)(7 + i)));
            sm_onnx_export_options eo = {.keep_bn = keep};
            OK(sm_model_export_onnx(m, tmp("o"), &eo));
            char name[32];
            snprintf(name, sizeof name, "export%d_%s", i, keep ? "bn" : "folded");
            seed_file("onnx", name, NULL, 0, tmp("o"));
            sm_model_free(m);
        }
}

static void spec_seeds(void) {
    const char *texts[] = {"cnn-s", "cnn-m", "mlp", "fc 4",
                           "conv 4 k=3 s=1 p=1 bias=0 ; bn ; relu ; maxpool k=2 ; gap ; fc 8 ; l2norm",
                           "# a comment; with a semicolon\nconv 2 k=5 p=2\nbn eps=1e-3 momentum=0.2\nrelu\nmaxpool k=3 s=2\ngap\nfc 3 bias=1\n",
                           "conv 3 k=2 s=2; relu; conv 3 k=1; gap; fc 2 bias=0; l2norm",
                           "conv 4 k=3 p=1 bias=0; bn; relu; maxpool k=3 s=2 p=1\n"
                           "res; conv 4 k=3 p=1 bias=0; bn; relu; conv 4 k=3 p=1 bias=0; bn; end; relu\n"
                           "res; conv 8 k=3 s=2 p=1 bias=0; bn; shortcut; conv 8 k=1 s=2 bias=0; bn; end\n"
                           "dropout p=0.2; gem p=3; fc 4; l2norm"};
    unsigned char shape[3] = {27, 27, 0};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "spec%zu", i);
        shape[2] = (unsigned char)(i % 3);
        shape[0] = shape[1] = (unsigned char)(i < 3 ? 27 : 7 + i);
        seed("spec", name, shape, 3, texts[i], strlen(texts[i]));
    }
}

static void image_seeds(void) {
    enum { W = 7, H = 5 };
    unsigned char px[W * H * 3];
    for (int i = 0; i < W * H * 3; i++) px[i] = (unsigned char)(i * 29);
    unsigned char grey = 0x25, rgb = 0x25 | 0x80;
    struct { const char *name; int comp; } kinds[] = {{"grey", 1}, {"rgb", 3}};
    for (int k = 0; k < 2; k++) {
        char name[64];
        int comp = kinds[k].comp;
        unsigned char pre = comp == 3 ? rgb : grey;
        snprintf(name, sizeof name, "png_%s", kinds[k].name);
        if (!stbi_write_png(tmp("i"), W, H, comp, px, W * comp)) die("png");
        seed_file("image", name, &pre, 1, tmp("i"));
        snprintf(name, sizeof name, "bmp_%s", kinds[k].name);
        if (!stbi_write_bmp(tmp("i"), W, H, comp, px)) die("bmp");
        seed_file("image", name, &pre, 1, tmp("i"));
        snprintf(name, sizeof name, "jpg_%s", kinds[k].name);
        if (!stbi_write_jpg(tmp("i"), W, H, comp, px, 80)) die("jpg");
        seed_file("image", name, &pre, 1, tmp("i"));
        /* PGM (P5) / PPM (P6) */
        char hdr[32];
        int hl = snprintf(hdr, sizeof hdr, "P%d\n%d %d\n255\n", comp == 3 ? 6 : 5, W, H);
        unsigned char b[32 + W * H * 3];
        memcpy(b, hdr, (size_t)hl);
        memcpy(b + hl, px, (size_t)(W * H * comp));
        snprintf(name, sizeof name, "pnm_%s", kinds[k].name);
        seed("image", name, &pre, 1, b, (size_t)hl + W * H * comp);
    }
}

static void cli_seeds(void) {
    const char *lines[] = {
        "train\n--model\nfc 8; l2norm\n--loss\ncontrastive\n--epochs\n1\n--batch\n8\n--per-class\n4\n--out\nx.smm\n--quiet",
        "train\n--model\n@spec.txt\n--loss\nsoftmax\n--lr\n0.01\n--optimizer\nsgd\n--momentum\n0.5\n--schedule\nstep\n--step-epochs\n1\n--step-gamma\n0.5\n--aug-shift\n1\n--aug-flip\n--seed\n3\n--threads\n1\n--out\ny.smm",
        "train\n--split\ntest\n--classes\n0-2\n--mean\n0.5\n--std\n0.25\n--model\nmlp\n--loss\ntriplet\n--loss-opts\nmargin=0.2,miner=semihard\n--quiet",
        "eval\n--model\nms.smm\n--task\nboth\n--no-normalize",
        "eval\n--model\nm.smm\n--images\ndata\n--labels\ndata",
        "info\nms.smm",
        "losses",
        "embed\n--model\nm.smm\n--split\ntest\n--out\nz.npy\n--labels-out\nzl.npy",
        "embed\n--model\nm.smm\n--folder\nf\n--out\nz.npy",
        "gallery\ncreate\n--out\nn.smg\n--model\nm.smm",
        "gallery\ncreate\n--out\nn.smg\n--dim\n8\n--metric\nl2",
        "gallery\nenrol\n--gallery\ng.smg\n--model\nm.smm\n--split\ntrain\n--classes\n0-2\n--first-per-class\n2",
        "gallery\nenrol\n--gallery\ng.smg\n--npy\ne.npy\n--npy-labels\nl.npy\n--skip-per-class\n1\n--class\nq",
        "gallery\nenrol\n--gallery\ng.smg\n--model\nm.smm\n--class\n0\nimg.pgm",
        "gallery\nlist\n--gallery\ng.smg\n--items",
        "gallery\nremove\n--gallery\ng.smg\n--item\n0",
        "gallery\nremove\n--gallery\ng.smg\n--class\n1",
        "gallery\ncompact\n--gallery\ng.smg",
        "gallery\ncalibrate\n--gallery\ng.smg\n--model\nm.smm\n--split\ntrain\n--far\n0.05\n--dry-run",
        "gallery\ncalibrate\n--gallery\ng.smg\n--npy\ne.npy\n--npy-labels\nl.npy\n--f1",
        "identify\n--gallery\ng.smg\n--model\nm.smm\n--split\ntest\n--rule\nvote\n--k\n3\n--top\n2\n--show\n2",
        "identify\n--gallery\ng.smg\n--npy\ne.npy\n--npy-labels\nl.npy\n--rule\ncentroid",
        "identify\n--gallery\ng.smg\n--model\nm.smm\nimg.pgm",
        "verify\n--model\nm.smm\n--threshold\n0.3\nimg.pgm\nimg.pgm",
        "verify\n--model\nm.smm\n--gallery\ng.smg\n--class\n0\nimg.pgm",
        "classify\n--model\nms.smm\n--split\ntest\n--top\n2",
        "classify\n--model\nms.smm\nimg.pgm",
        "train\n--help",
        /* --json documents, --skip-bad, verify without a threshold */
        "identify\n--gallery\ng.smg\n--model\nm.smm\n--json\nimg.pgm",
        "verify\n--model\nm.smm\n--json\nimg.pgm\nimg.pgm",
        "verify\n--model\nm.smm\n--threshold\n-1\nimg.pgm\nimg.pgm",
        "gallery\nlist\n--gallery\ng.smg\n--items\n--json",
        "gallery\ncalibrate\n--gallery\ng.smg\n--npy\ne.npy\n--npy-labels\nl.npy\n--json\n--dry-run",
        "classify\n--model\nms.smm\n--folder\nf\n--json",
        "eval\n--model\nm.smm\n--split\ntest\n--json\n-",
        "gallery\nenrol\n--gallery\ng.smg\n--model\nm.smm\n--folder\nf\n--skip-bad",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "cmd%02zu", i);
        seed("cli", name, NULL, 0, lines[i], strlen(lines[i]));
    }
}

/* simile serve requests: byte 0 = method (low 3 bits: GET POST PATCH DELETE PUT), key (next
 * 2 bits: none, write, read, wrong) and bit 5 for a form body, then the path, '\n', the body
 * (fuzz_serve.c) */
static void serve_seeds(void) {
    static const char png8[] = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAAAAADhZOFXAAAAU0lEQVR4nAFIALf/AAAECAwQFBgcACAkKCwwNDg8AEBESExQVFhcAGBkaGxwdHh8AICEiIyQlJicAKCkqKywtLi8AMDEyMzQ1NjcAODk6Ozw9Pj87yYfgYolgTcAAAAASUVORK5CYII=";
    char pngreq[512];
    snprintf(pngreq, sizeof pngreq, "{\"image\": \"%s\", \"k\": 2}", png8);
    struct { unsigned char b0; const char *path, *body; } reqs[] = {
        {0x00, "/api/v1/health", NULL},
        {0x08, "/api/v1/subjects", NULL},
        {0x10, "/api/v1/items", NULL},
        {0x08, "/api/v1/subjects/a", NULL},
        {0x08, "/api/v1/subjects/b%20c/items", NULL},
        {0x09, "/api/v1/subjects/new/items", "{\"embeddings\": [[1,2,3,4,5,6,7,8]], \"sources\": [\"x\"]}"},
        {0x09, "/api/v1/subjects/img/items", NULL},
        {0x0a, "/api/v1/subjects/a", "{\"name\": \"z\"}"},
        {0x0b, "/api/v1/subjects/a", NULL},
        {0x0b, "/api/v1/items/1", NULL},
        {0x11, "/api/v1/identify", "{\"embedding\": [1,0,0,0,0,0,0,0], \"k\": 3, \"threshold\": 0.5, \"rule\": \"vote\"}"},
        {0x11, "/api/v1/identify", NULL},
        {0x11, "/api/v1/verify", "{\"a\": {\"embedding\": [1,0,0,0,0,0,0,0]}, \"subject\": \"a\", \"rule\": \"centroid\"}"},
        {0x11, "/api/v1/verify", "{\"a\": {\"embedding\": [1,0,0,0,0,0,0,0]}, \"b\": {\"embedding\": [0,1,0,0,0,0,0,0]}, \"threshold\": 1}"},
        {0x10, "/api/v1/metrics", NULL},
        {0x19, "/api/v1/subjects/a/items", "{\"images\": [\"@@\"]}"},
        {0x09, "/api/v1/calibrate", "{\"embeddings\": [[1,0,0,0,0,0,0,0], [0,0,0,0,0,0,0,1]], \"labels\": [\"a\", \"b c\"], \"far\": 0.5}"},
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        char buf[1024], name[32];
        const char *body = reqs[i].body ? reqs[i].body : (strstr(reqs[i].path, "img") || strstr(reqs[i].path, "identify")) ? pngreq : "";
        int n = snprintf(buf, sizeof buf, "%c%s\n%s", reqs[i].b0, reqs[i].path, body);
        snprintf(name, sizeof name, "req%02zu", i);
        seed("serve", name, NULL, 0, buf, (size_t)n);
    }
    /* multipart forms (parts "NAME\nDATA" or "NAME:FILE\nDATA", separated by "\n--\n"), with an
     * 8x8 PGM image file */
    unsigned char pgm[15 + 64];
    memcpy(pgm, "P5\n8 8\n255\n", 12);
    for (int i = 0; i < 64; i++) pgm[12 + i] = (unsigned char)(i * 4);
    const size_t npgm = 12 + 64;
    struct { unsigned char b0; const char *path, *pre, *post; } forms[] = {
        {0x29, "/api/v1/subjects/f/items", "image:a.pgm\n", "\n--\nimage:b.pgm\nP5\n8 8\n255\n\n--\nsource\ns1\n--\nsource\ns2"},
        {0x31, "/api/v1/identify", "image:q.pgm\n", "\n--\nk\n3\n--\nthreshold\n0.5\n--\nrule\nvote"},
        {0x31, "/api/v1/verify", "a:q.pgm\n", "\n--\nsubject\na\n--\nthreshold\n1"},
        {0x31, "/api/v1/verify", "a:q.pgm\n", "\n--\nb:r.pgm\nP5 8 8 255"},
        {0x29, "/api/v1/calibrate", "images:q.pgm\n", "\n--\nlabel\na\n--\nfar\n0.5\n--\ndry_run\ntrue\n--\nf1\nfalse"},
        {0x31, "/api/v1/identify", "embedding\n[1,0,0,0,0,0,0,0]", "\n--\nk\n1"},
        {0x2a, "/api/v1/subjects/a", "name\nz", ""},
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        char buf[2048], name[32];
        int n = snprintf(buf, sizeof buf, "%c%s\n%s", forms[i].b0, forms[i].path, forms[i].pre);
        if (strchr(forms[i].pre, ':')) { memcpy(buf + n, pgm, npgm); n += (int)npgm; }
        n += snprintf(buf + n, sizeof buf - (size_t)n, "%s", forms[i].post);
        snprintf(name, sizeof name, "form%02zu", i);
        seed("serve", name, NULL, 0, buf, (size_t)n);
    }
    /* raw HTTP through the libmicrohttpd daemon (bit 6): multipart and JSON requests */
    struct { const char *path, *ctype, *pre, *post; int file; } raw[] = {
        {"/api/v1/subjects/m/items", "multipart/form-data; boundary=XyZ",
         "--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.pgm\"\r\nContent-Type: image/x-portable-graymap\r\n\r\n",
         "\r\n--XyZ\r\nContent-Disposition: form-data; name=\"source\"\r\n\r\ncam 1\r\n--XyZ--\r\n", 1},
        {"/api/v1/identify", "multipart/form-data; boundary=XyZ",
         "--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.pgm\"\r\n\r\n",
         "\r\n--XyZ\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\n2\r\n--XyZ--\r\n", 1},
        {"/api/v1/verify", "multipart/form-data; boundary=b",
         "--b\r\nContent-Disposition: form-data; name=\"a\"; filename=\"a.pgm\"\r\n\r\n",
         "\r\n--b\r\nContent-Disposition: form-data; name=\"subject\"\r\n\r\na\r\n--b--\r\n", 1},
        {"/api/v1/identify", "application/json", "{\"embedding\": [1,0,0,0,0,0,0,0], \"k\": 2}", "", 0},
    };
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
        char body[1024], buf[2048], name[32];
        int bn = snprintf(body, sizeof body, "%s", raw[i].pre);
        if (raw[i].file) { memcpy(body + bn, pgm, npgm); bn += (int)npgm; }
        bn += snprintf(body + bn, sizeof body - (size_t)bn, "%s", raw[i].post);
        int n = snprintf(buf, sizeof buf, "%cPOST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer w\r\n"
                         "Content-Type: %s\r\nContent-Length: %d\r\n\r\n", 0x40, raw[i].path, raw[i].ctype, bn);
        memcpy(buf + n, body, (size_t)bn);
        n += bn;
        snprintf(name, sizeof name, "http%02zu", i);
        seed("serve", name, NULL, 0, buf, (size_t)n);
    }
    const char get[] = "@GET /api/v1/items HTTP/1.1\r\nHost: x\r\nX-API-Key: r\r\n\r\n";
    seed("serve", "http04", NULL, 0, get, sizeof get - 1);
}

/* checkpoints of ckpt_setup.h's training: before the first step, mid-epoch, at an epoch's end
 * (with a best epoch) and at the end */
static void checkpoint_seeds(void) {
    fz_training f;
    if (fz_training_create(&f)) die("checkpoint training");
    sm_train_step_info s = {0};
    OK(sm_trainer_save_checkpoint(f.t, tmp("c"))); seed_file("checkpoint", "start", NULL, 0, tmp("c"));
    for (int k = 0; k < 3; k++) OK(sm_trainer_step(f.t, &s));
    OK(sm_trainer_save_checkpoint(f.t, tmp("c"))); seed_file("checkpoint", "mid_epoch", NULL, 0, tmp("c"));
    while (!s.epoch_done) OK(sm_trainer_step(f.t, &s));
    OK(sm_trainer_save_checkpoint(f.t, tmp("c"))); seed_file("checkpoint", "epoch_end", NULL, 0, tmp("c"));
    while (!s.done) OK(sm_trainer_step(f.t, &s));
    OK(sm_trainer_save_checkpoint(f.t, tmp("c"))); seed_file("checkpoint", "done", NULL, 0, tmp("c"));
    fz_training_free(&f);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: make_corpus DIR\n"); return 2; }
    snprintf(root, sizeof root, "%s", argv[1]);
    mkdir(root, 0755);
    sm_set_num_threads(1);
    idx_seeds();
    npy_seeds();
    model_seeds();
    gallery_seeds();
    spec_seeds();
    onnx_seeds();
    image_seeds();
    cli_seeds();
    serve_seeds();
    checkpoint_seeds();
    printf("make_corpus: seeds written under %s\n", root);
    return 0;
}
