/* data.c - where the commands' images come from: the data options (IDX files, a folder of class
 * sub-folders, --size/--channels, class names, per-channel normalisation and its defaults),
 * loading, class filtering and normalising, --stream's datasets decoded batch by batch, the
 * augmentation options, and what train stores in the model (docs/data.md). */
#include "cli.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const cli_data_help =
    "data:\n"
    "  --data DIR        folder with Fashion-MNIST-named IDX files (default " SM_DEFAULT_DATA_DIR ")\n"
    "  --split S         train or t10k/test (default depends on the command)\n"
    "  --images F        IDX image file (.gz or plain); overrides --data/--split\n"
    "  --labels F        IDX label file matching --images\n"
    "  --class-names F   names of the IDX classes, one a line (line k: class k), stored in the model\n"
    "  --folder DIR      images instead: one sub-folder a class (PNG, JPEG, BMP, PGM/PPM; grey or\n"
    "                    colour; any size), classes numbered in sorted name order (docs/data.md)\n"
    "  --size HxW        the folder's images are resized to H x W (default: a model's input size,\n"
    "                    else the size of the folder's first image)\n"
    "  --channels 1|3    grey or RGB (default: a model's, else the first image's)\n"
    "  --skip-bad        leave out (and name) the folder's images that cannot be read\n"
    "  --classes LIST    keep only these classes, e.g. 0-4 or 5,7,9 (default all)\n"
    "  --normalize N     imagenet (mean 0.485,0.456,0.406, std 0.229,0.224,0.225), fmnist\n"
    "                    (0.2860 / 0.3530) or none\n"
    "  --mean A[,B,C] --std A[,B,C]   per-channel normalisation (x - mean) / std after scaling\n"
    "                    to [0,1]; --no-normalize to skip.  Default: what the model stores, else\n"
    "                    imagenet for a colour folder, fmnist otherwise\n";

void cli_data_defaults(cli_data *d, const char *split) {
    memset(d, 0, sizeof *d);
    d->dir = SM_DEFAULT_DATA_DIR;
    d->split = split;
    d->mean = SM_FMNIST_MEAN;
    d->std = SM_FMNIST_STD;
    d->normalize = 1;
}

/* "a" or "a,b,c" into v (3); the count in *n; -1 (reported) if malformed or out of range. */
static int parse_channels(const char *cmd, const char *opt, const char *arg, double lo, double hi, float *v, int *n) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", arg);
    int k = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (k == 3) { cli_usage_error(cmd, "%s: '%s' has more than 3 values", opt, arg); return -1; }
        if (cli_float(cmd, opt, t, lo, hi, &v[k++])) return -1;
    }
    if (k != 1 && k != 3) { cli_usage_error(cmd, "%s: '%s' needs 1 or 3 comma-separated values", opt, arg); return -1; }
    *n = k;
    return 0;
}

