/* cmd_eval.c - `simile eval`: a classifier's accuracy and confusion matrix on a split, and the
 * retrieval metrics (P@1, R-precision, MAP@R, Recall@K, NMI) of any model's embeddings; also
 * `simile info` and `simile losses`. */
#include "cli.h"
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *help =
    "usage: simile eval --model FILE [options]\n"
    "Evaluate a model on a split (the test split by default).\n"
    "A model with a classifier head reports accuracy and the confusion matrix; every model\n"
    "reports retrieval metrics of its L2-normalised embeddings (each sample a query against\n"
    "all others): precision@1, R-precision, MAP@R, Recall@K, NMI.\n"
    "Under mpirun -np N: each rank embeds its share of the images, rank 0 gathers them and\n"
    "prints the same figures as one process (docs/distributed.md).\n\n"
    "  --model FILE      model file (required); its stored normalisation applies unless one is\n"
    "                    given, and a --folder is resized to its input size\n"
    "  --task T          auto (default), classify, retrieval, both\n"
    "  --threads N       default: all cores\n"
    "  --json FILE       also write the figures as JSON (docs/cli.md); --json - writes the\n"
    "                    JSON document to stdout and the text to stderr\n";

/* The model's class of each label of the data: by name when both name their classes (a folder
 * evaluated with a model trained on another folder), else the label itself; a name the model
 * does not know becomes a class it has no output for.  (n) labels, free(). */
static int32_t *model_labels(sm_model *m, const sm_dataset *ds, char *const *names, int nnames) {
    int64_t n = sm_dataset_size(ds);
    const int32_t *y = sm_dataset_labels(ds);
    int32_t *out = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    if (!out) return NULL;
    int mn = sm_model_num_class_names(m), C = sm_model_num_classes(m);
    for (int64_t i = 0; i < n; i++) {
        out[i] = y[i];
        if (!names || !mn || y[i] >= nnames) continue;
        int k = 0;
        while (k < mn && strcmp(sm_model_class_name(m, k), names[y[i]])) k++;
        out[i] = k < mn ? k : (C > mn ? C : mn) + y[i];
    }
    return out;
}

/* Row label of class k in the confusion matrix: its name when the model has one. */
static void class_label(sm_model *m, int k, char *buf, size_t cap) {
    const char *nm = sm_model_class_name(m, k);
    if (nm) snprintf(buf, cap, "%-12.12s", nm);
    else snprintf(buf, cap, "%3d", k);
}

