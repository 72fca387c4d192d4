/* cmd_gallery.c - `simile gallery create|enrol|remove|list|compact|calibrate`: a persistent
 * gallery of labelled embeddings.  Every change is made under the writer lock
 * (<gallery>.lock): enrol, remove and calibrate open the gallery journaled and append their
 * change to <gallery>.journal (fsynced; folded into the file every CLI_CHECKPOINT_RECORDS
 * changes); create and compact save the whole file atomically (temporary file, fsync,
 * rename).  Readers (identify, verify, list) need no lock. */
#include "cli_gallery.h"

#include <getopt.h>
#include <time.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *help_main =
    "usage: simile gallery <create|enrol|remove|list|compact|calibrate> [options]\n"
    "A gallery file holds enrolled embeddings with class names and item ids, the fingerprint\n"
    "of the model that made them, the metric and an open-set threshold.  Changes are atomic:\n"
    "a crash leaves the gallery as it was before or after; concurrent writers take turns.\n\n"
    "  create     make an empty gallery for a model (or a dimension)\n"
    "  enrol      add images or embeddings to classes (new or existing)\n"
    "  remove     remove a class or an item\n"
    "  list       show the settings, the classes and their item counts\n"
    "  compact    drop removed items and classes from the file\n"
    "  calibrate  set the open-set threshold from labelled data (target FAR or best F1)\n"
    "simile gallery <sub> --help for each.\n";

/* ---- create ------------------------------------------------------------------------------- */
static int gal_create(int argc, char **argv) {
    static const struct option opts[] = {{"out", 1, 0, 'o'}, {"model", 1, 0, 'm'}, {"dim", 1, 0, 'd'},
                                         {"metric", 1, 0, 'k'}, {"force", 0, 0, 'f'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *cmd = "gallery create", *out = NULL, *model = NULL;
    int dim = 0, force = 0, c;
    sm_metric metric = SM_METRIC_L2;
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_SHORTOPTS, opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'm': model = optarg; break;
        case 'd': if (cli_int(cmd, "--dim", optarg, 1, 65536, &dim)) return EXIT_USAGE; break;
        case 'k':
            if (cli_parse_metric(optarg, &metric)) return cli_usage_error(cmd, "--metric must be l2, cosine or ip");
            break;
        case 'f': force = 1; break;
        case 'h':
            printf("usage: simile gallery create --out FILE (--model FILE | --dim D) [--metric M] [--force]\n"
                   "Create an empty gallery.  With --model it records the model's fingerprint and\n"
                   "embedding size, and only that model may enrol or query; with --dim it holds raw\n"
                   "embeddings (--npy inputs).  --metric l2 (default: Euclidean distance on\n"
                   "L2-normalised embeddings), cosine (1 - cosine) or ip (minus the inner product).\n"
                   "An existing file is kept unless --force.\n");
            return EXIT_OK;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!out) return cli_usage_error(cmd, "--out FILE is required");
    if (!model == !dim) return cli_usage_error(cmd, "give --model FILE or --dim D (one of them)");
    if (!force && access(out, F_OK) == 0)
        return cli_report(cmd, SM_ERR_IO, "the gallery file exists (use --force to replace it)");
    sm_model *m;
    int rc = cli_load_model(cmd, model, &m);
    if (rc) return rc;
    sm_gallery *g;
    sm_status st = sm_gallery_create(&g, m ? sm_model_embedding_dim(m) : dim, metric, m ? sm_model_fingerprint(m) : 0);
    if (!st) st = sm_gallery_save(g, out);
    if (st) rc = cli_report(cmd, st, NULL);
    else printf("created %s: dimension %d, metric %s, model %08x\n", out, sm_gallery_dim(g),
                cli_metric_name(metric), sm_gallery_model_fingerprint(g));
    sm_gallery_free(g);
    sm_model_free(m);
    return rc;
}

/* ---- enrol -------------------------------------------------------------------------------- */
/* Duplicate check before an enrolment: an input whose embedding (bit for bit) or source name
 * is already in its class, in the gallery or earlier in the same batch, is named on stderr
 * (a warning: it is still enrolled).  Hashes of (class, embedding) and (class, source) are
 * sorted so the check is O((n + m) log(n + m)). */
typedef struct dup_key { uint64_t h; int64_t who; } dup_key; /* who: batch index i, or -1 - gallery row */

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 1099511628211ull;
    return h;
}
static int cmp_dup(const void *a, const void *b) {
    const dup_key *x = a, *y = b;
    if (x->h != y->h) return x->h < y->h ? -1 : 1;
    return (x->who > y->who) - (x->who < y->who); /* gallery rows (negative) first, then batch order */
}