/* Option ids shared by commands (long options only). */
int cli_data_option(const char *cmd, cli_data *d, int opt, const char *arg) {
    switch (opt) {
    case 1000: d->dir = arg; return 1;
    case 1001: d->split = arg; return 1;
    case 1002: d->images = arg; return 1;
    case 1003: d->labels = arg; return 1;
    case 1004: d->classes = arg; return 1;
    case 1005:
        d->norm_given = d->normalize = 1;
        if (parse_channels(cmd, "--mean", arg, -1e6, 1e6, d->means, &d->nmean)) return -1;
        d->mean = d->means[0];
        return 1;
    case 1006:
        d->norm_given = d->normalize = 1;
        if (parse_channels(cmd, "--std", arg, 1e-12, 1e6, d->stds, &d->nstd)) return -1;
        d->std = d->stds[0];
        return 1;
    case 1007: d->normalize = 0; d->norm_given = 1; return 1;
    case 1008: {
        static const float in_m[3] = {0.485f, 0.456f, 0.406f}, in_s[3] = {0.229f, 0.224f, 0.225f};
        d->norm_given = 1;
        d->normalize = 1;
        if (!strcmp(arg, "imagenet")) {
            memcpy(d->means, in_m, sizeof in_m); memcpy(d->stds, in_s, sizeof in_s);
            d->nmean = d->nstd = 3;
        } else if (!strcmp(arg, "fmnist")) {
            d->means[0] = SM_FMNIST_MEAN; d->stds[0] = SM_FMNIST_STD;
            d->nmean = d->nstd = 1;
        } else if (!strcmp(arg, "none")) {
            d->normalize = 0;
        } else {
            cli_usage_error(cmd, "--normalize: '%s' is not imagenet, fmnist or none", arg);
            return -1;
        }
        d->mean = d->means[0]; d->std = d->stds[0];
        return 1;
    }
    case 1009: d->folder = arg; return 1;
    case 1010: {
        int h, w;
        char tail;
        if (sscanf(arg, "%dx%d%c", &h, &w, &tail) != 2 || h < 1 || w < 1 || h > 4096 || w > 4096) {
            cli_usage_error(cmd, "--size: '%s' is not HxW with H and W in 1..4096 (e.g. 64x64)", arg);
            return -1;
        }
        d->size_h = h; d->size_w = w;
        return 1;
    }
    case 1011:
        if (strcmp(arg, "1") && strcmp(arg, "3")) { cli_usage_error(cmd, "--channels: '%s' is not 1 or 3", arg); return -1; }
        d->channels = arg[0] - '0';
        return 1;
    case 1012: d->class_names = arg; return 1;
    case 1013: d->skip_bad = 1; return 1;
    case 1014: d->stream = 1; return 1;
    case 1015: d->cache = 1; return 1;
    default: return 0;
    }
}

sm_status cli_data_norm(const cli_data *d, int c, sm_normalization *out) {
    memset(out, 0, sizeof *out);
    sm_normalization stored = {0};
    if (d->model) sm_model_normalization(d->model, &stored);
    if (!d->norm_given && stored.kind != SM_NORM_UNKNOWN) { *out = stored; return SM_OK; }
    if (!d->normalize) { out->kind = SM_NORM_NONE; return SM_OK; }
    float m[3] = {SM_FMNIST_MEAN}, sd[3] = {SM_FMNIST_STD};
    int nm = 1, ns = 1;
    if (d->norm_given) {
        if (d->nmean) { memcpy(m, d->means, sizeof m); nm = d->nmean; }
        if (d->nstd) { memcpy(sd, d->stds, sizeof sd); ns = d->nstd; }
    } else if (d->folder && c == 3) { /* a colour folder: ImageNet's */
        static const float in_m[3] = {0.485f, 0.456f, 0.406f}, in_s[3] = {0.229f, 0.224f, 0.225f};
        memcpy(m, in_m, sizeof m); memcpy(sd, in_s, sizeof sd);
        nm = ns = 3;
    }
    if ((nm != 1 && nm != c) || (ns != 1 && ns != c))
        return cli_fail(SM_ERR_INVALID, "normalisation of %d mean and %d std values for images of %d %s (give %s)", nm, ns,
                        c, cli_pl(c, "channel", "channels"), c == 1 ? "1 value" : "1 or 3 values");
    out->kind = SM_NORM_MEAN_STD;
    out->channels = c;
    for (int k = 0; k < c; k++) { out->mean[k] = m[nm == 1 ? 0 : k]; out->std[k] = sd[ns == 1 ? 0 : k]; }
    return SM_OK;
}

sm_status cli_data_load(const cli_data *d, sm_dataset **out) { return cli_data_load_ex(d, out, NULL, 0, NULL); }

sm_status cli_data_load_ex(const cli_data *d, sm_dataset **out, char *path, size_t cap, int64_t **index) {
    return cli_data_load_full(d, out, path, cap, index, NULL, NULL);
}

