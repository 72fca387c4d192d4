/* cmd_identify.c - `simile identify` (top-k matches and an open-set decision per query, with
 * accuracy / TAR / rejection figures for labelled queries), `simile verify` (two images, or an
 * image and an enrolled class: same or different), `simile classify` (a softmax model's top-k
 * classes) and `simile embed` (inputs -> embeddings and labels as .npy). */
#include "cli_gallery.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- identify ------------------------------------------------------------------------------- */
static const char *identify_help =
    "usage: simile identify --gallery FILE --model FILE [inputs] [options]\n"
    "Identify each query among the gallery's classes: the top-k nearest items, and a decision\n"
    "by the nearest item, a k-NN vote or the nearest class centroid, with open-set rejection:\n"
    "a query farther than the threshold from every class is 'unknown'.\n"
    "For labelled queries (IDX, folder, .npy with labels) prints: closed-set accuracy on the\n"
    "queries of enrolled classes, their TAR (accepted with the right class), and the\n"
    "rejection rate of queries of classes that are not enrolled.\n\n"
    "  --gallery FILE    gallery (required)\n"
    "  --model FILE      the gallery's model (required for image inputs)\n"
    "  --rule R          nearest (default), vote or centroid\n"
    "  --k K             neighbours for --rule vote (default 5)\n"
    "  --top N           matches shown per query (default 3)\n"
    "  --threshold T     override the gallery's threshold; --no-threshold: closed set\n"
    "  --show N          print the first N queries (default: all image files, none otherwise)\n\n";

