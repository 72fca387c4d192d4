/* inputs.c - the inputs of embed / gallery / identify / verify / classify: IDX files with the
 * Fashion-MNIST defaults, a folder of class sub-folders, image files, or a .npy file of
 * embeddings; a per-class selection; embedding with a model (batched and threaded inside
 * sm_model_embed) followed by L2 normalisation. */
#include "cli_gallery.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const char *const cli_inputs_help =
    "inputs (give exactly one source; there is no default):\n"
    "  --images F --labels F   IDX files\n"
    "  --split S [--data DIR]  the Fashion-MNIST-named IDX files of split S (train or test)\n"
    "                    in DIR (default " SM_DEFAULT_DATA_DIR ")\n"
    "  --classes LIST    keep only these classes, e.g. 5-9 (labels keep their values; class\n"
    "                    names are the label numbers)\n"
    "  --folder DIR      a folder with one sub-folder of images per class (PNG, JPEG, PGM,\n"
    "                    PPM, BMP), resized to the model's input; class names = folder names\n"
    "  --image FILE      an image file (repeatable; positional arguments are images too)\n"
    "  --npy FILE        embeddings (n, d) float32 from simile embed; --npy-labels FILE gives\n"
    "                    their int32 labels\n"
    "  --first-per-class M   keep only the first M inputs of each class (file order)\n"
    "  --skip-per-class N    drop the first N inputs of each class (held-out data)\n"
    "  --mean A[,B,C] --std A[,B,C]  image normalisation (x - mean) / std after scaling to [0,1],\n"
    "                    per channel, for every image source; --normalize imagenet|fmnist|none;\n"
    "                    --no-normalize to skip (default: what the model stores, else 0.2860 /\n"
    "                    0.3530)\n"
    "  --skip-bad        leave out (and name on stderr) image files that cannot be read,\n"
    "                    instead of failing (--folder, --image); images whose size is not the\n"
    "                    model's are resized, and a note says how many\n"
    "  --raw             do not L2-normalise the embeddings\n"
    "  --threads N       default: all cores\n";

void cli_inputs_defaults(cli_inputs *in, const char *split) {
    memset(in, 0, sizeof *in);
    cli_data_defaults(&in->data, split);
}

int cli_inputs_option(const char *cmd, cli_inputs *in, int opt, const char *arg) {
    if (opt == 1000 || opt == 1001 || opt == 1002 || opt == 1003) in->data_given = 1;
    int r = cli_data_option(cmd, &in->data, opt, arg);
    if (r) return r;
    switch (opt) {
    case 1100: in->folder = arg; return 1;
    case 1101: in->npy = arg; return 1;
    case 1102: in->npy_labels = arg; return 1;
    case 1103:
        if (in->nimages >= CLI_MAX_IMAGES) { cli_usage_error(cmd, "more than %d images", CLI_MAX_IMAGES); return -1; }
        in->images[in->nimages++] = arg;
        return 1;
    case 1104: return cli_int(cmd, "--first-per-class", arg, 1, 1 << 30, &in->first_per_class) ? -1 : 1;
    case 1105: return cli_int(cmd, "--skip-per-class", arg, 0, 1 << 30, &in->skip_per_class) ? -1 : 1;
    case 1106: in->raw = 1; return 1;
    case 1107: return cli_int(cmd, "--threads", arg, 1, 1024, &in->threads) ? -1 : 1;
    case 1108: in->skip_bad = 1; return 1;
    default: return 0;
    }
}

int cli_inputs_positional(const char *cmd, cli_inputs *in, int argc, char **argv, int first) {
    for (int i = first; i < argc; i++) {
        if (in->nimages >= CLI_MAX_IMAGES) return cli_usage_error(cmd, "more than %d images", CLI_MAX_IMAGES);
        in->images[in->nimages++] = argv[i];
    }
    return 0;
}

int cli_inputs_are_embeddings(const cli_inputs *in) { return in->npy != NULL; }