static void warn_duplicates(const char *cmd, sm_gallery *g, const cli_batch *b, const char *cls) {
    int64_t m = sm_gallery_size(g), n = b->n, total = m + n, shown = 0, found = 0;
    int d = b->d;
    int64_t *gid = malloc((size_t)(m ? m : 1) * sizeof(int64_t));
    int32_t *gcls = malloc((size_t)(m ? m : 1) * sizeof(int32_t));
    float *gemb = malloc((size_t)(m ? m : 1) * (size_t)d * sizeof(float));
    const char **gsrc = malloc((size_t)(m ? m : 1) * sizeof(char *));
    dup_key *k = malloc((size_t)(total ? total : 1) * sizeof(dup_key));
    char *warned = calloc((size_t)(n ? n : 1), 1); /* (n) 1 = already named as a duplicate */
    if (!gid || !gcls || !gemb || !gsrc || !k || !warned) {
        fprintf(stderr, "simile %s: note: not enough memory to check for duplicates\n", cmd);
        goto done;
    }
    sm_gallery_items(g, gid, gcls, gemb);
    sm_gallery_item_sources(g, gsrc);
    for (int pass = 0; pass < 2; pass++) { /* 0: embeddings, 1: source names */
        int64_t nk = 0;
        for (int64_t j = 0; j < total; j++) {
            int64_t r = j < m ? j : j - m;
            const char *cn, *src;
            const float *e;
            if (j < m) {
                sm_gallery_class ci;
                sm_gallery_class_info(g, gcls[r], &ci);
                cn = ci.name; e = gemb + r * d; src = gsrc[r];
            } else {
                cn = cls ? cls : b->names[b->labels[r]]; e = b->emb + r * d; src = b->item ? b->item[r] : "";
            }
            if (pass == 1 && (!src || !*src)) continue;
            uint64_t h = fnv(14695981039346656037ull, cn, strlen(cn) + 1);
            h = pass == 0 ? fnv(h, e, (size_t)d * sizeof(float)) : fnv(h, src, strlen(src));
            k[nk].h = h;
            k[nk].who = j < m ? -1 - r : r;
            nk++;
        }
        qsort(k, (size_t)nk, sizeof *k, cmp_dup);
        for (int64_t a = 0; a < nk; a++) {
            if (k[a].who < 0 || warned[k[a].who]) continue;
            int64_t i = k[a].who;
            const char *cn = cls ? cls : b->names[b->labels[i]];
            for (int64_t z = a - 1; z >= 0 && k[z].h == k[a].h; z--) { /* an earlier equal key: same? */
                int64_t w = k[z].who;
                const char *wc, *ws;
                const float *we;
                if (w < 0) {
                    sm_gallery_class ci;
                    sm_gallery_class_info(g, gcls[-1 - w], &ci);
                    wc = ci.name; we = gemb + (-1 - w) * d; ws = gsrc[-1 - w];
                } else {
                    wc = cls ? cls : b->names[b->labels[w]]; we = b->emb + w * d; ws = b->item ? b->item[w] : "";
                }
                int same = !strcmp(wc, cn) && (pass == 0 ? !memcmp(we, b->emb + i * d, (size_t)d * sizeof(float))
                                                         : !strcmp(ws, b->item[i]));
                if (!same) continue;
                found++;
                warned[i] = 1;
                if (shown++ < 5) {
                    char other[64];
                    if (w < 0) snprintf(other, sizeof other, "item %lld already enrolled", (long long)gid[-1 - w]);
                    else snprintf(other, sizeof other, "input %lld of this enrolment", (long long)w);
                    fprintf(stderr, "simile %s: warning: %s (class '%s') %s %s in that class\n", cmd,
                            b->item ? b->item[i] : "an input", cn, pass == 0 ? "has the same embedding as" : "has the same source as",
                            other);
                }
                break;
            }
        }
    }
    if (shown > 5) fprintf(stderr, "simile %s: warning: ... %lld duplicates in all\n", cmd, (long long)found);
done:
    free(gid); free(gcls); free(gemb); free((void *)gsrc); free(k); free(warned);
}