/* --class-names FILE: one name a line (trailing spaces and '\r' dropped), in one block. */
static sm_status read_names(const char *file, char ***names, int *n) {
    *names = NULL;
    *n = 0;
    FILE *f = fopen(file, "r");
    if (!f) return cli_fail(SM_ERR_IO, "%s: cannot open: %s", file, strerror(errno));
    char line[1024], *text = NULL;
    size_t len = 0;
    int k = 0;
    sm_status st = SM_OK;
    while (!st && fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        if (l == sizeof line - 1 && line[l - 1] != '\n') { st = cli_fail(SM_ERR_FORMAT, "%s: line %d is too long", file, k + 1); break; }
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r' || line[l - 1] == ' ')) line[--l] = 0;
        if (!l) { st = cli_fail(SM_ERR_FORMAT, "%s: line %d is empty (one class name a line)", file, k + 1); break; }
        if (k == 1 << 20) { st = cli_fail(SM_ERR_FORMAT, "%s: more than %d names", file, 1 << 20); break; }
        char *t = realloc(text, len + l + 1);
        if (!t) { st = cli_fail(SM_ERR_NOMEM, "out of memory"); break; }
        text = t;
        memcpy(text + len, line, l + 1);
        len += l + 1;
        k++;
    }
    fclose(f);
    if (!st && !k) st = cli_fail(SM_ERR_FORMAT, "%s: no class name", file);
    char **v = st ? NULL : malloc((size_t)k * sizeof(char *) + len);
    if (!st && !v) st = cli_fail(SM_ERR_NOMEM, "out of memory");
    if (!st) {
        char *s = (char *)(v + k);
        memcpy(s, text, len);
        for (int i = 0; i < k; i++) { v[i] = s; s += strlen(s) + 1; }
        *names = v;
        *n = k;
    }
    free(text);
    return st;
}

/* --stream: the images of the classes asked for, as a dataset decoded batch by batch. */
static sm_status stream_folder(const cli_data *d, char **paths, int32_t *labels, int64_t n, int h, int w, int c, sm_dataset **out,
                               int64_t *idx, int64_t *kept) {
    int32_t cls[1024];
    int ncls = 0;
    sm_status st = SM_OK;
    if (d->classes && (st = sm_parse_class_list(d->classes, cls, 1024, &ncls))) return st;
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        int keep = !d->classes;
        for (int k = 0; !keep && k < ncls; k++) keep = labels[i] == cls[k];
        if (!keep) continue;
        paths[m] = paths[i];
        labels[m] = labels[i];
        idx[m++] = i;
    }
    for (int k = 0; k < ncls; k++) {
        int64_t cnt = 0;
        for (int64_t i = 0; i < m; i++) cnt += labels[i] == cls[k];
        if (!cnt) return cli_fail(SM_ERR_RANGE, "%s: class %d has no images (empty class)", d->folder, (int)cls[k]);
    }
    sm_normalization nz;
    if ((st = cli_data_norm(d, c, &nz))) return st;
    int on = nz.kind == SM_NORM_MEAN_STD;
    *kept = m;
    return sm_dataset_from_files(out, (const char *const *)paths, labels, m, h, w, c, on ? nz.mean : NULL, on ? nz.std : NULL,
                                 d->cache);
}

/* A folder of class sub-folders at the shape (h, w, c) (decoded on the library's threads, or
 * streamed); with --skip-bad the unreadable images are named on stderr and left out. */