static int eval_classify(sm_model *m, sm_dataset *ds, const int32_t *y, cj *json, sm_dist *g) {
    int64_t n = sm_dataset_size(ds);
    int C = sm_model_num_classes(m);
    float *logits = malloc((size_t)(n ? n : 1) * (size_t)C * sizeof(float));
    int64_t *conf = calloc((size_t)C * (size_t)C, sizeof(int64_t));
    if (!logits || !conf) { free(logits); free(conf); return cli_report("eval", SM_ERR_NOMEM, "out of memory"); }
    /* under mpirun each rank computes its share of the rows, every rank gets them all */
    sm_status st = sm_model_logits_dist(m, g, sm_dataset_images(ds), n, logits);
    if (st) { free(logits); free(conf); return cli_report("eval", st, sm_model_errmsg(m)); }
    int64_t correct = 0, unknown = 0;
    for (int64_t i = 0; i < n; i++) {
        int best = 0;
        for (int j = 1; j < C; j++) if (logits[i * C + j] > logits[i * C + best]) best = j;
        if (y[i] < C) { conf[(int64_t)y[i] * C + best]++; correct += best == y[i]; }
        else unknown++;
    }
    double acc = n ? (double)correct / (double)n : 0;
    fprintf(cli_text(), "classification: %lld %s, accuracy %.4f (%lld correct)\n", (long long)n,
            cli_pl(n, "image", "images"), acc, (long long)correct);
    if (unknown)
        fprintf(cli_text(), "  %lld %s a class the head has no output for (it cannot predict a new class)\n",
                (long long)unknown, cli_pl(unknown, "image has", "images have"));
    int named = sm_model_num_class_names(m) > 0;
    if (named) {
        fprintf(cli_text(), "classes:");
        for (int j = 0; j < C; j++) fprintf(cli_text(), " %d %s%s", j, sm_model_class_name(m, j) ? sm_model_class_name(m, j) : "?", j + 1 < C ? "," : "");
        fputc('\n', cli_text());
    }
    fprintf(cli_text(), "confusion matrix (rows: true class, columns: predicted):\n%s", named ? "               " : "      ");
    for (int j = 0; j < C; j++) fprintf(cli_text(), "%6d", j);
    fputc('\n', cli_text());
    for (int i = 0; i < C; i++) {
        int64_t rowsum = 0;
        for (int j = 0; j < C; j++) rowsum += conf[(int64_t)i * C + j];
        if (!rowsum) continue;
        char lab[32];
        class_label(m, i, lab, sizeof lab);
        fprintf(cli_text(), "  %s ", lab);
        for (int j = 0; j < C; j++) fprintf(cli_text(), "%6lld", (long long)conf[(int64_t)i * C + j]);
        fputc('\n', cli_text());
    }
    if (json) {
        cj_knum(json, "accuracy", acc);
        cj_kint(json, "images", (long long)n);
        cj_kint(json, "images_of_unknown_class", (long long)unknown);
        if (named) {
            cj_key(json, "class_names");
            cj_arr(json);
            for (int j = 0; j < C; j++) cj_str(json, sm_model_class_name(m, j) ? sm_model_class_name(m, j) : "");
            cj_arr_end(json);
        }
        cj_key(json, "confusion"); /* rows: true class, columns: predicted */
        cj_arr(json);
        for (int i = 0; i < C; i++) {
            cj_arr(json);
            for (int t = 0; t < C; t++) cj_int(json, (long long)conf[(int64_t)i * C + t]);
            cj_arr_end(json);
        }
        cj_arr_end(json);
    }
    free(logits); free(conf);
    return EXIT_OK;
}

static int eval_retrieval(sm_model *m, sm_dataset *ds, cj *json, sm_dist *g) {
    int64_t n = sm_dataset_size(ds);
    int d = sm_model_embedding_dim(m);
    float *emb = malloc((size_t)(n ? n : 1) * (size_t)d * sizeof(float));
    if (!emb) return cli_report("eval", SM_ERR_NOMEM, "out of memory");
    sm_status st = sm_model_embed_dist(m, g, sm_dataset_images(ds), n, emb);
    if (st) { free(emb); return cli_report("eval", st, sm_model_errmsg(m)); }
    if (sm_dist_rank(g) > 0) { free(emb); return EXIT_OK; } /* rank 0 computes the figures and prints */
    /* L2-normalise (the embedding of a metric model already is; a bare one may not be) */
    sm_embeddings_normalize(emb, n, d);
    sm_retrieval_result r;
    st = sm_retrieval_metrics(emb, sm_dataset_labels(ds), n, d, SM_METRIC_L2, &r);
    double intra = 0, inter = 0;
    if (!st) st = sm_intra_inter_distances(emb, sm_dataset_labels(ds), n, d, &intra, &inter);
    free(emb);
    if (st) return cli_report("eval", st, NULL);
    fprintf(cli_text(), "retrieval: %lld %s, %d %s (L2 on normalised embeddings)\n", (long long)r.num_queries,
            cli_pl(r.num_queries, "query", "queries"), r.num_classes, cli_pl(r.num_classes, "class", "classes"));
    fprintf(cli_text(), "  precision@1   %.4f\n  R-precision   %.4f\n  MAP@R         %.4f\n", r.precision_at_1, r.r_precision, r.map_at_r);
    fprintf(cli_text(), "  recall@1,2,4,8  %.4f %.4f %.4f %.4f\n", r.recall_at_k[0], r.recall_at_k[1], r.recall_at_k[2], r.recall_at_k[3]);
    fprintf(cli_text(), "  NMI           %.4f\n", r.nmi);
    fprintf(cli_text(), "  mean intra-class distance %.4f, inter-class %.4f, ratio %.4f\n", intra, inter, inter > 0 ? intra / inter : 0);
    if (json) {
        cj_kint(json, "queries", (long long)r.num_queries);
        cj_kint(json, "classes", r.num_classes);
        cj_knum(json, "precision_at_1", r.precision_at_1);
        cj_knum(json, "r_precision", r.r_precision);
        cj_knum(json, "map_at_r", r.map_at_r);
        static const char *const rk[4] = {"recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8"};
        for (int i = 0; i < 4; i++) cj_knum(json, rk[i], r.recall_at_k[i]);
        cj_knum(json, "nmi", r.nmi);
        cj_knum(json, "mean_intra", intra);
        cj_knum(json, "mean_inter", inter);
    }
    return EXIT_OK;
}