static int gal_enrol(int argc, char **argv) {
    static const struct option opts[] = {{"gallery", 1, 0, 'g'}, {"model", 1, 0, 'm'}, {"class", 1, 0, 'c'},
                                         {"help", 0, 0, 'h'}, CLI_INPUT_OPTIONS, {0, 0, 0, 0}};
    const char *cmd = "gallery enrol", *gpath = NULL, *model = NULL, *cls = NULL;
    cli_inputs in;
    cli_inputs_defaults(&in, "train");
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_SHORTOPTS, opts, NULL)) != -1) {
        int r = cli_inputs_option(cmd, &in, c, optarg);
        if (r < 0) return EXIT_USAGE;
        if (r) continue;
        switch (c) {
        case 'g': gpath = optarg; break;
        case 'm': model = optarg; break;
        case 'c': cls = optarg; break;
        case 'h':
            printf("usage: simile gallery enrol --gallery FILE --model FILE [inputs] [--class NAME]\n"
                   "Embed the inputs and add them to the gallery, each under the class of its label\n"
                   "(a folder name, or the label number for IDX and .npy inputs), or all under\n"
                   "--class NAME.  Classes are created as needed.  The enrolment is appended to\n"
                   "the gallery's journal (FILE.journal, fsynced) under a lock: when the command\n"
                   "returns it is on disk; the journal is folded into FILE every 256 changes.\n"
                   "Each item keeps its source (the image file, or <file>#<index>: gallery list\n"
                   "--items); an input with the same embedding or source as an item of its class is\n"
                   "named in a warning (and still enrolled).\n"
                   "Example (5 train images of each of the classes 5-9):\n"
                   "  simile gallery enrol --gallery g.smg --model m.smm --split train --classes 5-9 \\\n"
                   "      --first-per-class 5\n\n%s", cli_inputs_help);
            return EXIT_OK;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    if (cli_inputs_positional(cmd, &in, argc, argv, optind)) return EXIT_USAGE;
    if (cli_inputs_require(cmd, &in)) return EXIT_USAGE;
    if (!gpath) return cli_usage_error(cmd, "--gallery FILE is required");
    if (!model && !cli_inputs_are_embeddings(&in)) return cli_usage_error(cmd, "--model FILE is required for image inputs");
    if (in.nimages && !cls) return cli_usage_error(cmd, "image files have no label: give --class NAME");
    sm_set_num_threads(in.threads);
    sm_model *m;
    int rc = cli_load_model(cmd, model, &m);
    if (rc) return rc;
    cli_batch b;
    sm_gallery *g = NULL;
    sm_lock *lock = NULL;
    int64_t *ids = NULL; /* (n) assigned item ids */
    sm_status st = cli_inputs_load(cmd, &in, m, &b);
    if (!st && b.n == 0) st = cli_fail(SM_ERR_RANGE, "no input to enrol");
    if (!st) st = cli_batch_embed(&in, m, &b);
    if (!st && !cls && !b.labels) st = cli_fail(SM_ERR_INVALID, "the inputs have no labels: give --class NAME");
    /* the lock is held only for open + add + save */
    if (!st) st = sm_gallery_lock(&lock, gpath);
    if (!st) st = cli_gallery_open_write(gpath, m, &g);
    if (!st && b.d != sm_gallery_dim(g))
        st = cli_fail(SM_ERR_MISMATCH, "%s: the inputs have dimension %d, the gallery holds dimension %d", gpath, b.d,
                       sm_gallery_dim(g));
    if (!st) {
        ids = malloc((size_t)b.n * sizeof(int64_t));
        if (!ids) st = cli_fail(SM_ERR_NOMEM, "out of memory");
    }
    if (!st) warn_duplicates(cmd, g, &b, cls);
    int64_t added = 0, before = st ? 0 : sm_gallery_size(g);
    int nclasses = 0, newclasses = 0;
    if (!st && cls) {
        newclasses = sm_gallery_find_class(g, cls) < 0;
        nclasses = 1;
        st = sm_gallery_add_sourced(g, b.emb, b.n, b.d, cls, NULL, (const char *const *)b.item, ids);
        if (!st) added = b.n;
    } else if (!st) {
        /* one add per label: gather that label's rows */
        float *rows = malloc((size_t)b.n * (size_t)b.d * sizeof(float));
        const char **srcs = malloc((size_t)b.n * sizeof(char *)); /* (n) sources of those rows */
        if (!rows || !srcs) st = cli_fail(SM_ERR_NOMEM, "out of memory");
        for (int y = 0; !st && y < b.nnames; y++) {
            int64_t k = 0;
            for (int64_t i = 0; i < b.n; i++)
                if (b.labels[i] == y) {
                    srcs[k] = b.item ? b.item[i] : NULL;
                    memcpy(rows + (k++) * b.d, b.emb + i * b.d, (size_t)b.d * sizeof(float));
                }
            if (!k) continue;
            newclasses += sm_gallery_find_class(g, b.names[y]) < 0;
            nclasses++;
            st = sm_gallery_add_sourced(g, rows, k, b.d, b.names[y], NULL, srcs, ids + added);
            added += st ? 0 : k;
        }
        free(rows);
        free((void *)srcs);
    }
    if (!st) st = cli_gallery_commit(g);
    sm_lock_release(lock);
    if (st) rc = cli_report(cmd, st, NULL);
    else {
        printf("enrolled %lld %s in %d %s (%d new) into %s: %lld %s, item ids %lld..%lld\n", (long long)added,
               cli_pl(added, "item", "items"), nclasses, cli_pl(nclasses, "class", "classes"), newclasses, gpath,
               (long long)(before + added), cli_pl(before + added, "item", "items"), (long long)ids[0], (long long)ids[added - 1]);
    }
    free(ids);
    sm_gallery_free(g);
    cli_batch_free(&b);
    sm_model_free(m);
    return rc;
}

/* An enrolment time (ms since the epoch) as ISO 8601 UTC, "2026-12-01T21:14:13.123Z"; 0 if
 * unknown (t <= 0). */
static int iso_time(int64_t t, char *buf, size_t cap) {
    if (t <= 0) return 0;
    time_t sec = (time_t)(t / 1000);
    struct tm tm;
    if (!gmtime_r(&sec, &tm)) return 0;
    size_t k = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!k) return 0;
    snprintf(buf + k, cap - k, ".%03dZ", (int)(t % 1000));
    return 1;
}