int cli_inputs_require(const char *cmd, const cli_inputs *in) {
    if (in->folder || in->npy || in->nimages > 0 || in->data_given) return EXIT_OK;
    return cli_usage_error(cmd, "no input given: name the images with --folder DIR, --image FILE (or files as "
                                "arguments), --images F --labels F, or --split S [--data DIR] for Fashion-MNIST-named IDX "
                                "files, or embeddings with --npy FILE");
}

int cli_parse_rule(const char *s, sm_decision_rule *rule) {
    if (!strcmp(s, "nearest") || !strcmp(s, "nn")) *rule = SM_RULE_NEAREST;
    else if (!strcmp(s, "vote") || !strcmp(s, "knn")) *rule = SM_RULE_VOTE;
    else if (!strcmp(s, "centroid")) *rule = SM_RULE_CENTROID;
    else return -1;
    return 0;
}
const char *cli_rule_name(sm_decision_rule r) {
    return r == SM_RULE_VOTE ? "vote" : r == SM_RULE_CENTROID ? "centroid" : "nearest";
}
int cli_load_model(const char *cmd, const char *path, sm_model **m) {
    *m = NULL;
    if (!path) return EXIT_OK;
    sm_status st = sm_model_load(m, path);
    return st ? cli_report(cmd, st, NULL) : EXIT_OK;
}

sm_status cli_gallery_open_checked(const char *path, sm_model *m, sm_gallery **g) {
    sm_status st = sm_gallery_open(g, path);
    if (st) return st;
    if (m && (st = sm_gallery_check_model(*g, sm_model_fingerprint(m)))) {
        cli_fail(st, "%s: %s", path, sm_gallery_errmsg(*g));
        sm_gallery_free(*g);
        *g = NULL;
    }
    return st;
}

sm_status cli_gallery_open_write(const char *path, sm_model *m, sm_gallery **g) {
    sm_status st = sm_gallery_open_journaled(g, path);
    if (st) return st;
    if (m && (st = sm_gallery_check_model(*g, sm_model_fingerprint(m)))) {
        cli_fail(st, "%s: %s", path, sm_gallery_errmsg(*g));
        sm_gallery_free(*g);
        *g = NULL;
    }
    return st;
}

sm_status cli_gallery_commit(sm_gallery *g) {
    if (sm_gallery_journal_records(g) < CLI_CHECKPOINT_RECORDS) return SM_OK;
    sm_status st = sm_gallery_checkpoint(g);
    return st ? cli_fail(st, "%s", sm_gallery_errmsg(g)) : SM_OK;
}

void cli_gallery_warn_changed(const char *cmd, const char *path, const sm_gallery *g) {
    sm_gallery_calibration_info ci;
    sm_gallery_calibration(g, &ci);
    if (!ci.changed) return;
    if (ci.items_at_calibration >= 0)
        fprintf(stderr, "simile %s: warning: %s changed since its threshold was calibrated (on %lld items; %lld now, "
                        "%llu changes since): run simile gallery calibrate again\n", cmd, path,
                (long long)ci.items_at_calibration, (long long)sm_gallery_size(g),
                (unsigned long long)(ci.generation - ci.calibrated_generation));
    else
        fprintf(stderr, "simile %s: warning: %s changed since its threshold was calibrated (items enrolled or removed "
                        "since): run simile gallery calibrate again\n", cmd, path);
}

int cli_parse_metric(const char *s, sm_metric *metric) {
    if (!strcmp(s, "l2")) *metric = SM_METRIC_L2;
    else if (!strcmp(s, "cosine")) *metric = SM_METRIC_COSINE;
    else if (!strcmp(s, "ip")) *metric = SM_METRIC_IP;
    else return -1;
    return 0;
}
const char *cli_metric_name(sm_metric m) {
    return m == SM_METRIC_IP ? "ip" : m == SM_METRIC_COSINE ? "cosine" : "l2";
}

void cli_batch_free(cli_batch *b) {
    free(b->emb);
    sm_dataset_free(b->ds);
    free(b->labels);
    free(b->names);
    free(b->item);
    free(b->item_buf);
    memset(b, 0, sizeof *b);
}