int cmd_eval(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", 1, 0, 'm'}, {"task", 1, 0, 't'}, {"threads", 1, 0, 'j'}, {"json", 1, 0, 'o'}, {"help", 0, 0, 'h'},
        CLI_DATA_LONGOPTS, {0, 0, 0, 0}};
    const char *cmd = "eval", *model_path = NULL, *task = "auto", *json_path = NULL;
    int threads = 0, c;
    cli_data data;
    cli_data_defaults(&data, "test");
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_SHORTOPTS, opts, NULL)) != -1) {
        int r = cli_data_option(cmd, &data, c, optarg);
        if (r < 0) return EXIT_USAGE;
        if (r) continue;
        switch (c) {
        case 'm': model_path = optarg; break;
        case 't': task = optarg; break;
        case 'j': if (cli_int(cmd, "--threads", optarg, 1, 1024, &threads)) return EXIT_USAGE; break;
        case 'o': json_path = optarg; if (!strcmp(optarg, "-")) cli_set_json(1); break;
        case 'h': printf("%s%s", help, cli_data_help); return EXIT_OK;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!model_path) return cli_usage_error(cmd, "--model FILE is required");
    if (strcmp(task, "auto") && strcmp(task, "classify") && strcmp(task, "retrieval") && strcmp(task, "both"))
        return cli_usage_error(cmd, "--task must be auto, classify, retrieval or both");
    sm_set_num_threads(threads);
    /* under mpirun: each rank embeds its share, rank 0 prints and writes */
    sm_dist *group = NULL;
    sm_status gst = sm_dist_init(&group);
    if (gst) return cli_report(cmd, gst, NULL);
    if (sm_dist_rank(group) > 0) { cli_set_silent(1); cli_set_json(0); json_path = NULL; }
    sm_model *m = NULL;
    sm_dataset *ds = NULL;
    char **names = NULL;
    int nnames = 0;
    int32_t *ylab = NULL;
    FILE *json = NULL;
    cj j, *jp = NULL;
    int rc = EXIT_OK;
    sm_status st = sm_model_load(&m, model_path);
    if (st) { rc = cli_report(cmd, st, NULL); goto done; }
    data.model = m; /* its input size for folders, its stored normalisation */
    if ((st = cli_data_load_full(&data, &ds, NULL, 0, NULL, &names, &nnames))) { rc = cli_report(cmd, st, NULL); goto done; }
    int h, w, ch, mh, mw, mc;
    sm_dataset_shape(ds, &h, &w, &ch);
    sm_model_input_shape(m, &mh, &mw, &mc);
    if (h != mh || w != mw || ch != mc) {
        rc = cli_report(cmd, SM_ERR_MISMATCH, "");
        fprintf(stderr, "  data is %dx%dx%d, the model takes %dx%dx%d\n", h, w, ch, mh, mw, mc);
        goto done;
    }
    int has_head = sm_model_num_classes(m) > 0;
    int do_cls = !strcmp(task, "classify") || !strcmp(task, "both") || (!strcmp(task, "auto") && has_head);
    int do_ret = !strcmp(task, "retrieval") || !strcmp(task, "both") || (!strcmp(task, "auto") && !has_head);
    if (do_cls && !has_head) {
        rc = cli_report(cmd, SM_ERR_UNSUPPORTED, "the model has no classifier head (use --task retrieval)");
        goto done;
    }
    if (json_path && !(json = !strcmp(json_path, "-") ? stdout : fopen(json_path, "w"))) {
        rc = cli_report(cmd, SM_ERR_IO, "cannot write the JSON file");
        goto done;
    }
    if (json) {
        jp = &j;
        cj_init(jp, json);
        cj_obj(jp);
        cj_kstr(jp, "command", "eval");
        cj_kstr(jp, "model", model_path);
        cj_kstr(jp, "loss", sm_model_loss_name(m));
        cj_kint(jp, "parameters", (long long)sm_model_num_params(m));
    }
    fprintf(cli_text(), "model %s (loss %s, %lld parameters)\n", model_path, *sm_model_loss_name(m) ? sm_model_loss_name(m) : "none",
           (long long)sm_model_num_params(m));
    if (do_cls && !(ylab = model_labels(m, ds, names, nnames))) rc = cli_report(cmd, SM_ERR_NOMEM, "out of memory");
    if (do_cls && !rc) rc = eval_classify(m, ds, ylab, jp, group);
    if (!rc && do_ret) rc = eval_retrieval(m, ds, jp, group);
    if (jp && !rc) cj_obj_end(jp);
done:
    if (json && json != stdout && fclose(json) != 0 && !rc) rc = cli_report(cmd, SM_ERR_IO, "writing the JSON file failed");
    if (json == stdout && fflush(stdout) != 0 && !rc) rc = cli_report(cmd, SM_ERR_IO, "writing the JSON document failed");
    free(names);
    free(ylab);
    sm_dataset_free(ds);
    sm_model_free(m);
    cli_set_silent(0);
    sm_dist_free(group);
    return rc;
}