/* ---- remove / compact / list ---------------------------------------------------------------- */
static int gal_remove(int argc, char **argv) {
    static const struct option opts[] = {{"gallery", 1, 0, 'g'}, {"class", 1, 0, 'c'}, {"item", 1, 0, 'i'},
                                         {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *cmd = "gallery remove", *gpath = NULL, *cls = NULL, *item = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_SHORTOPTS, opts, NULL)) != -1) {
        switch (c) {
        case 'g': gpath = optarg; break;
        case 'c': cls = optarg; break;
        case 'i': item = optarg; break;
        case 'h':
            printf("usage: simile gallery remove --gallery FILE (--class NAME | --item ID)\n"
                   "Remove a class (all its items) or one item.  Removed entries stay in the file as\n"
                   "tombstones until simile gallery compact.\n");
            return EXIT_OK;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!gpath) return cli_usage_error(cmd, "--gallery FILE is required");
    if (!cls == !item) return cli_usage_error(cmd, "give --class NAME or --item ID (one of them)");
    long long id = 0;
    if (item) {
        char *end;
        id = strtoll(item, &end, 10);
        if (end == item || *end || id < 0) return cli_usage_error(cmd, "--item: '%s' is not an item id", item);
    }
    sm_lock *lock = NULL;
    sm_gallery *g = NULL;
    int64_t removed = 1;
    sm_status st = sm_gallery_lock(&lock, gpath);
    if (!st) st = sm_gallery_open_journaled(&g, gpath);
    if (!st) st = cls ? sm_gallery_remove_class(g, cls, &removed) : sm_gallery_remove_item(g, (int64_t)id);
    if (!st) st = cli_gallery_commit(g);
    sm_lock_release(lock);
    int rc = EXIT_OK;
    if (st) rc = cli_report(cmd, st, NULL);
    else if (cls) printf("removed class '%s' (%lld %s); %lld %s left\n", cls, (long long)removed, cli_pl(removed, "item", "items"),
                         (long long)sm_gallery_size(g), cli_pl(sm_gallery_size(g), "item", "items"));
    else printf("removed item %lld; %lld %s left\n", id, (long long)sm_gallery_size(g), cli_pl(sm_gallery_size(g), "item", "items"));
    sm_gallery_free(g);
    return rc;
}

static int gal_compact(int argc, char **argv) {
    const char *cmd = "gallery compact";
    if (argc == 2 && cli_is_help(argv[1])) {
        printf("usage: simile gallery compact --gallery FILE\nDrop removed items and classes (and classes "
               "left empty) from the file.\n");
        return EXIT_OK;
    }
    if (argc != 3 || strcmp(argv[1], "--gallery")) return cli_usage_error(cmd, "usage: simile gallery compact --gallery FILE");
    const char *gpath = argv[2];
    sm_lock *lock = NULL;
    sm_gallery *g = NULL;
    sm_status st = sm_gallery_lock(&lock, gpath);
    int before = 0;
    if (!st) st = sm_gallery_open(&g, gpath); /* compact rewrites the whole file (journal included) */
    if (!st) { before = sm_gallery_num_classes(g); st = sm_gallery_compact(g); }
    if (!st) st = sm_gallery_save(g, gpath);
    sm_lock_release(lock);
    int rc = EXIT_OK;
    if (st) rc = cli_report(cmd, st, NULL);
    else printf("compacted %s: %lld %s, %d %s (%d class %s dropped)\n", gpath, (long long)sm_gallery_size(g),
                cli_pl(sm_gallery_size(g), "item", "items"), sm_gallery_num_classes(g),
                cli_pl(sm_gallery_num_classes(g), "class", "classes"), before - sm_gallery_num_classes(g),
                cli_pl(before - sm_gallery_num_classes(g), "slot", "slots"));
    sm_gallery_free(g);
    return rc;
}

