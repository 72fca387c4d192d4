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
    "  --show N          print the first N queries (default: all image files, none otherwise;\n"
    "                    with --json every query's decision, and the top matches of N)\n"
    "  --json            one JSON document on stdout (docs/cli.md); messages on stderr\n\n";

int cmd_identify(int argc, char **argv) {
    static const struct option opts[] = {{"gallery", 1, 0, 'g'}, {"model", 1, 0, 'm'}, {"rule", 1, 0, 'r'},
                                         {"k", 1, 0, 'k'}, {"top", 1, 0, 't'}, {"threshold", 1, 0, 'T'},
                                         {"no-threshold", 0, 0, 'N'}, {"show", 1, 0, 's'}, {"help", 0, 0, 'h'},
                                         {"json", 0, 0, 'J'}, CLI_INPUT_OPTIONS, {0, 0, 0, 0}};
    const char *cmd = "identify", *gpath = NULL, *model = NULL;
    sm_decision_rule rule = SM_RULE_NEAREST;
    int k = 5, top = 3, show = -1, set_thr = 0, no_thr = 0, json = 0, c;
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
        case 'J': json = 1; cli_set_json(1); break;
        case 'h': printf("%s%s", identify_help, cli_inputs_help); return EXIT_OK;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    if (cli_inputs_positional(cmd, &in, argc, argv, optind)) return EXIT_USAGE;
    if (cli_inputs_require(cmd, &in)) return EXIT_USAGE;
    if (!gpath) return cli_usage_error(cmd, "--gallery FILE is required");
    if (!model && !cli_inputs_are_embeddings(&in)) return cli_usage_error(cmd, "--model FILE is required for image inputs");
    if (set_thr && no_thr) return cli_usage_error(cmd, "--threshold and --no-threshold exclude each other");
    if (show < 0) show = json ? (1 << 30) : in.nimages > 0 ? in.nimages : 0;
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
    if (!st && !set_thr && !no_thr) cli_gallery_warn_changed(cmd, gpath, g);
    if (!st && (set_thr || no_thr)) st = sm_gallery_set_threshold(g, no_thr ? INFINITY : thr, rule);
    else if (!st && !isinf(gthr) && cal_rule != rule && !(cal_rule == SM_RULE_NEAREST && rule == SM_RULE_VOTE))
        fprintf(stderr, "simile identify: note: the gallery's threshold was calibrated for rule %s, not %s\n",
                cli_rule_name(cal_rule), cli_rule_name(rule));
    int shown_top = top;
    if (!st) {
        int64_t ns = show < b.n ? show : b.n;
        mt = malloc((size_t)(ns ? ns : 1) * (size_t)top * sizeof *mt);
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
    int has_thr = !(isinf(used) && used > 0);
    int64_t nk = 0, nu = 0, correct = 0, accepted_ok = 0, accepted_wrong = 0, rejected_known = 0, rejected_unknown = 0;
    if (b.labels)
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
    if (json) {
        cj j;
        cj_init(&j, stdout);
        cj_obj(&j);
        cj_kstr(&j, "command", "identify");
        cj_kstr(&j, "gallery", gpath);
        cj_kint(&j, "gallery_items", (long long)sm_gallery_size(g));
        cj_kint(&j, "gallery_classes", sm_gallery_num_classes(g));
        cj_kstr(&j, "rule", cli_rule_name(rule));
        if (rule == SM_RULE_VOTE) cj_kint(&j, "k", k);
        cj_key(&j, "threshold");
        if (has_thr) cj_numf(&j, used); else cj_null(&j);
        cj_kint(&j, "num_queries", (long long)b.n);
        cj_key(&j, "queries");
        cj_arr(&j);
        for (int64_t i = 0; i < b.n; i++) {
            const char *truth = cli_batch_name(&b, i);
            cj_obj(&j);
            cj_kstr(&j, "input", b.item ? b.item[i] : "");
            cj_kstr(&j, "truth", b.labels ? truth : NULL);
            cj_kstr(&j, "decision", dec[i].class_name);
            cj_kbool(&j, "unknown", dec[i].class_index < 0);
            cj_key(&j, "best_class");
            if (dec[i].best_class >= 0) {
                sm_gallery_class ci;
                sm_gallery_class_info(g, dec[i].best_class, &ci);
                cj_str(&j, ci.name);
            } else cj_null(&j);
            cj_knumf(&j, "distance", dec[i].distance);
            if (rule == SM_RULE_VOTE) cj_knumf(&j, "votes", dec[i].votes);
            if (i < nshow) {
                cj_key(&j, "top");
                cj_arr(&j);
                for (int t = 0; t < shown_top; t++) {
                    const sm_gallery_match *x = &mt[i * top + t];
                    if (x->class_index < 0) break;
                    cj_obj(&j);
                    cj_kstr(&j, "class", x->class_name);
                    cj_kint(&j, "item_id", (long long)x->item_id);
                    cj_knumf(&j, "distance", x->distance);
                    cj_obj_end(&j);
                }
                cj_arr_end(&j);
            }
            cj_obj_end(&j);
        }
        cj_arr_end(&j);
        if (b.labels) {
            cj_key(&j, "summary");
            cj_obj(&j);
            cj_kint(&j, "enrolled_class_queries", (long long)nk);
            cj_knum(&j, "closed_set_accuracy", nk ? (double)correct / (double)nk : NAN);
            cj_knum(&j, "tar", nk ? (double)accepted_ok / (double)nk : NAN);
            cj_knum(&j, "accepted_wrong_class", nk ? (double)accepted_wrong / (double)nk : NAN);
            cj_knum(&j, "rejected", nk ? (double)rejected_known / (double)nk : NAN);
            cj_kint(&j, "unenrolled_class_queries", (long long)nu);
            cj_knum(&j, "rejection_rate", nu ? (double)rejected_unknown / (double)nu : NAN);
            cj_obj_end(&j);
        }
        cj_obj_end(&j);
    } else {
        for (int64_t i = 0; i < nshow; i++) {
            const char *truth = cli_batch_name(&b, i);
            printf("%s%s%s%s: %s (distance %.4f", b.item ? b.item[i] : "", *truth ? " [" : "", truth, *truth ? "]" : "",
                   dec[i].class_name ? dec[i].class_name : "unknown", (double)dec[i].distance);
            if (rule == SM_RULE_VOTE) printf(", votes %.2f", (double)dec[i].votes);
            printf(")  top:");
            for (int t = 0; t < shown_top; t++) {
                const sm_gallery_match *x = &mt[i * top + t];
                if (x->class_index < 0) break;
                printf(" %s/%lld %.4f", x->class_name, (long long)x->item_id, (double)x->distance);
            }
            printf("\n");
        }
        printf("%lld %s, gallery %lld %s in %d %s, rule %s%s, threshold %s", (long long)b.n,
               cli_pl(b.n, "query", "queries"), (long long)sm_gallery_size(g), cli_pl(sm_gallery_size(g), "item", "items"),
               sm_gallery_num_classes(g), cli_pl(sm_gallery_num_classes(g), "class", "classes"), cli_rule_name(rule),
               rule == SM_RULE_VOTE ? " (k-NN)" : "", has_thr ? "" : "none");
        if (has_thr) printf("%.6g", (double)used);
        printf("\n");
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
static const char *verify_help =
    "usage: simile verify --model FILE IMAGE_A IMAGE_B [--threshold T] [--gallery FILE | --metric M]\n"
    "       simile verify --model FILE IMAGE --gallery FILE --class NAME [--rule R] [--threshold T]\n"
    "Compare two images, or an image with an enrolled class, by the distance of their\n"
    "L2-normalised embeddings (smaller = closer), which is always printed.  A decision is\n"
    "given only when a threshold applies: 'same' when the distance is at most the threshold.\n"
    "  two images: only --threshold T applies.  A gallery's threshold is calibrated for\n"
    "              identification (the distance to the nearest of a class's several items, or\n"
    "              to its centroid), not for a single pair, so it is not used; --gallery then\n"
    "              only gives the metric (and checks the model).\n"
    "  --class:    the distance to the class's nearest item (--rule nearest, default) or its\n"
    "              centroid (--rule centroid); --threshold T, else the gallery's calibrated\n"
    "              threshold when it was calibrated for that rule.\n"
    "The distance is the gallery's metric, else --metric l2 (default), cosine or ip.\n"
    "Exit status: 0 'same' (or no threshold: only the distance), 10 'different',\n"
    "1-4 errors as for every command.\n"
    "  --json            one JSON document on stdout (docs/cli.md)\n"
    "  --mean X --std Y, --no-normalize   image normalisation as for training\n";

int cmd_verify(int argc, char **argv) {
    static const struct option opts[] = {{"model", 1, 0, 'm'}, {"gallery", 1, 0, 'g'}, {"class", 1, 0, 'c'},
                                         {"threshold", 1, 0, 'T'}, {"rule", 1, 0, 'r'}, {"metric", 1, 0, 'k'},
                                         {"mean", 1, 0, 1005}, {"std", 1, 0, 1006}, {"no-normalize", 0, 0, 1007},
                                         {"help", 0, 0, 'h'}, {"json", 0, 0, 'J'}, {0, 0, 0, 0}};
    const char *cmd = "verify", *model = NULL, *gpath = NULL, *cls = NULL;
    float thr = 0;
    int set_thr = 0, json = 0, c;
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
        case 'J': json = 1; cli_set_json(1); break;
        case 'h': printf("%s", verify_help); return EXIT_OK;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    if (cli_inputs_positional(cmd, &in, argc, argv, optind)) return EXIT_USAGE;
    if (!model) return cli_usage_error(cmd, "--model FILE is required");
    if (cls && !gpath) return cli_usage_error(cmd, "--class needs --gallery");
    if (in.nimages != (cls ? 1 : 2))
        return cli_usage_error(cmd, cls ? "give one image to check against --class" : "give two images");
    sm_model *m;
    int rc = cli_load_model(cmd, model, &m);
    if (rc) return rc;
    cli_batch b;
    memset(&b, 0, sizeof b);
    sm_gallery *g = NULL;
    sm_status st = SM_OK;
    if (gpath) st = cli_gallery_open_checked(gpath, m, &g);
    if (!st) st = cli_inputs_load(cmd, &in, m, &b);
    if (!st) st = cli_batch_embed(&in, m, &b);
    float dist = 0;
    const char *thr_source = set_thr ? "--threshold" : NULL;
    if (!st && g) {
        sm_decision_rule cal_rule;
        float gthr = sm_gallery_threshold(g, &cal_rule);
        int calibrated = !(isinf(gthr) && gthr > 0);
        if (cls && !rule_set && calibrated && cal_rule == SM_RULE_CENTROID) rule = SM_RULE_CENTROID;
        if (!set_thr && calibrated) {
            if (!cls)
                fprintf(stderr, "simile verify: note: %s's threshold %.6g was calibrated for identification (nearest of a "
                                "class's items), not for a single pair; it is not used: give --threshold T for a decision\n",
                        gpath, (double)gthr);
            else if (cal_rule == rule || (cal_rule == SM_RULE_VOTE && rule == SM_RULE_NEAREST)) {
                thr = gthr;
                thr_source = "gallery";
                cli_gallery_warn_changed(cmd, gpath, g);
            } else
                fprintf(stderr, "simile verify: note: %s's threshold was calibrated for rule %s, not %s; it is not used: "
                                "give --threshold T for a decision\n", gpath, cli_rule_name(cal_rule), cli_rule_name(rule));
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
        if (dist != dist) st = cli_fail(SM_ERR_NUMERIC, "the distance is NaN");
    }
    if (st) {
        rc = cli_report(cmd, st, NULL);
        goto done;
    }
    int decided = thr_source != NULL, same = decided && dist <= thr;
    const char *decision = !decided ? NULL : same ? "same" : "different";
    if (json) {
        cj j;
        cj_init(&j, stdout);
        cj_obj(&j);
        cj_kstr(&j, "command", "verify");
        cj_kstr(&j, "mode", cls ? "class" : "pair");
        cj_key(&j, "inputs");
        cj_arr(&j);
        for (int64_t i = 0; i < b.n; i++) cj_str(&j, b.item[i]);
        cj_arr_end(&j);
        if (cls) {
            cj_kstr(&j, "class", cls);
            cj_kstr(&j, "rule", cli_rule_name(rule));
        }
        cj_kstr(&j, "metric", cli_metric_name(metric));
        cj_knumf(&j, "distance", dist);
        cj_key(&j, "threshold");
        if (decided) cj_numf(&j, thr); else cj_null(&j);
        cj_kstr(&j, "threshold_source", thr_source);
        cj_kstr(&j, "decision", decision);
        cj_obj_end(&j);
    } else if (cls) {
        if (decided)
            printf("%s: %s class '%s' (distance %.4f %s threshold %.4f from %s, %s)\n", b.item[0], same ? "same as" : "different from",
                   cls, (double)dist, same ? "<=" : ">", (double)thr, thr_source, cli_rule_name(rule));
        else
            printf("%s: distance %.4f to class '%s' (%s; no threshold applies: give --threshold T for a decision)\n", b.item[0],
                   (double)dist, cls, cli_rule_name(rule));
    } else if (decided)
        printf("%s (distance %.4f %s threshold %.4f, metric %s)\n", decision, (double)dist, same ? "<=" : ">", (double)thr,
               cli_metric_name(metric));
    else
        printf("distance %.4f (metric %s; no threshold: give --threshold T for a decision)\n", (double)dist, cli_metric_name(metric));
    rc = decided && !same ? EXIT_DIFFERENT : EXIT_OK;
done:
    sm_gallery_free(g);
    cli_batch_free(&b);
    sm_model_free(m);
    return rc;
}

/* ---- classify ------------------------------------------------------------------------------- */
int cmd_classify(int argc, char **argv) {
    static const struct option opts[] = {{"model", 1, 0, 'm'}, {"top", 1, 0, 't'}, {"show", 1, 0, 's'},
                                         {"help", 0, 0, 'h'}, {"json", 0, 0, 'J'}, CLI_INPUT_OPTIONS, {0, 0, 0, 0}};
    const char *cmd = "classify", *model = NULL;
    int top = 3, show = -1, json = 0, c;
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
        case 'J': json = 1; cli_set_json(1); break;
        case 'h':
            printf("usage: simile classify --model FILE [inputs] [--top K] [--show N] [--json]\n"
                   "Top-K classes with softmax probabilities from a model trained with a classifier\n"
                   "head (softmax or focal loss).  Inputs whose class names are the model's class\n"
                   "numbers (IDX labels, or a folder of sub-folders named 0, 1, ...) also report top-1\n"
                   "and top-K accuracy; other folder names are not compared (a note says so).\n"
                   "--show N prints the first N inputs (default: all image files, none otherwise;\n"
                   "all with --json, which writes one JSON document on stdout: docs/cli.md).\n\n%s",
                   cli_inputs_help);
            return EXIT_OK;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    if (cli_inputs_positional(cmd, &in, argc, argv, optind)) return EXIT_USAGE;
    if (cli_inputs_require(cmd, &in)) return EXIT_USAGE;
    if (!model) return cli_usage_error(cmd, "--model FILE is required");
    if (in.npy) return cli_usage_error(cmd, "classify takes images, not embeddings");
    if (show < 0) show = json ? (1 << 30) : in.nimages;
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
    /* The model's classes are the label numbers it was trained on.  An input's class is known
     * only if its class name is such a number (IDX labels; a folder named 0, 1, ...): folder
     * names are numbered alphabetically, which says nothing about the model's numbering. */
    int scored = b.labels != NULL && b.n > 0;
    int32_t *truth = scored ? malloc((size_t)b.n * sizeof(int32_t)) : NULL; /* (n) class numbers */
    if (scored && !truth) { rc = cli_report(cmd, SM_ERR_NOMEM, "out of memory"); goto done; }
    for (int64_t i = 0; scored && i < b.n; i++) {
        const char *nm = cli_batch_name(&b, i);
        char *end;
        long v = strtol(nm, &end, 10);
        if (!*nm || *end || v < 0 || v >= C || nm[0] == '+' || nm[0] == '-' || (nm[0] == '0' && nm[1])) scored = 0;
        else truth[i] = (int32_t)v;
    }
    if (b.labels && b.n && !scored)
        fprintf(stderr, "simile classify: note: no accuracy: the class names of the inputs (e.g. '%s') are not the model's "
                        "class numbers 0..%d, so the predictions cannot be compared with them\n", cli_batch_name(&b, 0), C - 1);
    int64_t c1 = 0, ck = 0;
    int *idx = malloc((size_t)C * sizeof(int));
    if (!idx) { free(truth); rc = cli_report(cmd, SM_ERR_NOMEM, "out of memory"); goto done; }
    cj j;
    cj_init(&j, stdout);
    if (json) {
        cj_obj(&j);
        cj_kstr(&j, "command", "classify");
        cj_kint(&j, "num_inputs", (long long)b.n);
        cj_kint(&j, "top_k", top);
        cj_key(&j, "inputs");
        cj_arr(&j);
    }
    for (int64_t i = 0; i < b.n; i++) {
        float *zi = z + i * C, mx = zi[0];
        for (int t = 1; t < C; t++) if (zi[t] > mx) mx = zi[t];
        double s = 0;
        for (int t = 0; t < C; t++) s += exp((double)(zi[t] - mx));
        for (int t = 0; t < C; t++) { zi[t] = (float)(exp((double)(zi[t] - mx)) / s); idx[t] = t; }
        for (int a = 0; a < top; a++) /* partial selection sort: top classes first */
            for (int t = a + 1; t < C; t++)
                if (zi[idx[t]] > zi[idx[a]]) { int tmp = idx[a]; idx[a] = idx[t]; idx[t] = tmp; }
        if (scored) {
            c1 += idx[0] == truth[i];
            for (int a = 0; a < top; a++) ck += idx[a] == truth[i];
        }
        if (i >= show) continue;
        if (json) {
            cj_obj(&j);
            cj_kstr(&j, "input", b.item ? b.item[i] : "");
            if (b.labels) cj_kstr(&j, "class_name", cli_batch_name(&b, i));
            if (scored) cj_kint(&j, "label", truth[i]);
            cj_key(&j, "top");
            cj_arr(&j);
            for (int a = 0; a < top; a++) {
                cj_obj(&j);
                cj_kint(&j, "class", idx[a]);
                cj_knumf(&j, "probability", zi[idx[a]]);
                cj_obj_end(&j);
            }
            cj_arr_end(&j);
            cj_obj_end(&j);
        } else {
            printf("%s:", b.item ? b.item[i] : "");
            for (int a = 0; a < top; a++) printf(" %d %.4f", idx[a], (double)zi[idx[a]]);
            printf("\n");
        }
    }
    free(idx);
    free(truth);
    if (json) {
        cj_arr_end(&j);
        if (scored) {
            cj_knum(&j, "top1_accuracy", (double)c1 / (double)b.n);
            cj_knum(&j, "topk_accuracy", (double)ck / (double)b.n);
        }
        cj_obj_end(&j);
    } else if (scored)
        printf("%lld %s: top-1 accuracy %.4f, top-%d accuracy %.4f\n", (long long)b.n, cli_pl(b.n, "input", "inputs"),
               (double)c1 / (double)b.n, top,
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
                   "NumPy .npy files.  With --folder, OUT.labels.json (OUT without .npy) maps the label\n"
                   "numbers to the folder names: {\"classes\": [name of label 0, ...], \"sources\": [the\n"
                   "image file of each row]}.\n\n%s", cli_inputs_help);
            return EXIT_OK;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    if (cli_inputs_positional(cmd, &in, argc, argv, optind)) return EXIT_USAGE;
    if (cli_inputs_require(cmd, &in)) return EXIT_USAGE;
    if (!model) return cli_usage_error(cmd, "--model FILE is required");
    if (!out) return cli_usage_error(cmd, "--out FILE is required");
    if (in.npy) return cli_usage_error(cmd, "embed takes images, not embeddings");
    sm_set_num_threads(in.threads);
    cli_compute_warning(cmd);
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
    /* a folder's labels are numbers given to sorted folder names: write which is which */
    char map[4200] = "";
    if (!st && in.folder && b.names) {
        size_t l = strlen(out);
        snprintf(map, sizeof map, "%.*s.labels.json", (int)(l > 4 && !strcmp(out + l - 4, ".npy") ? l - 4 : l), out);
        FILE *f = fopen(map, "w");
        if (!f) st = cli_fail(SM_ERR_IO, "%s: cannot write the label map", map);
        else {
            cj j;
            cj_init(&j, f);
            cj_obj(&j);
            cj_kstr(&j, "embeddings", out);
            cj_key(&j, "classes"); /* label number = index in this list */
            cj_arr(&j);
            for (int i = 0; i < b.nnames; i++) cj_str(&j, b.names[i]);
            cj_arr_end(&j);
            cj_key(&j, "sources"); /* the image file of each row */
            cj_arr(&j);
            for (int64_t i = 0; i < b.n; i++) cj_str(&j, b.item[i]);
            cj_arr_end(&j);
            cj_obj_end(&j);
            if (ferror(f) | (fclose(f) != 0)) st = cli_fail(SM_ERR_IO, "%s: writing the label map failed", map);
        }
    }
    if (st) rc = cli_report(cmd, st, NULL);
    else {
        printf("embedded %lld %s to %s (%lld x %d)%s%s in %.2f s (%.0f images/s)\n", (long long)b.n,
               cli_pl(b.n, "input", "inputs"), out, (long long)b.n, b.d,
               lout ? ", labels to " : "", lout ? lout : "", t, t > 0 ? (double)b.n / t : 0.0);
        if (*map) printf("label numbers -> folder names (and each row's file) in %s\n", map);
    }
    cli_batch_free(&b);
    sm_model_free(m);
    return rc;
}