int cmd_info(int argc, char **argv) {
    if (argc != 2 || cli_is_help(argv[1])) {
        fprintf(argc == 2 ? stdout : stderr, "usage: simile info MODEL_FILE\nShow the layers, loss and parameter count of a model file.\n");
        return argc == 2 ? EXIT_OK : EXIT_USAGE;
    }
    sm_model *m;
    sm_status st = sm_model_load(&m, argv[1]);
    if (st) return cli_report("info", st, NULL);
    printf("%s", sm_model_summary(m));
    sm_normalization nz;
    sm_model_normalization(m, &nz);
    if (nz.kind == SM_NORM_UNKNOWN) printf("normalisation: not stored (a version-1 file: the commands use their defaults)\n");
    else if (nz.kind == SM_NORM_NONE) printf("normalisation: none\n");
    else {
        printf("normalisation: mean");
        for (int k = 0; k < nz.channels; k++) printf("%s%.4g", k ? "," : " ", (double)nz.mean[k]);
        printf(" std");
        for (int k = 0; k < nz.channels; k++) printf("%s%.4g", k ? "," : " ", (double)nz.std[k]);
        printf("\n");
    }
    int nn = sm_model_num_class_names(m);
    if (nn) {
        printf("class names:");
        for (int k = 0; k < nn; k++) printf(" %d %s%s", k, sm_model_class_name(m, k), k + 1 < nn ? "," : "");
        printf("\n");
    }
    printf("loss: %s, classes: %d, fingerprint %08x\nspec:\n%s", *sm_model_loss_name(m) ? sm_model_loss_name(m) : "none",
           sm_model_num_classes(m), sm_model_fingerprint(m), sm_model_spec(m));
    double sel_map;
    int sel_best, sel_epoch = sm_model_selection(m, &sel_map, &sel_best);
    if (sel_epoch)
        printf("selection: epoch %d (%s), validation MAP@R %.4f\n", sel_epoch, sel_best ? "the best epoch" : "the last epoch",
               sel_map);
    sm_model_free(m);
    return EXIT_OK;
}

int cmd_losses(int argc, char **argv) {
    if (argc > 1 && !cli_is_help(argv[1])) return cli_usage_error("losses", "takes no arguments");
    printf("usage: simile losses\nThe losses of simile train --loss NAME --loss-opts key=value,... and compare --losses.\n\nlosses:\n");
    const char *name, *text;
    for (int i = 0; sm_loss_describe(i, &name, &text) == SM_OK; i++) printf("  %-16s %s\n", name, text);
    return EXIT_OK;
}