static int gal_list(int argc, char **argv) {
    static const struct option opts[] = {{"gallery", 1, 0, 'g'}, {"items", 0, 0, 'i'}, {"help", 0, 0, 'h'},
                                         {"json", 0, 0, 'J'}, {0, 0, 0, 0}};
    const char *cmd = "gallery list", *gpath = NULL;
    int items = 0, json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_SHORTOPTS, opts, NULL)) != -1) {
        switch (c) {
        case 'g': gpath = optarg; break;
        case 'i': items = 1; break;
        case 'J': json = 1; cli_set_json(1); break;
        case 'h':
            printf("usage: simile gallery list --gallery FILE [--items] [--json]\n"
                   "Show the gallery's settings and its classes with their item counts (--items: every\n"
                   "item id with its class and its source: the image file, or <file>#<index> for an IDX\n"
                   "sample or a .npy row; '-' for items enrolled before sources were kept).  --json: one JSON document on stdout (docs/cli.md).\n");
            return EXIT_OK;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!gpath) return cli_usage_error(cmd, "--gallery FILE is required");
    sm_gallery *g;
    sm_status st = sm_gallery_open(&g, gpath);
    if (st) return cli_report(cmd, st, NULL);
    sm_decision_rule rule;
    float thr = sm_gallery_threshold(g, &rule);
    int live = 0, removed = 0;
    for (int i = 0; i < sm_gallery_num_classes(g); i++) {
        sm_gallery_class ci;
        sm_gallery_class_info(g, i, &ci);
        if (ci.removed) removed++; else live++;
    }
    int64_t n = sm_gallery_size(g);
    int64_t *ids = NULL;
    int32_t *cls = NULL;
    const char **srcs = NULL; /* (n) item sources, borrowed from g */
    int64_t *tms = NULL;      /* (n) enrolment times, ms since the epoch (0 unknown) */
    if (items) {
        ids = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
        cls = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
        if (!ids || !cls) { free(ids); free(cls); sm_gallery_free(g); return cli_report(cmd, SM_ERR_NOMEM, "out of memory"); }
        sm_gallery_items(g, ids, cls, NULL);
        if (!(srcs = malloc((size_t)(n ? n : 1) * sizeof(char *)))) {
            free(ids); free(cls); sm_gallery_free(g);
            return cli_report(cmd, SM_ERR_NOMEM, "out of memory");
        }
        sm_gallery_item_sources(g, srcs);
        if (!(tms = malloc((size_t)(n ? n : 1) * sizeof(int64_t)))) {
            free(ids); free(cls); free((void *)srcs); sm_gallery_free(g);
            return cli_report(cmd, SM_ERR_NOMEM, "out of memory");
        }
        sm_gallery_item_times(g, tms);
    }
    int has_thr = !(isinf(thr) && thr > 0);
    sm_gallery_calibration_info cal;
    sm_gallery_calibration(g, &cal);
    if (json) {
        cj j;
        char fp[16];
        snprintf(fp, sizeof fp, "%08x", sm_gallery_model_fingerprint(g));
        cj_init(&j, stdout);
        cj_obj(&j);
        cj_kstr(&j, "command", "gallery list");
        cj_kstr(&j, "gallery", gpath);
        cj_kint(&j, "dimension", sm_gallery_dim(g));
        cj_kstr(&j, "metric", cli_metric_name(sm_gallery_metric(g)));
        cj_kstr(&j, "model", fp);
        cj_key(&j, "threshold");
        if (has_thr) cj_numf(&j, thr); else cj_null(&j);
        cj_kstr(&j, "threshold_rule", has_thr ? cli_rule_name(rule) : NULL);
        cj_key(&j, "items_at_calibration");
        if (has_thr && cal.items_at_calibration >= 0) cj_int(&j, (long long)cal.items_at_calibration); else cj_null(&j);
        cj_kbool(&j, "changed_since_calibration", cal.changed);
        cj_kint(&j, "items", (long long)n);
        cj_kint(&j, "removed_classes", removed);
        cj_key(&j, "classes");
        cj_arr(&j);
        for (int i = 0; i < sm_gallery_num_classes(g); i++) {
            sm_gallery_class ci;
            sm_gallery_class_info(g, i, &ci);
            if (ci.removed) continue;
            cj_obj(&j);
            cj_kstr(&j, "name", ci.name);
            cj_kint(&j, "items", (long long)ci.items);
            cj_obj_end(&j);
        }
        cj_arr_end(&j);
        if (items) {
            cj_key(&j, "item_list");
            cj_arr(&j);
            for (int64_t i = 0; i < n; i++) {
                sm_gallery_class ci;
                sm_gallery_class_info(g, cls[i], &ci);
                cj_obj(&j);
                cj_kint(&j, "id", (long long)ids[i]);
                cj_kstr(&j, "class", ci.name);
                cj_kstr(&j, "source", srcs[i]);
                char when[40];
                cj_key(&j, "enrolled");
                if (iso_time(tms[i], when, sizeof when)) cj_str(&j, when); else cj_null(&j);
                cj_key(&j, "enrolled_ms");
                if (tms[i] > 0) cj_int(&j, (long long)tms[i]); else cj_null(&j);
                cj_obj_end(&j);
            }
            cj_arr_end(&j);
        }
        cj_obj_end(&j);
    } else {
        printf("gallery %s\n  dimension %d, metric %s, model %08x\n", gpath, sm_gallery_dim(g),
               cli_metric_name(sm_gallery_metric(g)), sm_gallery_model_fingerprint(g));
        if (!has_thr) printf("  threshold: none (every query is accepted)\n");
        else {
            printf("  threshold %.6g (calibrated for rule %s", (double)thr, cli_rule_name(rule));
            if (cal.items_at_calibration >= 0)
                printf(" on %lld %s", (long long)cal.items_at_calibration, cli_pl(cal.items_at_calibration, "item", "items"));
            printf(")%s\n", cal.changed ? "; the gallery has changed since: calibrate again" : "");
        }
        printf("  %lld %s in %d %s", (long long)n, cli_pl(n, "item", "items"), live, cli_pl(live, "class", "classes"));
        if (removed) printf(" (%d removed %s kept until compaction)", removed, cli_pl(removed, "class", "classes"));
        printf("\n  class                              items\n");
        for (int i = 0; i < sm_gallery_num_classes(g); i++) {
            sm_gallery_class ci;
            sm_gallery_class_info(g, i, &ci);
            if (!ci.removed) printf("  %-32s %7lld\n", ci.name, (long long)ci.items);
        }
        if (items) {
            printf("  item id   %-32s %-24s source\n", "class", "enrolled (UTC)");
            for (int64_t i = 0; i < n; i++) {
                sm_gallery_class ci;
                sm_gallery_class_info(g, cls[i], &ci);
                char when[40];
                if (!iso_time(tms[i], when, sizeof when)) snprintf(when, sizeof when, "-");
                printf("  %7lld   %-32s %-24s %s\n", (long long)ids[i], ci.name, when, *srcs[i] ? srcs[i] : "-");
            }
        }
    }
    free(ids); free(cls); free((void *)srcs); free(tms);
    sm_gallery_free(g);
    return EXIT_OK;
}