static sm_status load_folder_data(const cli_data *d, sm_dataset **out, int64_t **index, char ***names, int *nnames) {
    char **paths = NULL, **cn = NULL;
    int32_t *labels = NULL;
    int64_t n = 0;
    int nc = 0, h = d->size_h, w = d->size_w, c = d->channels;
    sm_status st = sm_folder_list(d->folder, &paths, &labels, &n, &cn, &nc);
    if (st) return st;
    if (d->model) {
        int mh, mw, mc;
        sm_model_input_shape(d->model, &mh, &mw, &mc);
        if ((h && (h != mh || w != mw)) || (c && c != mc))
            st = cli_fail(SM_ERR_MISMATCH, "--size %dx%d / --channels %d: the model takes %dx%dx%d images", h ? h : mh, w ? w : mw,
                          c ? c : mc, mh, mw, mc);
        h = mh; w = mw; c = mc;
    } else if (!h || !c) { /* the first image's size and colour */
        int ih, iw, ic;
        if (!(st = sm_image_info(paths[0], &ih, &iw, &ic))) {
            if (!h) { h = ih; w = iw; }
            if (!c) c = ic;
        }
    }
    int64_t per = (int64_t)h * w * c, m = 0;
    float *x = NULL;
    sm_status *ok = NULL;
    int64_t *idx = NULL;
    if (!st && d->stream) {
        if (!(idx = malloc((size_t)n * sizeof(int64_t)))) st = cli_fail(SM_ERR_NOMEM, "out of memory");
        if (!st) st = stream_folder(d, paths, labels, n, h, w, c, out, idx, &m);
        free(labels); free(paths);
        if (st) { free(idx); free(cn); return st; }
        if (index) *index = idx; else free(idx);
        if (names) { *names = cn; *nnames = nc; } else free(cn);
        return SM_OK;
    }
    if (!st && (uint64_t)n * (uint64_t)per > ((uint64_t)1 << 32)) /* 16 GiB of floats */
        st = cli_fail(SM_ERR_RANGE, "%s: %lld images of %dx%dx%d are more than 16 GiB decoded (give a smaller --size)", d->folder,
                      (long long)n, h, w, c);
    if (!st) {
        x = malloc((size_t)n * (size_t)per * sizeof(float));
        ok = malloc((size_t)n * sizeof(sm_status));
        idx = malloc((size_t)n * sizeof(int64_t));
        if (!x || !ok || !idx) st = cli_fail(SM_ERR_NOMEM, "out of memory");
    }
    if (!st) {
        st = sm_images_load((const char *const *)paths, n, h, w, c, x, ok);
        if (st && d->skip_bad) {
            st = SM_OK;
            for (int64_t i = 0; i < n; i++) {
                if (ok[i]) { /* decode it again here for its message */
                    (void)sm_image_load(paths[i], h, w, c, x + i * per);
                    fprintf(stderr, "simile: skipped: %s\n", sm_errmsg());
                    continue;
                }
                if (m != i) memmove(x + m * per, x + i * per, (size_t)per * sizeof(float));
                labels[m] = labels[i];
                idx[m++] = i;
            }
            if (m < n) fprintf(stderr, "simile: skipped %lld of %lld images that could not be read\n", (long long)(n - m), (long long)n);
            if (!m) st = cli_fail(SM_ERR_FORMAT, "%s: none of the %lld images could be read", d->folder, (long long)n);
        } else if (!st) {
            for (int64_t i = 0; i < n; i++) idx[i] = i;
            m = n;
        }
    }
    if (!st) st = sm_dataset_from_arrays(out, x, labels, m, h, w, c);
    free(x); free(ok); free(labels); free(paths);
    if (st) { free(idx); free(cn); return st; }
    if (index) *index = idx; else free(idx);
    if (names) { *names = cn; *nnames = nc; } else free(cn);
    return SM_OK;
}