const char *cli_batch_name(const cli_batch *b, int64_t i) {
    if (!b->labels || !b->names) return "";
    int32_t y = b->labels[i];
    return y >= 0 && y < b->nnames ? b->names[y] : "";
}

/* Names "0".."max" for numeric labels, in one block (pointers then strings). */
static char **numeric_names(const int32_t *y, int64_t n, int *count) {
    int32_t mx = -1;
    for (int64_t i = 0; i < n; i++) if (y[i] > mx) mx = y[i];
    int k = mx + 1;
    char **names = malloc((size_t)(k > 0 ? k : 1) * (sizeof(char *) + 12));
    if (!names) return NULL;
    char *s = (char *)(names + k);
    for (int i = 0; i < k; i++) { names[i] = s + (size_t)i * 12; snprintf(names[i], 12, "%d", i); }
    *count = k;
    return names;
}

/* Names of numeric labels: the model's class names where it has them, else "0".."max". */
static char **model_names(const sm_model *m, const int32_t *y, int64_t n, int *count) {
    int nm = m ? sm_model_num_class_names(m) : 0;
    int32_t mx = -1;
    for (int64_t i = 0; i < n; i++) if (y[i] > mx) mx = y[i];
    if (!nm) return numeric_names(y, n, count);
    int k = mx + 1 > nm ? mx + 1 : nm;
    size_t bytes = (size_t)k * (sizeof(char *) + 12);
    for (int i = 0; i < nm; i++) bytes += strlen(sm_model_class_name(m, i)) + 1;
    char **names = malloc(bytes);
    if (!names) return NULL;
    char *s = (char *)(names + k);
    for (int i = 0; i < k; i++) {
        const char *nmi = i < nm ? sm_model_class_name(m, i) : NULL;
        names[i] = s;
        if (nmi) { strcpy(s, nmi); s += strlen(nmi) + 1; }
        else { snprintf(s, 12, "%d", i); s += 12; }
    }
    *count = k;
    return names;
}

/* Keep, for each label, inputs number skip .. skip + first - 1 (first 0 = all) in order.
 * Rewrites b's arrays in place. */
static sm_status select_per_class(const char *cmd, const cli_inputs *in, cli_batch *b) {
    if (!in->first_per_class && !in->skip_per_class) return SM_OK;
    if (!b->labels) return cli_fail(SM_ERR_INVALID, "--first-per-class / --skip-per-class need labelled inputs");
    int32_t mx = -1;
    for (int64_t i = 0; i < b->n; i++) if (b->labels[i] > mx) mx = b->labels[i];
    int64_t *seen = calloc((size_t)mx + 2, sizeof(int64_t));
    int64_t *keep = malloc((size_t)(b->n ? b->n : 1) * sizeof(int64_t));
    if (!seen || !keep) { free(seen); free(keep); return cli_fail(SM_ERR_NOMEM, "out of memory"); }
    int64_t m = 0;
    for (int64_t i = 0; i < b->n; i++) {
        int64_t r = seen[b->labels[i]]++;
        if (r >= in->skip_per_class && (!in->first_per_class || r < (int64_t)in->skip_per_class + in->first_per_class))
            keep[m++] = i;
    }
    for (int32_t c = 0; c <= mx; c++)
        if (seen[c] && seen[c] <= in->skip_per_class) {
            free(seen); free(keep);
            return cli_fail(SM_ERR_RANGE, "class %d has %s inputs, none left after skipping %d",
                            c, "too few", in->skip_per_class);
        }
    free(seen);
    sm_status st = SM_OK;
    if (b->ds) {
        int h, w, c;
        sm_dataset_shape(b->ds, &h, &w, &c);
        int64_t per = (int64_t)h * w * c;
        float *x = malloc((size_t)(m ? m : 1) * (size_t)per * sizeof(float));
        int32_t *y = malloc((size_t)(m ? m : 1) * sizeof(int32_t));
        if (!x || !y) st = cli_fail(SM_ERR_NOMEM, "out of memory");
        const float *src = sm_dataset_images(b->ds);
        for (int64_t j = 0; !st && j < m; j++) {
            memcpy(x + j * per, src + keep[j] * per, (size_t)per * sizeof(float));
            y[j] = b->labels[keep[j]];
        }
        sm_dataset *nds = NULL;
        if (!st) st = sm_dataset_from_arrays(&nds, x, y, m, h, w, c);
        free(x); free(y);
        if (!st) { sm_dataset_free(b->ds); b->ds = nds; }
    }
    if (!st && b->emb)
        for (int64_t j = 0; j < m; j++) memmove(b->emb + j * b->d, b->emb + keep[j] * b->d, (size_t)b->d * sizeof(float));
    if (!st) {
        for (int64_t j = 0; j < m; j++) { b->labels[j] = b->labels[keep[j]]; if (b->item) b->item[j] = b->item[keep[j]]; }
        b->n = m;
    }
    free(keep);
    (void)cmd;
    return st;
}