/* ---- calibrate ------------------------------------------------------------------------------ */
static int gal_calibrate(int argc, char **argv) {
    static const struct option opts[] = {{"gallery", 1, 0, 'g'}, {"model", 1, 0, 'm'}, {"far", 1, 0, 'f'},
                                         {"f1", 0, 0, '1'}, {"rule", 1, 0, 'r'}, {"dry-run", 0, 0, 'n'},
                                         {"help", 0, 0, 'h'}, {"json", 0, 0, 'J'}, CLI_INPUT_OPTIONS, {0, 0, 0, 0}};
    const char *cmd = "gallery calibrate", *gpath = NULL, *model = NULL;
    float target = 1e-2f;
    int f1 = 0, dry = 0, json = 0, c;
    sm_decision_rule rule = SM_RULE_NEAREST;
    cli_inputs in;
    cli_inputs_defaults(&in, "train");
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_SHORTOPTS, opts, NULL)) != -1) {
        int r = cli_inputs_option(cmd, &in, c, optarg);
        if (r < 0) return EXIT_USAGE;
        if (r) continue;
        switch (c) {
        case 'g': gpath = optarg; break;
        case 'm': model = optarg; break;
        case 'f': if (cli_float(cmd, "--far", optarg, 0, 1, &target)) return EXIT_USAGE; break;
        case '1': f1 = 1; break;
        case 'r': if (cli_parse_rule(optarg, &rule)) return cli_usage_error(cmd, "--rule must be nearest, vote or centroid"); break;
        case 'n': dry = 1; break;
        case 'J': json = 1; cli_set_json(1); break;
        case 'h':
            printf("usage: simile gallery calibrate --gallery FILE --model FILE [inputs] [--far X | --f1]\n"
                   "                                [--rule nearest|centroid] [--dry-run] [--json]\n"
                   "Set the open-set threshold from labelled data held out from the enrolment (e.g.\n"
                   "--skip-per-class 5 to leave out the first 5 enrolled images of each class).\n"
                   "Each input gives one genuine pair (its distance to its own class, if enrolled:\n"
                   "the nearest item, or the centroid with --rule centroid) and one impostor pair per\n"
                   "other enrolled class.  The threshold is the largest distance whose false-accept\n"
                   "rate is at most --far (default 0.01), or the one with the best F1 (--f1).  Also\n"
                   "reports ROC AUC, EER and TAR at FAR 1e-2, 1e-3, 1e-4 of these pairs (a FAR below\n"
                   "1 / impostor pairs is 'not supported'; null in JSON).  The gallery records how many\n"
                   "items the threshold was calibrated on; identify and verify warn once the gallery\n"
                   "has changed since.  --dry-run reports without storing the threshold.  --json: one JSON document on stdout.\n\n%s",
                   cli_inputs_help);
            return EXIT_OK;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    if (cli_inputs_positional(cmd, &in, argc, argv, optind)) return EXIT_USAGE;
    if (cli_inputs_require(cmd, &in)) return EXIT_USAGE;
    if (!gpath) return cli_usage_error(cmd, "--gallery FILE is required");
    if (!model && !cli_inputs_are_embeddings(&in)) return cli_usage_error(cmd, "--model FILE is required for image inputs");
    if (rule == SM_RULE_VOTE) rule = SM_RULE_NEAREST; /* votes decide by the nearest item's distance */
    sm_set_num_threads(in.threads);
    sm_model *m;
    int rc = cli_load_model(cmd, model, &m);
    if (rc) return rc;
    cli_batch b;
    sm_gallery *g = NULL;
    float *cd = NULL;
    int8_t *gen = NULL;
    float *pd = NULL, *ps = NULL;
    int32_t *qcls = NULL;
    sm_status st = cli_inputs_load(cmd, &in, m, &b);
    if (!st && !b.labels) st = cli_fail(SM_ERR_INVALID, "calibration needs labelled inputs");
    if (!st) st = cli_batch_embed(&in, m, &b);
    if (!st) st = cli_gallery_open_checked(gpath, m, &g);
    int C = st ? 0 : sm_gallery_num_classes(g);
    int64_t np = 0;
    if (!st) {
        cd = malloc((size_t)(b.n ? b.n : 1) * (size_t)(C ? C : 1) * sizeof(float));
        gen = malloc((size_t)(b.n ? b.n : 1) * (size_t)(C ? C : 1));
        pd = malloc((size_t)(b.n ? b.n : 1) * (size_t)(C ? C : 1) * sizeof(float));
        ps = malloc((size_t)(b.n ? b.n : 1) * (size_t)(C ? C : 1) * sizeof(float));
        qcls = malloc((size_t)(b.n ? b.n : 1) * sizeof(int32_t));
        if (!cd || !gen || !pd || !ps || !qcls) st = cli_fail(SM_ERR_NOMEM, "out of memory");
    }
    if (!st) st = sm_gallery_class_distances(g, b.emb, b.n, b.d, rule, cd);
    int64_t known = 0;
    if (!st) {
        for (int64_t i = 0; i < b.n; i++) {
            qcls[i] = sm_gallery_find_class(g, cli_batch_name(&b, i));
            known += qcls[i] >= 0;
            for (int k = 0; k < C; k++) {
                if (isinf(cd[i * C + k])) continue; /* removed or empty class */
                pd[np] = cd[i * C + k];
                ps[np] = -cd[i * C + k];
                gen[np] = (int8_t)(k == qcls[i]);
                np++;
            }
        }
    }
    float thr = 0;
    double tar = 0, far = 0, auc = 0, eer = 0, tars[3] = {0, 0, 0};
    if (!st) st = sm_calibrate_threshold(pd, gen, np, f1 ? SM_CALIBRATE_F1 : SM_CALIBRATE_FAR, target, &thr, &tar, &far);
    if (!st) st = sm_roc_auc(ps, gen, np, &auc);
    if (!st) st = sm_eer(ps, gen, np, &eer, NULL);
    static const double fars[3] = {1e-2, 1e-3, 1e-4};
    for (int i = 0; i < 3 && !st; i++) st = sm_tar_at_far(ps, gen, np, fars[i], &tars[i], NULL);
    if (st) {
        rc = cli_report(cmd, st, NULL);
        goto done;
    }
    int64_t gpairs = 0;
    for (int64_t i = 0; i < np; i++) gpairs += gen[i];
    FILE *out = cli_text();
    int64_t impostors = np - gpairs;
    /* a FAR below 1 / impostor pairs cannot be measured on these pairs: not reported */
    int far_ok[3];
    for (int i = 0; i < 3; i++) far_ok[i] = fars[i] * (double)impostors >= 1.0;
    int target_ok = f1 || (double)target * (double)impostors >= 1.0;
    fprintf(out, "calibration on %lld %s (%lld of enrolled classes): %lld genuine and %lld impostor %s, rule %s\n",
            (long long)b.n, cli_pl(b.n, "input", "inputs"), (long long)known, (long long)gpairs, (long long)impostors,
            cli_pl(impostors, "pair", "pairs"), cli_rule_name(rule));
    fprintf(out, "  ROC AUC %.4f, EER %.4f\n  TAR at FAR", auc, eer);
    static const char *const far_names[3] = {"1e-2", "1e-3", "1e-4"};
    for (int i = 0; i < 3; i++) {
        if (far_ok[i]) fprintf(out, "%s %s %.4f", i ? "," : "", far_names[i], tars[i]);
        else fprintf(out, "%s %s not supported (%lld impostor pairs)", i ? "," : "", far_names[i], (long long)impostors);
    }
    fputc('\n', out);
    if (!target_ok)
        fprintf(stderr, "simile %s: warning: --far %g is below 1/%lld, the smallest FAR %lld impostor pairs can show: the "
                        "threshold accepts none of them, but its FAR on new data is not known (give more held-out data)\n",
                cmd, (double)target, (long long)impostors, (long long)impostors);
    if (f1) fprintf(out, "  best-F1 threshold %.6g: TAR %.4f, FAR %.4f on these pairs\n", (double)thr, tar, far);
    else fprintf(out, "  threshold for FAR <= %g: %.6g (TAR %.4f, FAR %.4f on these pairs)\n", (double)target, (double)thr, tar, far);
    int stored = 0;
    if (!dry) {
        /* store under the lock, on the current file */
        sm_lock *lock = NULL;
        sm_gallery *cur = NULL;
        st = sm_gallery_lock(&lock, gpath);
        if (!st) st = cli_gallery_open_write(gpath, m, &cur);
        sm_gallery_calibration_info was, now;
        sm_gallery_calibration(g, &was);
        sm_gallery_calibration(cur, &now);
        if (!st && now.generation != was.generation)
            st = cli_fail(SM_ERR_INVALID, "%s changed while calibrating (items enrolled or removed): run calibrate again", gpath);
        if (!st) st = sm_gallery_set_threshold(cur, thr, rule);
        if (!st) st = cli_gallery_commit(cur);
        sm_lock_release(lock);
        sm_gallery_free(cur);
        if (st) rc = cli_report(cmd, st, NULL);
        else {
            stored = 1;
            fprintf(out, "stored threshold %.6g (rule %s) in %s\n", (double)thr, cli_rule_name(rule), gpath);
        }
    }
    if (json && !rc) {
        cj j;
        cj_init(&j, stdout);
        cj_obj(&j);
        cj_kstr(&j, "command", "gallery calibrate");
        cj_kstr(&j, "gallery", gpath);
        cj_kint(&j, "inputs", (long long)b.n);
        cj_kint(&j, "inputs_of_enrolled_classes", (long long)known);
        cj_kint(&j, "genuine_pairs", (long long)gpairs);
        cj_kint(&j, "impostor_pairs", (long long)(np - gpairs));
        cj_kstr(&j, "rule", cli_rule_name(rule));
        cj_knum(&j, "roc_auc", auc);
        cj_knum(&j, "eer", eer);
        cj_key(&j, "tar_at_far"); /* null where FAR < 1 / impostor pairs: not supported by the data */
        cj_obj(&j);
        for (int i = 0; i < 3; i++) cj_knum(&j, far_names[i], far_ok[i] ? tars[i] : NAN);
        cj_obj_end(&j);
        cj_kstr(&j, "mode", f1 ? "f1" : "far");
        if (!f1) {
            cj_knum(&j, "target_far", (double)target);
            cj_kbool(&j, "target_far_supported", target_ok);
        }
        cj_knumf(&j, "threshold", thr);
        cj_knum(&j, "tar", tar);
        cj_knum(&j, "far", far);
        cj_kbool(&j, "stored", stored);
        cj_obj_end(&j);
    }
done:
    free(cd); free(gen); free(pd); free(ps); free(qcls);
    sm_gallery_free(g);
    cli_batch_free(&b);
    sm_model_free(m);
    return rc;
}

int cmd_gallery(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "%s", help_main); return EXIT_USAGE; }
    const char *sub = argv[1];
    if (cli_is_help(sub) || !strcmp(sub, "help")) { printf("%s", help_main); return EXIT_OK; }
    if (!strcmp(sub, "create")) return gal_create(argc - 1, argv + 1);
    if (!strcmp(sub, "enrol") || !strcmp(sub, "enroll") || !strcmp(sub, "add")) return gal_enrol(argc - 1, argv + 1);
    if (!strcmp(sub, "remove")) return gal_remove(argc - 1, argv + 1);
    if (!strcmp(sub, "list")) return gal_list(argc - 1, argv + 1);
    if (!strcmp(sub, "compact")) return gal_compact(argc - 1, argv + 1);
    if (!strcmp(sub, "calibrate")) return gal_calibrate(argc - 1, argv + 1);
    return cli_usage_error("gallery", "unknown subcommand '%s'", sub);
}