sm_status cli_data_load_full(const cli_data *d, sm_dataset **out, char *path, size_t cap, int64_t **index,
                             char ***names, int *nnames) {
    char img[4096], lab[4096];
    const char *ip = d->images, *lp = d->labels;
    *out = NULL;
    if (index) *index = NULL;
    if (names) { *names = NULL; *nnames = 0; }
    if (!ip != !lp) return cli_fail(SM_ERR_INVALID, "--images and --labels go together");
    if (d->folder && ip) return cli_fail(SM_ERR_INVALID, "give --folder or --images/--labels, not both");
    if (!d->folder && (d->size_h || d->channels || d->skip_bad || d->stream || d->cache))
        return cli_fail(SM_ERR_INVALID, "--size, --channels, --skip-bad, --stream and --cache go with --folder");
    if (d->cache && !d->stream) return cli_fail(SM_ERR_INVALID, "--cache goes with --stream (without it the folder is decoded once, in memory)");
    if (d->stream && d->skip_bad)
        return cli_fail(SM_ERR_INVALID, "--skip-bad cannot be used with --stream (a file that cannot be decoded stops training, named)");
    if (d->folder && d->class_names)
        return cli_fail(SM_ERR_INVALID, "--class-names is for IDX data: a folder's classes are named by its sub-folders");
    sm_dataset *ds;
    sm_status st;
    int64_t n0, *idx = NULL;
    char **cn = NULL;
    int ncn = 0;
    if (d->folder) {
        if (path && cap) snprintf(path, cap, "%s", d->folder);
        if ((st = load_folder_data(d, &ds, &idx, &cn, &ncn))) return st;
        n0 = sm_dataset_size(ds);
        if (sm_dataset_is_streamed(ds)) { /* filtered and normalised as it was made */
            if (index) *index = idx; else free(idx);
            if (names) { *names = cn; *nnames = ncn; } else free(cn);
            *out = ds;
            return SM_OK;
        }
    } else {
        if (!ip) {
            const char *split = !strcmp(d->split, "test") ? "t10k" : d->split;
            if (strcmp(split, "train") && strcmp(split, "t10k"))
                return cli_fail(SM_ERR_INVALID, "--split must be train or test (got '%s')", d->split);
            snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte.gz", d->dir, split);
            snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte.gz", d->dir, split);
            /* accept uncompressed files too */
            if (access(img, R_OK) != 0) snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte", d->dir, split);
            if (access(lab, R_OK) != 0) snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte", d->dir, split);
            ip = img; lp = lab;
        }
        if (path && cap) snprintf(path, cap, "%s", ip);
        if (d->class_names && (st = read_names(d->class_names, &cn, &ncn))) return st;
        if ((st = sm_dataset_load_idx(&ds, ip, lp))) { free(cn); return st; }
        n0 = sm_dataset_size(ds);
        if (index && !(idx = malloc((size_t)(n0 ? n0 : 1) * sizeof(int64_t)))) { sm_dataset_free(ds); free(cn); return SM_ERR_NOMEM; }
        for (int64_t i = 0; idx && i < n0; i++) idx[i] = i;
        if (cn && sm_dataset_num_classes(ds) > ncn) {
            st = cli_fail(SM_ERR_MISMATCH, "%s names %d %s, the labels go up to %d", d->class_names, ncn,
                          cli_pl(ncn, "class", "classes"), sm_dataset_num_classes(ds) - 1);
            sm_dataset_free(ds); free(cn); free(idx);
            return st;
        }
    }
    if (d->classes) {
        int32_t cls[1024];
        int n;
        int32_t *y = idx ? malloc((size_t)(n0 ? n0 : 1) * sizeof(int32_t)) : NULL; /* (n0) labels before the filter */
        if (idx && !y) { sm_dataset_free(ds); free(idx); free(cn); return SM_ERR_NOMEM; }
        if (y && n0) memcpy(y, sm_dataset_labels(ds), (size_t)n0 * sizeof(int32_t));
        if ((st = sm_parse_class_list(d->classes, cls, 1024, &n)) || (st = sm_dataset_filter_classes(ds, cls, n))) {
            sm_dataset_free(ds);
            free(idx);
            free(y);
            free(cn);
            return st;
        }
        /* the filter keeps the order: the same membership test gives the kept indices */
        int64_t k = 0;
        for (int64_t i = 0; y && i < n0; i++)
            for (int c = 0; c < n; c++)
                if (y[i] == cls[c]) { idx[k++] = idx[i]; break; }
        free(y);
    }
    int h, w, c;
    sm_dataset_shape(ds, &h, &w, &c);
    sm_normalization nz;
    st = cli_data_norm(d, c, &nz);
    if (!st && nz.kind == SM_NORM_MEAN_STD) st = sm_dataset_normalize_channels(ds, nz.mean, nz.std);
    if (st) {
        sm_dataset_free(ds);
        free(idx);
        free(cn);
        return st;
    }
    if (index) *index = idx; else free(idx);
    if (names) { *names = cn; *nnames = ncn; } else free(cn);
    *out = ds;
    return SM_OK;
}