/* Descriptions "<file>#<i>" for inputs without a file of their own: IDX samples and .npy rows,
 * i the index in that file (index[i] when given, else i). */
static sm_status describe_by_index(cli_batch *b, const char *file, const int64_t *index) {
    size_t per = strlen(file) + 24;
    b->item = malloc((size_t)(b->n ? b->n : 1) * sizeof(char *));
    b->item_buf = malloc((size_t)(b->n ? b->n : 1) * per);
    if (!b->item || !b->item_buf) return cli_fail(SM_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < b->n; i++) {
        char *s = b->item_buf + (size_t)i * per;
        snprintf(s, per, "%s#%lld", file, (long long)(index ? index[i] : i));
        b->item[i] = s;
    }
    return SM_OK;
}

/* Decode the image files paths (n) at the model's input shape (h, w, c) into x (n, h, w, c).
 * An image that cannot be read fails the whole load, or, with --skip-bad, is left out and named
 * on stderr.  keep (n) receives the indices of the images decoded, *m their count.  Says once
 * on stderr how many images were resized (their size in the file is not the model's). */
static sm_status decode_images(const char *cmd, const cli_inputs *in, const char *const *paths, int64_t n, int h, int w,
                               int c, float *x, int64_t *keep, int64_t *m) {
    int64_t per = (int64_t)h * w * c, k = 0, skipped = 0, resized = 0, example = -1;
    int eh = 0, ew = 0;
    sm_status *ok = malloc((size_t)(n ? n : 1) * sizeof(sm_status));
    if (!ok) return cli_fail(SM_ERR_NOMEM, "out of memory");
    sm_status first = sm_images_load(paths, n, h, w, c, x, ok); /* on the library's threads */
    if (first && !in->skip_bad) { free(ok); return first; }
    for (int64_t i = 0; i < n; i++) {
        if (ok[i]) { /* decoded again here for its message */
            (void)sm_image_load(paths[i], h, w, c, x + i * per);
            fprintf(stderr, "simile %s: skipped: %s\n", cmd, sm_errmsg());
            skipped++;
            continue;
        }
        int sh, sw, sc;
        if (!sm_image_info(paths[i], &sh, &sw, &sc) && (sh != h || sw != w)) {
            if (example < 0) { example = i; eh = sh; ew = sw; }
            resized++;
        }
        if (k != i) memmove(x + k * per, x + i * per, (size_t)per * sizeof(float));
        keep[k++] = i;
    }
    free(ok);
    *m = k;
    if (skipped)
        fprintf(stderr, "simile %s: skipped %lld of %lld %s that could not be read\n", cmd, (long long)skipped, (long long)n,
                cli_pl(n, "image", "images"));
    if (n == 1 && !k) return cli_fail(SM_ERR_FORMAT, "the one image given could not be read");
    if (n && !k) return cli_fail(SM_ERR_FORMAT, "none of the %lld images could be read", (long long)n);
    if (resized)
        fprintf(stderr, "simile %s: note: %lld of %lld %s resized to the model's %dx%d (e.g. %s is %dx%d)\n", cmd,
                (long long)resized, (long long)k, cli_pl(k, "image was", "images were"), w, h, paths[example], ew, eh);
    return SM_OK;
}