int cmd_identify(int argc, char **argv) {
    static const struct option opts[] = {{"gallery", 1, 0, 'g'}, {"model", 1, 0, 'm'}, {"rule", 1, 0, 'r'},
                                         {"k", 1, 0, 'k'}, {"top", 1, 0, 't'}, {"threshold", 1, 0, 'T'},
                                         {"no-threshold", 0, 0, 'N'}, {"show", 1, 0, 's'}, {"help", 0, 0, 'h'},
                                         CLI_INPUT_OPTIONS, {0, 0, 0, 0}};
    const char *cmd = "identify", *gpath = NULL, *model = NULL;
    sm_decision_rule rule = SM_RULE_NEAREST;
    int k = 5, top = 3, show = -1, set_thr = 0, no_thr = 0, c;
    float thr = 0;
    cli_inputs in;
    cli_inputs_defaults(&in, "test");
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_SHORTOPTS, opts, NULL)) != -1) {
        int r = cli_inputs_option(cmd, &in, c, optarg);
        if (r < 0) return EXIT_USAGE;
        if (r) continue;
        switch (c) {
        case 'g': gpath = optarg; break;
        case 'm': model = optarg; break;
        case 'r': if (cli_parse_rule(optarg, &rule)) return cli_usage_error(cmd, "--rule must be nearest, vote or centroid"); break;
        case 'k': if (cli_int(cmd, "--k", optarg, 1, 100000, &k)) return EXIT_USAGE; break;
        case 't': if (cli_int(cmd, "--top", optarg, 1, 100000, &top)) return EXIT_USAGE; break;
        case 'T': if (cli_float(cmd, "--threshold", optarg, -1e30, 1e30, &thr)) return EXIT_USAGE; set_thr = 1; break;
        case 'N': no_thr = 1; break;
        case 's': if (cli_int(cmd, "--show", optarg, 0, 1 << 30, &show)) return EXIT_USAGE; break;
        case 'h': printf("%s%s", identify_help, cli_inputs_help); return EXIT_OK;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    if (cli_inputs_positional(cmd, &in, argc, argv, optind)) return EXIT_USAGE;
    if (!gpath) return cli_usage_error(cmd, "--gallery FILE is required");
    if (!model && !cli_inputs_are_embeddings(&in)) return cli_usage_error(cmd, "--model FILE is required for image inputs");
    if (set_thr && no_thr) return cli_usage_error(cmd, "--threshold and --no-threshold exclude each other");
    if (show < 0) show = in.nimages > 0 ? in.nimages : 0;
    sm_set_num_threads(in.threads);
    sm_model *m;
    int rc = cli_load_model(cmd, model, &m);
    if (rc) return rc;
    cli_batch b;
    sm_gallery *g = NULL;
    sm_gallery_match *mt = NULL;
    sm_gallery_decision *dec = NULL;
    sm_status st = cli_gallery_open_checked(gpath, m, &g);
    if (!st) st = cli_inputs_load(cmd, &in, m, &b);
    else memset(&b, 0, sizeof b);
    double t0 = now_s();
    if (!st) st = cli_batch_embed(&in, m, &b);
    double t_embed = now_s() - t0;
    if (!st && b.d != sm_gallery_dim(g))
        st = cli_fail(SM_ERR_MISMATCH, "the queries have dimension %d, the gallery %s holds dimension %d", b.d, gpath, sm_gallery_dim(g));
    sm_decision_rule cal_rule;
    float gthr = g ? sm_gallery_threshold(g, &cal_rule) : INFINITY;
    if (!st && (set_thr || no_thr)) st = sm_gallery_set_threshold(g, no_thr ? INFINITY : thr, rule);
    else if (!st && !isinf(gthr) && cal_rule != rule && !(cal_rule == SM_RULE_NEAREST && rule == SM_RULE_VOTE))
        fprintf(stderr, "simile identify: note: the gallery's threshold was calibrated for rule %s, not %s\n",
                cli_rule_name(cal_rule), cli_rule_name(rule));
    int shown_top = top;
    if (!st) {
        mt = malloc((size_t)(show ? show : 1) * (size_t)top * sizeof *mt);
        dec = malloc((size_t)(b.n ? b.n : 1) * sizeof *dec);
        if (!mt || !dec) st = cli_fail(SM_ERR_NOMEM, "out of memory");
    }
    t0 = now_s();
    if (!st && b.n) st = sm_gallery_decide(g, b.emb, b.n, b.d, rule, k, dec);
    double t_decide = now_s() - t0;
    int64_t nshow = show < b.n ? show : b.n;
    if (!st && nshow) st = sm_gallery_search(g, b.emb, nshow, b.d, top, mt);
    if (st) {
        rc = cli_report(cmd, st, NULL);
        goto done;
    }
    float used = sm_gallery_threshold(g, NULL);
    for (int64_t i = 0; i < nshow; i++) {
        const char *truth = cli_batch_name(&b, i);
        printf("%s%s%s%s: %s (distance %.4f", b.item ? b.item[i] : "", *truth ? " [" : "", truth, *truth ? "]" : "",
               dec[i].class_name ? dec[i].class_name : "unknown", (double)dec[i].distance);
        if (rule == SM_RULE_VOTE) printf(", votes %.2f", (double)dec[i].votes);
        printf(")  top:");
        for (int j = 0; j < shown_top; j++) {
            const sm_gallery_match *x = &mt[i * top + j];
            if (x->class_index < 0) break;
            printf(" %s/%lld %.4f", x->class_name, (long long)x->item_id, (double)x->distance);
        }
        printf("\n");
    }
    printf("%lld %s, gallery %lld %s in %d %s, rule %s%s, threshold %s", (long long)b.n, cli_pl(b.n, "query", "queries"),
           (long long)sm_gallery_size(g), cli_pl(sm_gallery_size(g), "item", "items"), sm_gallery_num_classes(g),
           cli_pl(sm_gallery_num_classes(g), "class", "classes"), cli_rule_name(rule), rule == SM_RULE_VOTE ? " (k-NN)" : "",
           isinf(used) && used > 0 ? "none" : "");
    if (!(isinf(used) && used > 0)) printf("%.6g", (double)used);
    printf("\n");
    if (b.labels) {
        int64_t nk = 0, nu = 0, correct = 0, accepted_ok = 0, accepted_wrong = 0, rejected_known = 0, rejected_unknown = 0;
        for (int64_t i = 0; i < b.n; i++) {
            int truth = sm_gallery_find_class(g, cli_batch_name(&b, i));
            if (truth >= 0) {
                nk++;
                correct += dec[i].best_class == truth;
                if (dec[i].class_index < 0) rejected_known++;
                else if (dec[i].class_index == truth) accepted_ok++;
                else accepted_wrong++;
            } else {
                nu++;
                rejected_unknown += dec[i].class_index < 0;
            }
        }
        if (nk) {
            printf("enrolled-class queries: %lld\n", (long long)nk);
            printf("  closed-set accuracy (%s) %.4f\n", cli_rule_name(rule), (double)correct / (double)nk);
            printf("  TAR (accepted, right class) %.4f, accepted with a wrong class %.4f, rejected %.4f\n",
                   (double)accepted_ok / (double)nk, (double)accepted_wrong / (double)nk, (double)rejected_known / (double)nk);
        }
        if (nu) printf("queries of classes not enrolled: %lld, rejection rate %.4f\n", (long long)nu, (double)rejected_unknown / (double)nu);
    }
    fprintf(stderr, "embedding %.2f s, decisions %.3f s\n", t_embed, t_decide);
done:
    free(mt); free(dec);
    sm_gallery_free(g);
    cli_batch_free(&b);
    sm_model_free(m);
    return rc;
}

/* ---- verify --------------------------------------------------------------------------------- */
int cmd_verify(int argc, char **argv) {
    static const struct option opts[] = {{"model", 1, 0, 'm'}, {"gallery", 1, 0, 'g'}, {"class", 1, 0, 'c'},
                                         {"threshold", 1, 0, 'T'}, {"rule", 1, 0, 'r'}, {"metric", 1, 0, 'k'},
                                         {"mean", 1, 0, 1005}, {"std", 1, 0, 1006}, {"no-normalize", 0, 0, 1007},
                                         {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *cmd = "verify", *model = NULL, *gpath = NULL, *cls = NULL;
    float thr = 0;
    int set_thr = 0, c;
    sm_decision_rule rule = SM_RULE_NEAREST;
    int rule_set = 0;
    sm_metric metric = SM_METRIC_L2;
    cli_inputs in;
    cli_inputs_defaults(&in, "test");
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_SHORTOPTS, opts, NULL)) != -1) {
        int r = cli_inputs_option(cmd, &in, c, optarg);
        if (r < 0) return EXIT_USAGE;
        if (r) continue;
        switch (c) {
        case 'm': model = optarg; break;
        case 'g': gpath = optarg; break;
        case 'c': cls = optarg; break;
        case 'T': if (cli_float(cmd, "--threshold", optarg, -1e30, 1e30, &thr)) return EXIT_USAGE; set_thr = 1; break;
        case 'r': if (cli_parse_rule(optarg, &rule) || rule == SM_RULE_VOTE) return cli_usage_error(cmd, "--rule must be nearest or centroid"); rule_set = 1; break;
        case 'k':
            if (cli_parse_metric(optarg, &metric)) return cli_usage_error(cmd, "--metric must be l2, cosine or ip");
            break;
        case 'h':
            printf("usage: simile verify --model FILE IMAGE_A IMAGE_B [--gallery FILE | --threshold T]\n"
                   "       simile verify --model FILE IMAGE --gallery FILE --class NAME [--rule R]\n"
                   "Decide whether two images show the same class, or whether an image belongs to an\n"
                   "enrolled class: 'same' when the distance of their L2-normalised embeddings is at\n"
                   "most the threshold (--threshold, else the gallery's calibrated one).  The distance\n"
                   "is the gallery's (or --metric l2|cosine|ip, default l2).  With --class it is the\n"
                   "distance to the class's nearest item (--rule nearest, default) or its centroid.\n"
                   "Prints the decision and the distance; exit status 0 either way.\n"
                   "  --mean X --std Y, --no-normalize   image normalisation as for training\n");
            return EXIT_OK;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    if (cli_inputs_positional(cmd, &in, argc, argv, optind)) return EXIT_USAGE;
    if (!model) return cli_usage_error(cmd, "--model FILE is required");
    if (cls && !gpath) return cli_usage_error(cmd, "--class needs --gallery");
    if (in.nimages != (cls ? 1 : 2))
        return cli_usage_error(cmd, cls ? "give one image to check against --class" : "give two images");
    if (!set_thr && !gpath) return cli_usage_error(cmd, "give --threshold T or a calibrated --gallery FILE");
    sm_model *m;
    int rc = cli_load_model(cmd, model, &m);
    if (rc) return rc;
    cli_batch b;
    memset(&b, 0, sizeof b);
    sm_gallery *g = NULL;
    sm_status st = SM_OK;
    if (gpath) {
        st = cli_gallery_open_checked(gpath, m, &g);
    }
    if (!st) st = cli_inputs_load(cmd, &in, m, &b);
    if (!st) st = cli_batch_embed(&in, m, &b);
    float dist = 0;
    if (!st && g) {
        sm_decision_rule cal_rule;
        float gthr = sm_gallery_threshold(g, &cal_rule);
        if (!set_thr) {
            if (isinf(gthr)) st = cli_fail(SM_ERR_INVALID, "%s has no calibrated threshold: run simile gallery calibrate or give --threshold", gpath);
            thr = gthr;
            if (!rule_set && cal_rule == SM_RULE_CENTROID) rule = SM_RULE_CENTROID;
        }
        metric = sm_gallery_metric(g);
    }
    if (!st && cls) {
        int k = sm_gallery_find_class(g, cls);
        if (k < 0) st = cli_fail(SM_ERR_NOTFOUND, "no class '%s' in %s", cls, gpath);
        float *cd = NULL;
        if (!st && !(cd = malloc((size_t)sm_gallery_num_classes(g) * sizeof(float)))) st = cli_fail(SM_ERR_NOMEM, "out of memory");
        if (!st) st = sm_gallery_class_distances(g, b.emb, 1, b.d, rule, cd);
        if (!st) dist = cd[k];
        free(cd);
    } else if (!st) {
        dist = sm_vector_distance(b.emb, b.emb + b.d, b.d, metric);
    }
    if (st) rc = cli_report(cmd, st, NULL);
    else if (cls)
        printf("%s: %s class '%s' (distance %.4f %s threshold %.4f, %s)\n", b.item[0], dist <= thr ? "same as" : "different from", cls,
               (double)dist, dist <= thr ? "<=" : ">", (double)thr, cli_rule_name(rule));
    else
        printf("%s (distance %.4f %s threshold %.4f, metric %s)\n", dist <= thr ? "same" : "different", (double)dist,
               dist <= thr ? "<=" : ">", (double)thr, cli_metric_name(metric));
    sm_gallery_free(g);
    cli_batch_free(&b);
    sm_model_free(m);
    return rc;
}

/* ---- classify ------------------------------------------------------------------------------- */
int cmd_classify(int argc, char **argv) {
    static const struct option opts[] = {{"model", 1, 0, 'm'}, {"top", 1, 0, 't'}, {"show", 1, 0, 's'},
                                         {"help", 0, 0, 'h'}, CLI_INPUT_OPTIONS, {0, 0, 0, 0}};
    const char *cmd = "classify", *model = NULL;
    int top = 3, show = -1, c;
    cli_inputs in;
    cli_inputs_defaults(&in, "test");
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_SHORTOPTS, opts, NULL)) != -1) {
        int r = cli_inputs_option(cmd, &in, c, optarg);
        if (r < 0) return EXIT_USAGE;
        if (r) continue;
        switch (c) {
        case 'm': model = optarg; break;
        case 't': if (cli_int(cmd, "--top", optarg, 1, 1 << 20, &top)) return EXIT_USAGE; break;
        case 's': if (cli_int(cmd, "--show", optarg, 0, 1 << 30, &show)) return EXIT_USAGE; break;
        case 'h':
            printf("usage: simile classify --model FILE [inputs] [--top K] [--show N]\n"
                   "Top-K classes with softmax probabilities from a model trained with a classifier\n"
                   "head (softmax or focal loss).  Labelled inputs also report top-1 and top-K accuracy.\n"
                   "--show N prints the first N inputs (default: all image files, none otherwise).\n\n%s",
                   cli_inputs_help);
            return EXIT_OK;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    if (cli_inputs_positional(cmd, &in, argc, argv, optind)) return EXIT_USAGE;
    if (!model) return cli_usage_error(cmd, "--model FILE is required");
    if (in.npy) return cli_usage_error(cmd, "classify takes images, not embeddings");
    if (show < 0) show = in.nimages;
    sm_set_num_threads(in.threads);
    sm_model *m;
    int rc = cli_load_model(cmd, model, &m);
    if (rc) return rc;
    int C = sm_model_num_classes(m);
    if (C <= 0) {
        sm_model_free(m);
        return cli_report(cmd, SM_ERR_UNSUPPORTED, "the model has no classifier head (train it with --loss softmax)");
    }
    if (top > C) top = C;
    cli_batch b;
    float *z = NULL;
    sm_status st = cli_inputs_load(cmd, &in, m, &b);
    if (!st && !(z = malloc((size_t)(b.n ? b.n : 1) * (size_t)C * sizeof(float)))) st = cli_fail(SM_ERR_NOMEM, "out of memory");
    if (!st && b.n && (st = sm_model_logits(m, sm_dataset_images(b.ds), b.n, z))) cli_fail(st, "%s", sm_model_errmsg(m));
    if (st) { rc = cli_report(cmd, st, NULL); goto done; }
    int64_t c1 = 0, ck = 0;
    int *idx = malloc((size_t)C * sizeof(int));
    for (int64_t i = 0; i < b.n && idx; i++) {
        float *zi = z + i * C, mx = zi[0];
        for (int j = 1; j < C; j++) if (zi[j] > mx) mx = zi[j];
        double s = 0;
        for (int j = 0; j < C; j++) s += exp((double)(zi[j] - mx));
        for (int j = 0; j < C; j++) { zi[j] = (float)(exp((double)(zi[j] - mx)) / s); idx[j] = j; }
        for (int a = 0; a < top; a++) /* partial selection sort: top classes first */
            for (int t = a + 1; t < C; t++)
                if (zi[idx[t]] > zi[idx[a]]) { int tmp = idx[a]; idx[a] = idx[t]; idx[t] = tmp; }
        if (b.labels) {
            c1 += idx[0] == b.labels[i];
            for (int a = 0; a < top; a++) ck += idx[a] == b.labels[i];
        }
        if (i < show) {
            printf("%s:", b.item ? b.item[i] : "");
            for (int a = 0; a < top; a++) printf(" %d %.4f", idx[a], (double)zi[idx[a]]);
            printf("\n");
        }
    }
    free(idx);
    if (b.labels && b.n)
        printf("%lld inputs: top-1 accuracy %.4f, top-%d accuracy %.4f\n", (long long)b.n, (double)c1 / (double)b.n, top,
               (double)ck / (double)b.n);
done:
    free(z);
    cli_batch_free(&b);
    sm_model_free(m);
    return rc;
}

/* ---- embed ---------------------------------------------------------------------------------- */
int cmd_embed(int argc, char **argv) {
    static const struct option opts[] = {{"model", 1, 0, 'm'}, {"out", 1, 0, 'o'}, {"labels-out", 1, 0, 'l'},
                                         {"help", 0, 0, 'h'}, CLI_INPUT_OPTIONS, {0, 0, 0, 0}};
    const char *cmd = "embed", *model = NULL, *out = NULL, *lout = NULL;
    int c;
    cli_inputs in;
    cli_inputs_defaults(&in, "test");
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_SHORTOPTS, opts, NULL)) != -1) {
        int r = cli_inputs_option(cmd, &in, c, optarg);
        if (r < 0) return EXIT_USAGE;
        if (r) continue;
        switch (c) {
        case 'm': model = optarg; break;
        case 'o': out = optarg; break;
        case 'l': lout = optarg; break;
        case 'h':
            printf("usage: simile embed --model FILE [inputs] --out EMB.npy [--labels-out LAB.npy]\n"
                   "Embed the inputs (batched, on all threads) and write the L2-normalised embeddings\n"
                   "(n, d) float32 (--raw: as the model outputs them) and the labels (n) int32 as\n"
                   "NumPy .npy files.\n\n%s", cli_inputs_help);
            return EXIT_OK;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    if (cli_inputs_positional(cmd, &in, argc, argv, optind)) return EXIT_USAGE;
    if (!model) return cli_usage_error(cmd, "--model FILE is required");
    if (!out) return cli_usage_error(cmd, "--out FILE is required");
    if (in.npy) return cli_usage_error(cmd, "embed takes images, not embeddings");
    sm_set_num_threads(in.threads);
    sm_model *m;
    int rc = cli_load_model(cmd, model, &m);
    if (rc) return rc;
    cli_batch b;
    sm_status st = cli_inputs_load(cmd, &in, m, &b);
    if (!st && lout && !b.labels) st = cli_fail(SM_ERR_INVALID, "--labels-out: the inputs have no labels");
    double t0 = now_s();
    if (!st) st = cli_batch_embed(&in, m, &b);
    double t = now_s() - t0;
    int64_t shape[2] = {b.n, b.d};
    if (!st) st = sm_npy_write(out, SM_NPY_F32, b.emb ? (const void *)b.emb : (const void *)"", shape, 2);
    if (!st && lout) st = sm_npy_write(lout, SM_NPY_I32, b.labels, shape, 1);
    if (st) rc = cli_report(cmd, st, NULL);
    else printf("embedded %lld %s to %s (%lld x %d)%s%s in %.2f s (%.0f images/s)\n", (long long)b.n, cli_pl(b.n, "input", "inputs"), out, (long long)b.n, b.d,
                lout ? ", labels to " : "", lout ? lout : "", t, t > 0 ? (double)b.n / t : 0.0);
    cli_batch_free(&b);
    sm_model_free(m);
    return rc;
}
