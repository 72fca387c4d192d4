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
    "all others): precision@1, R-precision, MAP@R, Recall@K, NMI.\n\n"
    "  --model FILE      model file (required)\n"
    "  --task T          auto (default), classify, retrieval, both\n"
    "  --threads N       default: all cores\n"
    "  --json FILE       also write the figures as JSON\n";

static int eval_classify(sm_model *m, sm_dataset *ds, FILE *json) {
    int64_t n = sm_dataset_size(ds);
    int C = sm_model_num_classes(m);
    const int32_t *y = sm_dataset_labels(ds);
    float *logits = malloc((size_t)(n ? n : 1) * (size_t)C * sizeof(float));
    int64_t *conf = calloc((size_t)C * (size_t)C, sizeof(int64_t));
    if (!logits || !conf) { free(logits); free(conf); return cli_report("eval", SM_ERR_NOMEM, "out of memory"); }
    sm_status st = sm_model_logits(m, sm_dataset_images(ds), n, logits);
    if (st) { free(logits); free(conf); return cli_report("eval", st, sm_model_errmsg(m)); }
    int64_t correct = 0, unknown = 0;
    for (int64_t i = 0; i < n; i++) {
        int best = 0;
        for (int j = 1; j < C; j++) if (logits[i * C + j] > logits[i * C + best]) best = j;
        if (y[i] < C) { conf[(int64_t)y[i] * C + best]++; correct += best == y[i]; }
        else unknown++;
    }
    double acc = n ? (double)correct / (double)n : 0;
    printf("classification: %lld %s, accuracy %.4f (%lld correct)\n", (long long)n, cli_pl(n, "image", "images"), acc,
           (long long)correct);
    if (unknown)
        printf("  %lld %s a class the head has no output for (it cannot predict a new class)\n", (long long)unknown,
               cli_pl(unknown, "image has", "images have"));
    printf("confusion matrix (rows: true class, columns: predicted):\n      ");
    for (int j = 0; j < C; j++) printf("%6d", j);
    printf("\n");
    for (int i = 0; i < C; i++) {
        int64_t rowsum = 0;
        for (int j = 0; j < C; j++) rowsum += conf[(int64_t)i * C + j];
        if (!rowsum) continue;
        printf("  %3d ", i);
        for (int j = 0; j < C; j++) printf("%6lld", (long long)conf[(int64_t)i * C + j]);
        printf("\n");
    }
    if (json) fprintf(json, "  \"accuracy\": %.6f,\n  \"images\": %lld,\n", acc, (long long)n);
    free(logits); free(conf);
    return EXIT_OK;
}

static int eval_retrieval(sm_model *m, sm_dataset *ds, FILE *json) {
    int64_t n = sm_dataset_size(ds);
    int d = sm_model_embedding_dim(m);
    float *emb = malloc((size_t)(n ? n : 1) * (size_t)d * sizeof(float));
    if (!emb) return cli_report("eval", SM_ERR_NOMEM, "out of memory");
    sm_status st = sm_model_embed(m, sm_dataset_images(ds), n, emb);
    if (st) { free(emb); return cli_report("eval", st, sm_model_errmsg(m)); }
    /* L2-normalise (the embedding of a metric model already is; a bare one may not be) */
    sm_embeddings_normalize(emb, n, d);
    sm_retrieval_result r;
    st = sm_retrieval_metrics(emb, sm_dataset_labels(ds), n, d, SM_METRIC_L2, &r);
    double intra = 0, inter = 0;
    if (!st) st = sm_intra_inter_distances(emb, sm_dataset_labels(ds), n, d, &intra, &inter);
    free(emb);
    if (st) return cli_report("eval", st, NULL);
    printf("retrieval: %lld %s, %d %s (L2 on normalised embeddings)\n", (long long)r.num_queries,
           cli_pl(r.num_queries, "query", "queries"), r.num_classes, cli_pl(r.num_classes, "class", "classes"));
    printf("  precision@1   %.4f\n  R-precision   %.4f\n  MAP@R         %.4f\n", r.precision_at_1, r.r_precision, r.map_at_r);
    printf("  recall@1,2,4,8  %.4f %.4f %.4f %.4f\n", r.recall_at_k[0], r.recall_at_k[1], r.recall_at_k[2], r.recall_at_k[3]);
    printf("  NMI           %.4f\n", r.nmi);
    printf("  mean intra-class distance %.4f, inter-class %.4f, ratio %.4f\n", intra, inter, inter > 0 ? intra / inter : 0);
    if (json)
        fprintf(json, "  \"precision_at_1\": %.6f,\n  \"r_precision\": %.6f,\n  \"map_at_r\": %.6f,\n"
                      "  \"recall_at_1\": %.6f,\n  \"nmi\": %.6f,\n  \"mean_intra\": %.6f,\n  \"mean_inter\": %.6f,\n",
                r.precision_at_1, r.r_precision, r.map_at_r, r.recall_at_k[0], r.nmi, intra, inter);
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
        case 'o': json_path = optarg; break;
        case 'h': printf("%s%s", help, cli_data_help); return EXIT_OK;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!model_path) return cli_usage_error(cmd, "--model FILE is required");
    if (strcmp(task, "auto") && strcmp(task, "classify") && strcmp(task, "retrieval") && strcmp(task, "both"))
        return cli_usage_error(cmd, "--task must be auto, classify, retrieval or both");
    sm_set_num_threads(threads);
    sm_model *m = NULL;
    sm_dataset *ds = NULL;
    FILE *json = NULL;
    int rc = EXIT_OK;
    sm_status st = sm_model_load(&m, model_path);
    if (st) return cli_report(cmd, st, NULL);
    if ((st = cli_data_load(&data, &ds))) { rc = cli_report(cmd, st, NULL); goto done; }
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
    if (json_path && !(json = fopen(json_path, "w"))) {
        rc = cli_report(cmd, SM_ERR_IO, "cannot write the JSON file");
        goto done;
    }
    if (json) fprintf(json, "{\n");
    printf("model %s (loss %s, %lld parameters)\n", model_path, *sm_model_loss_name(m) ? sm_model_loss_name(m) : "none",
           (long long)sm_model_num_params(m));
    if (do_cls) rc = eval_classify(m, ds, json);
    if (!rc && do_ret) rc = eval_retrieval(m, ds, json);
    if (json) fprintf(json, "  \"model\": \"%s\"\n}\n", model_path);
done:
    if (json && fclose(json) != 0 && !rc) rc = cli_report(cmd, SM_ERR_IO, "writing the JSON file failed");
    sm_dataset_free(ds);
    sm_model_free(m);
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
    printf("loss: %s, classes: %d, fingerprint %08x\nspec:\n%s", *sm_model_loss_name(m) ? sm_model_loss_name(m) : "none",
           sm_model_num_classes(m), sm_model_fingerprint(m), sm_model_spec(m));
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