/* One "key=A" or "key=A-B" item of an augmentation option: *lo, *hi (hi = lo for one value). */
static int aug_value(const char *cmd, const char *opt, const char *key, const char *val, float *lo, float *hi) {
    char *end;
    double a = strtod(val, &end), b = a;
    if (end == val) goto bad;
    if (*end == '-') {
        const char *s = end + 1;
        b = strtod(s, &end);
        if (end == s) goto bad;
    }
    if (*end || !(a >= 0 && b >= a && b < 1000)) goto bad;
    *lo = (float)a;
    *hi = (float)b;
    return 0;
bad:
    cli_usage_error(cmd, "%s: %s='%s' is not a number or a range A-B with 0 <= A <= B", opt, key, val);
    return -1;
}

int cli_aug_option(const char *cmd, int which, const char *arg, sm_augment *a) {
    static const char *const names[3] = {"--aug-crop", "--aug-jitter", "--aug-erase"};
    const char *opt = names[which];
    if (which == 0) { /* torchvision's RandomResizedCrop defaults */
        a->crop_scale_min = 0.08f; a->crop_scale_max = 1; a->crop_ratio_min = 3.0f / 4; a->crop_ratio_max = 4.0f / 3;
    } else if (which == 2) {
        a->erase_p = 0.5f;
    }
    if (!strcmp(arg, "default")) return 0;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", arg);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        if (!eq) return cli_usage_error(cmd, "%s: expected key=value, got '%s'", opt, t), -1;
        *eq = 0;
        const char *k = t, *v = eq + 1;
        float lo, hi;
        if (aug_value(cmd, opt, k, v, &lo, &hi)) return -1;
        int one = lo == hi, ok = 1;
        if (which == 0 && !strcmp(k, "scale")) { a->crop_scale_min = lo; a->crop_scale_max = hi; ok = lo > 0 && hi <= 1; }
        else if (which == 0 && !strcmp(k, "ratio")) { a->crop_ratio_min = lo; a->crop_ratio_max = hi; ok = lo > 0; }
        else if (which == 1 && !strcmp(k, "brightness")) { a->brightness = lo; ok = one; }
        else if (which == 1 && !strcmp(k, "contrast")) { a->contrast = lo; ok = one; }
        else if (which == 1 && !strcmp(k, "saturation")) { a->saturation = lo; ok = one; }
        else if (which == 2 && !strcmp(k, "p")) { a->erase_p = lo; ok = one && lo <= 1; }
        else if (which == 2 && !strcmp(k, "scale")) { a->erase_scale_min = lo; a->erase_scale_max = hi; ok = lo > 0 && hi < 1; }
        else if (which == 2 && !strcmp(k, "ratio")) { a->erase_ratio_min = lo; a->erase_ratio_max = hi; ok = lo > 0; }
        else {
            static const char *const keys[3] = {"scale, ratio", "brightness, contrast, saturation", "p, scale, ratio"};
            return cli_usage_error(cmd, "%s: unknown key '%s' (keys: %s)", opt, k, keys[which]), -1;
        }
        if (!ok) return cli_usage_error(cmd, "%s: %s=%s is out of range (docs/data.md)", opt, k, v), -1;
    }
    return 0;
}

sm_status cli_train_data_check(const cli_data *d, const sm_dataset *ds, char *const *names) {
    if (!d->folder) return SM_OK; /* IDX data of one class trains (tests/test_cli_exits.sh) */
    int64_t n = sm_dataset_size(ds);
    const int32_t *y = sm_dataset_labels(ds);
    for (int64_t i = 1; i < n; i++) if (y[i] != y[0]) return SM_OK;
    return cli_fail(SM_ERR_RANGE, "%s: one class only ('%s', %lld %s): training needs two classes at least (--folder names the "
                    "folder that holds one sub-folder a class)", d->folder, names && n ? names[y[0]] : "?", (long long)n,
                    cli_pl(n, "image", "images"));
}

sm_status cli_model_set_data(const cli_data *d, sm_model *m, int c, char *const *names, int nnames) {
    sm_normalization nz;
    sm_status st = cli_data_norm(d, c, &nz);
    if (!st) st = sm_model_set_normalization(m, &nz);
    if (!st && names) st = sm_model_set_class_names(m, (const char *const *)names, nnames);
    return st;
}