/* A folder of class sub-folders: list the images (sm_folder_list), decode each at the model's
 * input shape; the item names are the file paths. */
static sm_status load_folder(const char *cmd, const cli_inputs *in, int h, int w, int c, cli_batch *b) {
    char **paths = NULL, **names = NULL;
    int32_t *labels = NULL;
    int64_t n = 0, m = 0;
    int nc = 0;
    sm_status st = sm_folder_list(in->folder, &paths, &labels, &n, &names, &nc);
    if (st) return st;
    int64_t per = (int64_t)h * w * c;
    float *x = malloc((size_t)(n ? n : 1) * (size_t)per * sizeof(float));
    int64_t *keep = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    if (!x || !keep) st = cli_fail(SM_ERR_NOMEM, "out of memory");
    if (!st) st = decode_images(cmd, in, (const char *const *)paths, n, h, w, c, x, keep, &m);
    for (int64_t j = 0; !st && j < m; j++) { /* keep[j] >= j: compact in place */
        labels[j] = labels[keep[j]];
        paths[j] = paths[keep[j]];
    }
    if (!st) st = sm_dataset_from_arrays(&b->ds, x, labels, m, h, w, c);
    free(x);
    free(keep);
    free(labels);
    if (st) { free(paths); free(names); return st; }
    b->item = (const char **)paths; /* one block: pointers, then the strings */
    b->names = names;
    b->nnames = nc;
    return SM_OK;
}

sm_status cli_inputs_load(const char *cmd, const cli_inputs *in, sm_model *m, cli_batch *b) {
    memset(b, 0, sizeof *b);
    int sources = (in->folder != NULL) + (in->npy != NULL) + (in->nimages > 0) + (in->data.images != NULL);
    if (sources > 1) return cli_fail(SM_ERR_INVALID, "give one input source: --folder, --npy, --image or --images/--labels");
    if (in->npy_labels && !in->npy) return cli_fail(SM_ERR_INVALID, "--npy-labels goes with --npy");
    sm_status st = SM_OK;
    if (in->npy) {
        void *data = NULL;
        int64_t shape[4];
        int nd;
        if ((st = sm_npy_read(in->npy, SM_NPY_F32, &data, shape, &nd))) return st;
        if (nd != 2 || shape[1] < 1 || shape[1] > 65536) {
            free(data);
            return cli_fail(SM_ERR_FORMAT, "%s: embeddings must be a 2-D array (n, d), got %d dimensions", in->npy, nd);
        }
        b->emb = data;
        b->n = shape[0];
        b->d = (int)shape[1];
        if (in->npy_labels) {
            void *lab = NULL;
            int64_t ls[4];
            int lnd;
            if ((st = sm_npy_read(in->npy_labels, SM_NPY_I32, &lab, ls, &lnd))) { cli_batch_free(b); return st; }
            b->labels = lab;
            if (lnd != 1 || ls[0] != b->n) {
                cli_batch_free(b);
                return cli_fail(SM_ERR_MISMATCH, "%s: %lld labels for %lld embeddings", in->npy_labels,
                                (long long)(lnd == 1 ? ls[0] : -1), (long long)shape[0]);
            }
            for (int64_t i = 0; i < b->n; i++)
                if (b->labels[i] < 0 || b->labels[i] > 1000000) {
                    cli_batch_free(b);
                    return cli_fail(SM_ERR_RANGE, "%s: label %d of input %lld is outside 0..1000000", in->npy_labels,
                                    (int)b->labels[i], (long long)i);
                }
            if (!(b->names = numeric_names(b->labels, b->n, &b->nnames))) { cli_batch_free(b); return cli_fail(SM_ERR_NOMEM, "out of memory"); }
        }
        if ((st = describe_by_index(b, in->npy, NULL)) || (st = select_per_class(cmd, in, b))) { cli_batch_free(b); return st; }
        return SM_OK;
    }
    if (!m) return cli_fail(SM_ERR_INVALID, "image inputs need --model (or give embeddings with --npy)");
    int h, w, c;
    sm_model_input_shape(m, &h, &w, &c);
    if (in->nimages > 0) {
        float *x = malloc((size_t)in->nimages * (size_t)h * w * c * sizeof(float));
        int32_t *y = calloc((size_t)in->nimages, sizeof(int32_t));
        int64_t *keep = malloc((size_t)in->nimages * sizeof(int64_t)), m = 0;
        b->item = malloc((size_t)in->nimages * sizeof(char *));
        if (!x || !y || !keep || !b->item) st = cli_fail(SM_ERR_NOMEM, "out of memory");
        if (!st) st = decode_images(cmd, in, in->images, in->nimages, h, w, c, x, keep, &m);
        if (!st) st = sm_dataset_from_arrays(&b->ds, x, y, m, h, w, c);
        for (int64_t i = 0; !st && i < m; i++) b->item[i] = in->images[keep[i]];
        free(x); free(y); free(keep);
        if (st) { cli_batch_free(b); return st; }
        b->n = m;
        if (in->first_per_class || in->skip_per_class) { cli_batch_free(b); return cli_fail(SM_ERR_INVALID, "--first-per-class / --skip-per-class need labelled inputs"); }
    } else if (in->folder) {
        if ((st = load_folder(cmd, in, h, w, c, b))) { cli_batch_free(b); return st; }
    } else {
        char path[4096];
        int64_t *index = NULL;
        cli_data dm = in->data;
        dm.model = m; /* its stored normalisation */
        if ((st = cli_data_load_ex(&dm, &b->ds, path, sizeof path, &index))) return st;
        b->n = sm_dataset_size(b->ds);
        st = describe_by_index(b, path, index);
        free(index);
        if (st) { cli_batch_free(b); return st; }
        int dh, dw, dc;
        sm_dataset_shape(b->ds, &dh, &dw, &dc);
        if (dh != h || dw != w || dc != c) {
            cli_batch_free(b);
            return cli_fail(SM_ERR_MISMATCH, "the images are %dx%dx%d, the model takes %dx%dx%d", dh, dw, dc, h, w, c);
        }
    }
    if (in->folder || in->nimages > 0) { /* the options', else the model's stored normalisation */
        cli_data dn = in->data;
        dn.model = m;
        dn.folder = in->folder;
        sm_normalization nz;
        if ((st = cli_data_norm(&dn, c, &nz)) || (nz.kind == SM_NORM_MEAN_STD && (st = sm_dataset_normalize_channels(b->ds, nz.mean, nz.std)))) {
            cli_batch_free(b);
            return st;
        }
    }
    b->n = sm_dataset_size(b->ds);
    if (in->nimages == 0) {
        b->labels = malloc((size_t)(b->n ? b->n : 1) * sizeof(int32_t));
        if (!b->labels) { cli_batch_free(b); return cli_fail(SM_ERR_NOMEM, "out of memory"); }
        if (b->n) memcpy(b->labels, sm_dataset_labels(b->ds), (size_t)b->n * sizeof(int32_t));
        if (!b->names && !(b->names = model_names(m, b->labels, b->n, &b->nnames))) { cli_batch_free(b); return cli_fail(SM_ERR_NOMEM, "out of memory"); }
        if ((st = select_per_class(cmd, in, b))) { cli_batch_free(b); return st; }
    }
    return SM_OK;
}

sm_status cli_batch_embed(const cli_inputs *in, sm_model *m, cli_batch *b) {
    if (!b->emb) {
        int d = sm_model_embedding_dim(m);
        b->emb = malloc((size_t)(b->n ? b->n : 1) * (size_t)d * sizeof(float));
        if (!b->emb) return cli_fail(SM_ERR_NOMEM, "out of memory");
        b->d = d;
        sm_status st = sm_model_embed(m, sm_dataset_images(b->ds), b->n, b->emb);
        if (st) return cli_fail(st, "%s", sm_model_errmsg(m));
    }
    if (!in->raw) sm_embeddings_normalize(b->emb, b->n, b->d);
    return SM_OK;
}
