/* cmd_train.c - `simile train`: load data, build a model from a spec, train it with a loss,
 * save it atomically. */
#include "cli.h"
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char *help =
    "usage: simile train [options]\n"
    "Train a model on IDX data (Fashion-MNIST by default) or a folder of images (--folder) and\n"
    "save it, with the normalisation used and the class names (docs/data.md).\n"
    "Under mpirun -np N: data-parallel on N processes, rank 0 prints and saves (docs/distributed.md).\n\n"
    "model and loss:\n"
    "  --model SPEC      built-in (cnn-s, cnn-c, cnn-m, mlp, resnet-s, resnet18), @file, or layer text (default cnn-s)\n"
    "  --loss NAME       softmax (default), focal, or a metric loss (see simile losses)\n"
    "  --loss-opts OPTS  loss options key=value,...; a classifier's classes= defaults to the\n"
    "                    largest label + 1\n"
    "training:\n"
    "  --epochs N        default 5\n"
    "  --batch N         default 128\n"
    "  --lr X            default 1e-3\n"
    "  --optimizer O     adam (default), adamw, sgd\n"
    "  --momentum X      SGD momentum (default 0.9)\n"
    "  --weight-decay X  default 0\n"
    "  --schedule S      constant (default), step, cosine\n"
    "  --step-epochs N --step-gamma X   step schedule\n"
    "  --warmup N        linear learning-rate warm-up over the first N steps (default 0)\n"
    "  --per-class K     P x K sampling with K images a class (default 32 for metric losses,\n"
    "                    0 = shuffled batches for classification losses)\n"
    "  --pk-random       draw every P x K batch at random, as pytorch-metric-learning's\n"
    "                    MPerClassSampler (default: an epoch visits every sample once)\n"
    "  --epoch-size N    samples an epoch (default 0: one pass over the data; 100000 is\n"
    "                    pytorch-metric-learning's MPerClassSampler default)\n"
    "  --ema D           train with an exponential moving average of the weights, decay D\n"
    "                    (e.g. 0.999); the model saved is the average (default: off)\n"
    "  --aug-shift N     random shift up to N pixels (default 0)\n"
    "  --aug-flip        random horizontal flip\n"
    "  --aug-crop K=V,.. random resized crop: scale=A-B (area fraction, default 0.08-1),\n"
    "                    ratio=A-B (width/height, default 0.75-1.333); 'default' for both\n"
    "  --aug-jitter K=V,..  colour jitter: brightness=S,contrast=S,saturation=S (factors in\n"
    "                    [1-S, 1+S])\n"
    "  --aug-erase K=V,..   random erasing: p=P (default 0.5), scale=A-B (0.02-0.33),\n"
    "                    ratio=A-B (0.3-3.3); 'default' for all\n"
    "  --stream          with --folder: decode the images batch by batch on a worker thread while\n"
    "                    the network computes (default: all decoded at the start, in memory)\n"
    "  --cache           with --stream: keep each image once decoded (n x H x W x C floats)\n"
    "  --seed N          default 1\n"
    "  --grad-shards N   compute every sum over a batch (weight and bias gradients, batch-norm\n"
    "                    statistics) in N parts added in order, as N ranks under mpirun do: one\n"
    "                    process then trains to the same bits as mpirun -np N (default 0: the\n"
    "                    whole batch at once; under mpirun -np N: 0 or N)\n"
    "  --threads N       default: all cores\n"
    "  --out FILE        model file to write (default model.smm)\n"
    "  --quiet           no progress output\n"
    "  --json            one JSON document on stdout (settings, normalisation, class names,\n"
    "                    per-epoch loss and validation, docs/cli.md); the text goes to stderr\n"
    "validation (retrieval metrics after every epoch, as `simile eval` computes them):\n"
    "  --val-split S     evaluate on this split of --data (e.g. test) after every epoch\n"
    "  --val-classes L   classes of the validation split (default: all; 5-9 for fmnist-open);\n"
    "                    with --folder, without --val-split: these classes of the same folder\n"
    "  --val-classes-from-train K\n"
    "                    hold out the last K training classes (the K largest labels; K >= 2)\n"
    "                    as a class-disjoint validation set; training uses the others\n"
    "  --keep-best       save the epoch with the best validation MAP@R, not the last one\n"
    "  --embed-at L      the embedding is layer L's output (a number or N.kind, L2-normalised):\n"
    "                    the layers after L are a projection head that only the loss sees;\n"
    "                    validation embeds at L, and the model saved is layers 1..L\n"
    "fine-tuning and resuming (docs/training.md):\n"
    "  --init MODEL      start from MODEL's weights: every tensor whose name and shape match\n"
    "                    is taken, the others keep their fresh initialisation (a list is printed);\n"
    "                    without --model the network is MODEL's own\n"
    "  --freeze-bn       batch norms use and keep their running statistics; their scale and\n"
    "                    shift are not trained\n"
    "  --freeze-until L  layers 1..L are not trained (L a number or a name such as 4.relu)\n"
    "  --backbone-lr-mult X  learning rate of the layers taken by --init is lr x X (default 1)\n"
    "  --checkpoint FILE write the whole training state to FILE after every epoch\n"
    "  --checkpoint-steps N  and every N steps\n"
    "  --resume FILE     continue from checkpoint FILE (same data, model and options): the\n"
    "                    result has the same bits as a run that was never interrupted\n";

/* Per-epoch validation (computed by the trainer, cfg.val: embeddings L2-normalised, L2
 * distance, as `simile eval` does): print P@1, R-precision and MAP@R, note the best epoch. */
typedef struct epoch_log { double loss, images_per_sec, seconds, lr, p1, rp, mapr; int val, ran; } epoch_log;
typedef struct val_state {
    sm_dataset *ds;
    int quiet, failed, best_epoch;
    double best_mapr;
    epoch_log *log; /* (epochs) for --json, NULL otherwise */
    int nlog;
} val_state;

static int train_progress(const sm_train_progress *p, void *user) {
    val_state *v = user;
    if (!v->quiet) cli_train_progress(p, NULL);
    if (p->epoch_done && v->log && p->epoch >= 1 && p->epoch <= v->nlog) {
        epoch_log *e = &v->log[p->epoch - 1];
        e->loss = p->loss; e->images_per_sec = p->images_per_sec; e->seconds = p->seconds; e->lr = p->lr;
        e->ran = 1; /* a resumed run did not run the epochs before its checkpoint */
    }
    if (!p->epoch_done || !p->val) return 0;
    const sm_retrieval_result r = *p->val;
    int64_t n = sm_dataset_size(v->ds);
    if (r.map_at_r > v->best_mapr || !v->best_epoch) { v->best_mapr = r.map_at_r; v->best_epoch = p->epoch; }
    if (v->log && p->epoch >= 1 && p->epoch <= v->nlog) {
        epoch_log *e = &v->log[p->epoch - 1];
        e->val = 1; e->p1 = r.precision_at_1; e->rp = r.r_precision; e->mapr = r.map_at_r;
    }
    fprintf(cli_text(), "epoch %d/%d  val  P@1 %.4f  R-precision %.4f  MAP@R %.4f  (%lld %s)\n", p->epoch, p->epochs,
            r.precision_at_1, r.r_precision, r.map_at_r, (long long)n, cli_pl(n, "image", "images"));
    fflush(cli_text());
    return 0;
}

static int is_classifier(const char *loss) { return !strcmp(loss, "softmax") || !strcmp(loss, "focal"); }

int cmd_train(int argc, char **argv) {
    enum { O_MODEL = 1, O_LOSS, O_LOSSOPTS, O_EPOCHS, O_BATCH, O_LR, O_OPT, O_MOM, O_WD, O_SCHED, O_WARMUP,
           O_STEPE, O_STEPG, O_PERCLASS, O_SHIFT, O_FLIP, O_EPOCHSIZE, O_SEED, O_THREADS, O_OUT, O_QUIET, O_HELP,
           O_VALSPLIT, O_VALCLASSES, O_PKRANDOM, O_EMA, O_JSON, O_INIT, O_FREEZEBN, O_FREEZEUNTIL, O_BBLR,
           O_CKPT, O_CKPTSTEPS, O_RESUME, O_VALFROMTRAIN, O_KEEPBEST, O_EMBEDAT, O_AUGCROP, O_AUGJITTER, O_AUGERASE,
           O_GRADSHARDS };
    static const struct option opts[] = {
        {"model", 1, 0, O_MODEL}, {"loss", 1, 0, O_LOSS}, {"loss-opts", 1, 0, O_LOSSOPTS},
        {"epochs", 1, 0, O_EPOCHS}, {"batch", 1, 0, O_BATCH}, {"lr", 1, 0, O_LR}, {"optimizer", 1, 0, O_OPT},
        {"momentum", 1, 0, O_MOM}, {"weight-decay", 1, 0, O_WD}, {"schedule", 1, 0, O_SCHED}, {"warmup", 1, 0, O_WARMUP},
        {"step-epochs", 1, 0, O_STEPE}, {"step-gamma", 1, 0, O_STEPG}, {"per-class", 1, 0, O_PERCLASS},
        {"aug-shift", 1, 0, O_SHIFT}, {"aug-flip", 0, 0, O_FLIP}, {"epoch-size", 1, 0, O_EPOCHSIZE}, {"seed", 1, 0, O_SEED},
        {"threads", 1, 0, O_THREADS}, {"out", 1, 0, O_OUT}, {"quiet", 0, 0, O_QUIET}, {"help", 0, 0, O_HELP},
        {"pk-random", 0, 0, O_PKRANDOM}, {"ema", 1, 0, O_EMA}, {"val-split", 1, 0, O_VALSPLIT},
        {"val-classes", 1, 0, O_VALCLASSES}, {"json", 0, 0, O_JSON}, {"init", 1, 0, O_INIT},
        {"freeze-bn", 0, 0, O_FREEZEBN}, {"freeze-until", 1, 0, O_FREEZEUNTIL}, {"backbone-lr-mult", 1, 0, O_BBLR},
        {"checkpoint", 1, 0, O_CKPT}, {"checkpoint-steps", 1, 0, O_CKPTSTEPS}, {"resume", 1, 0, O_RESUME},
        {"val-classes-from-train", 1, 0, O_VALFROMTRAIN}, {"keep-best", 0, 0, O_KEEPBEST}, {"embed-at", 1, 0, O_EMBEDAT},
        {"aug-crop", 1, 0, O_AUGCROP}, {"aug-jitter", 1, 0, O_AUGJITTER}, {"aug-erase", 1, 0, O_AUGERASE},
        {"grad-shards", 1, 0, O_GRADSHARDS}, CLI_DATA_LONGOPTS, CLI_STREAM_LONGOPTS,
        {0, 0, 0, 0}};
    char *init_spec = NULL; /* --init without --model: the init model's own spec */
    int model_given = 0;
    const char *cmd = "train", *spec_arg = "cnn-s", *loss_name = "softmax", *loss_opts = "", *out = "model.smm";
    const char *val_split = NULL, *val_classes = NULL, *init = NULL, *freeze_until = NULL, *embed_at = NULL;
    int threads = 0, per_class = -1, quiet = 0, seed = 1, json = 0, val_from_train = 0;
    int64_t init_taken = 0, init_total = 0;
    cli_data data;
    cli_data_defaults(&data, "train");
    sm_train_config cfg;
    sm_train_config_default(&cfg);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_SHORTOPTS, opts, NULL)) != -1) {
        int r = cli_data_option(cmd, &data, c, optarg);
        if (r < 0) return EXIT_USAGE;
        if (r) continue;
        switch (c) {
        case O_MODEL: spec_arg = optarg; model_given = 1; break;
        case O_LOSS: loss_name = optarg; break;
        case O_LOSSOPTS: loss_opts = optarg; break;
        case O_EPOCHS: if (cli_int(cmd, "--epochs", optarg, 1, 100000, &cfg.epochs)) return EXIT_USAGE; break;
        case O_BATCH: if (cli_int(cmd, "--batch", optarg, 1, 65536, &cfg.batch_size)) return EXIT_USAGE; break;
        case O_LR: if (cli_float(cmd, "--lr", optarg, 1e-12, 100, &cfg.lr)) return EXIT_USAGE; break;
        case O_OPT: if (cli_optimizer(cmd, optarg, &cfg.optimizer)) return EXIT_USAGE; break;
        case O_MOM: if (cli_float(cmd, "--momentum", optarg, 0, 0.9999, &cfg.momentum)) return EXIT_USAGE; break;
        case O_WD: if (cli_float(cmd, "--weight-decay", optarg, 0, 10, &cfg.weight_decay)) return EXIT_USAGE; break;
        case O_WARMUP: {
            int w;
            if (cli_int(cmd, "--warmup", optarg, 0, 100000000, &w)) return EXIT_USAGE;
            cfg.warmup_steps = w;
            break;
        }
        case O_SCHED: if (cli_schedule(cmd, optarg, 1, &cfg.schedule)) return EXIT_USAGE; break;
        case O_STEPE: if (cli_int(cmd, "--step-epochs", optarg, 1, 100000, &cfg.step_epochs)) return EXIT_USAGE; break;
        case O_STEPG: if (cli_float(cmd, "--step-gamma", optarg, 1e-6, 1, &cfg.step_gamma)) return EXIT_USAGE; break;
        case O_PERCLASS: if (cli_int(cmd, "--per-class", optarg, 0, 65536, &per_class)) return EXIT_USAGE; break;
        case O_SHIFT: if (cli_int(cmd, "--aug-shift", optarg, 0, 64, &cfg.aug_shift)) return EXIT_USAGE; break;
        case O_FLIP: cfg.aug_flip = 1; break;
        case O_AUGCROP: case O_AUGJITTER: case O_AUGERASE:
            if (cli_aug_option(cmd, c == O_AUGCROP ? 0 : c == O_AUGJITTER ? 1 : 2, optarg, &cfg.aug)) return EXIT_USAGE;
            break;
        case O_PKRANDOM: cfg.pk_random = 1; break;
        case O_EMA: if (cli_float(cmd, "--ema", optarg, 0, 0.999999, &cfg.ema_decay)) return EXIT_USAGE; break;
        case O_EPOCHSIZE: {
            int v;
            if (cli_int(cmd, "--epoch-size", optarg, 0, 2000000000, &v)) return EXIT_USAGE;
            cfg.samples_per_epoch = v;
            break;
        }
        case O_SEED: if (cli_int(cmd, "--seed", optarg, 0, 2147483647, &seed)) return EXIT_USAGE; break;
        case O_THREADS: if (cli_int(cmd, "--threads", optarg, 1, 1024, &threads)) return EXIT_USAGE; break;
        case O_OUT: out = optarg; break;
        case O_QUIET: quiet = 1; break;
        case O_VALSPLIT: val_split = optarg; break;
        case O_VALCLASSES: val_classes = optarg; break;
        case O_JSON: json = 1; cli_set_json(1); break;
        case O_INIT: init = optarg; break;
        case O_FREEZEBN: cfg.freeze_bn = 1; break;
        case O_FREEZEUNTIL: freeze_until = optarg; break;
        case O_BBLR: if (cli_float(cmd, "--backbone-lr-mult", optarg, 0, 1000, &cfg.backbone_lr_mult)) return EXIT_USAGE; break;
        case O_CKPT: cfg.checkpoint = optarg; break;
        case O_CKPTSTEPS: {
            int v;
            if (cli_int(cmd, "--checkpoint-steps", optarg, 1, 2000000000, &v)) return EXIT_USAGE;
            cfg.checkpoint_steps = v;
            break;
        }
        case O_RESUME: cfg.resume = optarg; break;
        case O_VALFROMTRAIN: if (cli_int(cmd, "--val-classes-from-train", optarg, 1, 1 << 24, &val_from_train)) return EXIT_USAGE; break;
        case O_KEEPBEST: cfg.keep_best = 1; break;
        case O_EMBEDAT: embed_at = optarg; break;
        case O_GRADSHARDS: if (cli_int(cmd, "--grad-shards", optarg, 0, 65536, &cfg.grad_shards)) return EXIT_USAGE; break;
        case 'h':
        case O_HELP: printf("%s%s", help, cli_data_help); return EXIT_OK;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    cfg.seed = (uint64_t)seed;
    if (cfg.optimizer == SM_OPT_ADAMW && cfg.weight_decay == 0) cfg.weight_decay = 0.01f;
    cfg.per_class = per_class >= 0 ? per_class : is_classifier(loss_name) ? 0 : 32;
    if (cfg.per_class > cfg.batch_size)
        return cli_usage_error(cmd, "--per-class %d is larger than --batch %d", cfg.per_class, cfg.batch_size);
    if (val_classes && !val_split && !data.folder) return cli_usage_error(cmd, "--val-classes needs --val-split (or --folder)");
    if (val_split && data.folder) return cli_usage_error(cmd, "--val-split reads from --data; with --folder give --val-classes");
    if (val_from_train && val_split) return cli_usage_error(cmd, "--val-classes-from-train and --val-split exclude each other");
    if (cfg.keep_best && !val_split && !val_from_train)
        return cli_usage_error(cmd, "--keep-best needs a validation set (--val-classes-from-train K or --val-split)");
    if (cfg.grad_shards > cfg.batch_size)
        return cli_usage_error(cmd, "--grad-shards %d is larger than --batch %d", cfg.grad_shards, cfg.batch_size);
    if (cfg.checkpoint_steps && !cfg.checkpoint) return cli_usage_error(cmd, "--checkpoint-steps needs --checkpoint");
    if (cfg.checkpoint && !*cfg.checkpoint) return cli_usage_error(cmd, "--checkpoint: empty file name");
    if (val_split && (data.images || data.labels))
        return cli_usage_error(cmd, "--val-split reads from --data; it cannot be used with --images/--labels");
    if (cli_check_loss(cmd, loss_name, loss_opts, is_classifier(loss_name))) return EXIT_USAGE;
    sm_set_num_threads(threads);

    /* under mpirun: data-parallel training, rank 0 prints and saves (docs/distributed.md) */
    sm_dist *group = NULL;
    sm_status gst = sm_dist_init(&group);
    if (gst) return cli_report(cmd, gst, NULL);
    const int rank = sm_dist_rank(group), nranks = sm_dist_size(group);
    if (nranks > 1) cfg.dist = group;
    if (nranks > 1 && cfg.grad_shards > 1 && cfg.grad_shards != nranks) {
        int urc = cli_usage_error(cmd, "--grad-shards %d under %d ranks: each rank is one shard (give 0 or %d)",
                                  cfg.grad_shards, nranks, nranks);
        sm_dist_free(group);
        return urc;
    }
    if (rank > 0) { quiet = 1; json = 0; val_split = NULL; cli_set_json(0); }

    sm_dataset *ds = NULL;
    val_state val = {0};
    val.quiet = quiet;
    sm_model *m = NULL;
    sm_loss *loss = NULL;
    char *spec_owned = NULL;
    int rc = EXIT_OK;
    char **names = NULL;
    int nnames = 0;
    sm_status st = cli_data_load_full(&data, &ds, NULL, 0, NULL, &names, &nnames);
    if (st) { rc = cli_report(cmd, st, NULL); goto done; }
    if (val_from_train) { /* the last K classes present become the validation set */
        int ncls = sm_dataset_num_classes(ds), npresent = 0;
        int32_t *present = malloc(sizeof(int32_t) * (size_t)(ncls + 1));
        char *has = calloc((size_t)ncls + 1, 1);
        if (!present || !has) { free(present); free(has); rc = cli_report(cmd, SM_ERR_NOMEM, NULL); goto done; }
        const int32_t *y = sm_dataset_labels(ds);
        for (int64_t i = 0; i < sm_dataset_size(ds); i++) has[y[i]] = 1;
        for (int k = 0; k < ncls; k++) if (has[k]) present[npresent++] = k;
        free(has);
        if (val_from_train < 2 || val_from_train > npresent - 2) {
            free(present);
            rc = cli_usage_error(cmd, "--val-classes-from-train %d: K must be at least 2 (MAP@R over one class is always "
                                 "1) and leave at least 2 of the training data's %d classes for training", val_from_train,
                                 npresent);
            goto done;
        }
        int h0, w0, c0;
        sm_dataset_shape(ds, &h0, &w0, &c0);
        st = sm_dataset_from_arrays(&val.ds, sm_dataset_images(ds), y, sm_dataset_size(ds), h0, w0, c0);
        if (!st) st = sm_dataset_filter_classes(val.ds, present + npresent - val_from_train, val_from_train);
        if (!st) st = sm_dataset_filter_classes(ds, present, npresent - val_from_train);
        if (!st && !quiet) {
            fprintf(cli_text(), "train: classes");
            for (int k = npresent - val_from_train; k < npresent; k++) fprintf(cli_text(), " %d", present[k]);
            fprintf(cli_text(), " held out for validation (%lld images)\n", (long long)sm_dataset_size(val.ds));
        }
        free(present);
        if (st) { rc = cli_report(cmd, st, NULL); goto done; }
    }
    int h, w, ch;
    sm_dataset_shape(ds, &h, &w, &ch);
    if ((st = cli_train_data_check(&data, ds, names))) { rc = cli_report(cmd, st, NULL); goto done; }
    if (init && !model_given) { /* fine-tune the init model's own network */
        sm_model *src = NULL;
        if ((st = sm_model_load(&src, init))) { rc = cli_report(cmd, st, NULL); goto done; }
        init_spec = strdup(sm_model_spec(src));
        sm_model_free(src);
        if (!init_spec) { rc = cli_report(cmd, SM_ERR_NOMEM, NULL); goto done; }
        spec_arg = init_spec;
    }
    const char *spec = cli_spec_arg(spec_arg, &spec_owned, &st);
    if (st) { rc = cli_report(cmd, st, NULL); goto done; }
    if ((st = sm_model_create(&m, spec, h, w, ch, cfg.seed))) { rc = cli_report(cmd, st, NULL); goto done; }
    if ((st = cli_model_set_data(&data, m, ch, names, nnames))) { rc = cli_report(cmd, st, sm_model_errmsg(m)); goto done; }
    if (freeze_until && (rc = cli_layer_arg(cmd, m, "--freeze-until", freeze_until, 1, "the model", &cfg.freeze_until)))
        goto done;
    if (embed_at) { /* the trunk's output is the embedding; checked here, before any training */
        sm_model *trunk = NULL;
        if ((rc = cli_layer_arg(cmd, m, "--embed-at", embed_at, 0, "the model", &cfg.embed_at))) goto done;
        if ((st = sm_model_cut(m, cfg.embed_at, &trunk))) { rc = cli_usage_error(cmd, "--embed-at: %s", sm_errmsg()); goto done; }
        sm_model_free(trunk);
    }
    if (init) { /* fine-tuning: take every tensor of the same name and shape */
        sm_model *src = NULL;
        if ((st = sm_model_load(&src, init))) { rc = cli_report(cmd, st, NULL); goto done; }
        size_t cap = 1 << 16;
        char *report = malloc(cap);
        if (!report) { sm_model_free(src); rc = cli_report(cmd, SM_ERR_NOMEM, NULL); goto done; }
        st = sm_model_init_from(m, src, &init_taken, report, cap);
        sm_model_free(src);
        for (const char *q = report; *q; q++) init_total += *q == '\n';
        if (!quiet || st) {
            fprintf(st ? stderr : cli_text(), "init: from %s, %lld of %lld tensors taken\n", init, (long long)init_taken,
                    (long long)init_total);
            for (const char *q = report; *q;) {
                const char *e = strchr(q, '\n');
                fprintf(st ? stderr : cli_text(), "init:   %.*s\n", (int)(e - q), q);
                q = e + 1;
            }
        }
        free(report);
        if (st) {
            cli_fail(st, "--init %s: %s", init, sm_model_errmsg(m));
            rc = cli_report(cmd, st, NULL);
            goto done;
        }
    }
    char lopts[512];
    snprintf(lopts, sizeof lopts, "%s", loss_opts);
    if (is_classifier(loss_name) && !strstr(loss_opts, "classes="))
        snprintf(lopts, sizeof lopts, "classes=%d%s%s", sm_dataset_num_classes(ds), *loss_opts ? "," : "", loss_opts);
    if ((st = sm_loss_create(&loss, loss_name, lopts, sm_model_embedding_dim(m), cfg.seed + 1))) {
        rc = cli_report(cmd, st, NULL);
        goto done;
    }
    if (val_split || val_classes) {
        cli_data vd = data;
        vd.stream = vd.cache = 0; /* the validation set is embedded whole */
        vd.split = val_split;
        vd.classes = val_classes;
        if ((st = cli_data_load(&vd, &val.ds))) { rc = cli_report(cmd, st, NULL); goto done; }
    }
    if (val.ds && sm_dataset_size(val.ds) < 2) {
        rc = cli_report(cmd, cli_fail(SM_ERR_INVALID, "the validation set has fewer than 2 images"), NULL);
        goto done;
    }
    cfg.val = val.ds;
    if (json && !(val.log = calloc((size_t)cfg.epochs, sizeof *val.log))) { rc = cli_report(cmd, SM_ERR_NOMEM, NULL); goto done; }
    val.nlog = json ? cfg.epochs : 0;
    if (!quiet || val.ds || json) {
        cfg.progress = train_progress;
        cfg.user = &val;
    }
    if (!quiet) {
        long long nimg = (long long)sm_dataset_size(ds);
        int ncls = sm_dataset_num_classes(ds), nthr = sm_get_num_threads();
        fprintf(cli_text(), "train: %lld %s %dx%dx%d, %d %s, model %lld parameters, embedding %d, loss %s%s%s\n", nimg,
               cli_pl(nimg, "image", "images"), h, w, ch, ncls, cli_pl(ncls, "class", "classes"),
               (long long)sm_model_num_params(m), sm_model_embedding_dim(m), loss_name, *lopts ? " " : "", lopts);
        fprintf(cli_text(), "       batch %d%s, %d %s, lr %g, %d %s", cfg.batch_size, cfg.per_class ? " (P x K sampling)" : " (shuffled)",
               cfg.epochs, cli_pl(cfg.epochs, "epoch", "epochs"), (double)cfg.lr, nthr, cli_pl(nthr, "thread", "threads"));
        if (nranks > 1) fprintf(cli_text(), " a rank, %d ranks (MPI, SyncBN)", nranks);
        fputc('\n', cli_text());
        char comp[512];
        cli_compute_line(comp, sizeof comp);
        fprintf(cli_text(), "       %s\n", comp);
    }
    cli_compute_warning(cmd);
    if (cfg.resume && !quiet) fprintf(cli_text(), "train: resuming from %s\n", cfg.resume);
    if ((st = sm_train(m, loss, ds, &cfg))) { rc = cli_report(cmd, st, sm_model_errmsg(m)); goto done; }
    fputs(sm_model_profile(m), stderr); /* SIMILE_PROFILE=1: per-layer times */
    if (val.failed) { rc = EXIT_FAIL; goto done; }
    double sel_map = 0;
    int sel_best = 0, sel_epoch = sm_model_selection(m, &sel_map, &sel_best);
    if (sel_best) { val.best_epoch = sel_epoch; val.best_mapr = sel_map; } /* also over the epochs before a --resume */
    if (val.ds && val.best_epoch)
        fprintf(cli_text(), "best validation MAP@R %.4f at epoch %d (the model saved is %s)\n", val.best_mapr,
                val.best_epoch, sel_best ? "this epoch's, --keep-best" : "the last epoch's");
    if (nranks > 1 && !quiet)
        fprintf(cli_text(), "communication: %.2f s on rank 0\n", sm_dist_comm_seconds(group));
    if (rank > 0) goto done; /* every rank holds the same model: rank 0 writes it */
    int saved_dim = sm_model_embedding_dim(m);
    if (cfg.embed_at) { /* the trunk is the model: layers 1..embed_at */
        sm_model *trunk = NULL;
        if ((st = sm_model_cut(m, cfg.embed_at, &trunk))) { rc = cli_report(cmd, st, NULL); goto done; }
        st = sm_model_save(trunk, out);
        if (st) rc = cli_report(cmd, st, sm_model_errmsg(trunk));
        saved_dim = sm_model_embedding_dim(trunk);
        sm_model_free(trunk);
        if (st) goto done;
        if (!quiet) fprintf(cli_text(), "saved %s: layers 1..%d of the trained network, embedding %d (--embed-at %s)\n", out,
                            cfg.embed_at, saved_dim, embed_at);
    } else {
        if ((st = sm_model_save(m, out))) { rc = cli_report(cmd, st, sm_model_errmsg(m)); goto done; }
        if (!quiet) fprintf(cli_text(), "saved %s\n", out);
    }
    if (json) {
        cj j;
        cj_init(&j, stdout);
        cj_obj(&j);
        cj_kstr(&j, "command", "train");
        cj_kint(&j, "images", (long long)sm_dataset_size(ds));
        cj_key(&j, "image_shape");
        cj_arr(&j); cj_int(&j, h); cj_int(&j, w); cj_int(&j, ch); cj_arr_end(&j);
        cj_kint(&j, "classes", sm_dataset_num_classes(ds));
        /* what the images were normalised with (stored in the model), and the class names */
        sm_normalization nz;
        sm_model_normalization(m, &nz);
        cj_key(&j, "normalization");
        cj_obj(&j);
        cj_kstr(&j, "kind", nz.kind == SM_NORM_MEAN_STD ? "mean_std" : nz.kind == SM_NORM_NONE ? "none" : "unknown");
        if (nz.kind == SM_NORM_MEAN_STD) {
            cj_key(&j, "mean");
            cj_arr(&j);
            for (int k = 0; k < nz.channels; k++) cj_numf(&j, nz.mean[k]);
            cj_arr_end(&j);
            cj_key(&j, "std");
            cj_arr(&j);
            for (int k = 0; k < nz.channels; k++) cj_numf(&j, nz.std[k]);
            cj_arr_end(&j);
        }
        cj_obj_end(&j);
        if (sm_model_num_class_names(m) > 0) {
            cj_key(&j, "class_names");
            cj_arr(&j);
            for (int k = 0; k < sm_model_num_class_names(m); k++) cj_str(&j, sm_model_class_name(m, k));
            cj_arr_end(&j);
        }
        cj_kint(&j, "parameters", (long long)sm_model_num_params(m));
        cj_kint(&j, "embedding_dim", sm_model_embedding_dim(m));
        cj_kstr(&j, "loss", loss_name);
        cj_kstr(&j, "loss_opts", lopts);
        cj_kint(&j, "batch", cfg.batch_size);
        cj_kint(&j, "per_class", cfg.per_class);
        cj_kint(&j, "epochs", cfg.epochs);
        cj_knumf(&j, "lr", cfg.lr);
        cj_kint(&j, "seed", seed);
        cj_kint(&j, "threads", sm_get_num_threads());
        cj_kint(&j, "ranks", nranks);
        cj_kint(&j, "grad_shards", cfg.grad_shards);
        cj_knum(&j, "communication_seconds", sm_dist_comm_seconds(group));
        sm_compute_info ci;
        sm_compute_info_get(&ci);
        cj_key(&j, "compute");
        cj_obj(&j);
        cj_kstr(&j, "cpu", ci.cpu);
        cj_kint(&j, "cpu_family", ci.cpu_family);
        cj_kint(&j, "cpu_model", ci.cpu_model);
        cj_kstr(&j, "vector_isa", ci.vector_isa);
        cj_kstr(&j, "cpu_flags", ci.cpu_flags);
        cj_kstr(&j, "blas", ci.blas);
        cj_kstr(&j, "blas_core", ci.blas_core);
        cj_kstr(&j, "blas_warning", ci.warning[0] ? ci.warning : NULL);
        cj_obj_end(&j);
        cj_key(&j, "epoch_log");
        cj_arr(&j);
        for (int e = 0; e < val.nlog; e++) {
            const epoch_log *l = &val.log[e];
            if (!l->ran) continue;
            cj_obj(&j);
            cj_kint(&j, "epoch", e + 1);
            cj_knum(&j, "loss", l->loss);
            cj_knum(&j, "images_per_sec", l->images_per_sec);
            cj_knum(&j, "seconds", l->seconds);
            cj_knumf(&j, "lr", (float)l->lr);
            if (l->val) {
                cj_key(&j, "val");
                cj_obj(&j);
                cj_knum(&j, "precision_at_1", l->p1);
                cj_knum(&j, "r_precision", l->rp);
                cj_knum(&j, "map_at_r", l->mapr);
                cj_obj_end(&j);
            }
            cj_obj_end(&j);
        }
        cj_arr_end(&j);
        if (val.ds && val.best_epoch) {
            cj_knum(&j, "best_val_map_at_r", val.best_mapr);
            cj_kint(&j, "best_val_epoch", val.best_epoch);
        }
        if (cfg.embed_at) {
            cj_key(&j, "embed_at");
            cj_obj(&j);
            cj_kint(&j, "layer", cfg.embed_at);
            cj_kint(&j, "embedding_dim", saved_dim);
            cj_obj_end(&j);
        }
        if (sel_epoch) {
            cj_key(&j, "selection");
            cj_obj(&j);
            cj_kint(&j, "epoch", sel_epoch);
            cj_knum(&j, "val_map_at_r", sel_map);
            cj_kstr(&j, "rule", sel_best ? "best" : "last");
            cj_kint(&j, "val_classes_from_train", val_from_train);
            cj_obj_end(&j);
        }
        if (init) {
            cj_key(&j, "init");
            cj_obj(&j);
            cj_kstr(&j, "from", init);
            cj_kint(&j, "tensors_taken", (long long)init_taken);
            cj_kint(&j, "tensors_fresh", (long long)(init_total - init_taken));
            cj_obj_end(&j);
        }
        if (cfg.resume) cj_kstr(&j, "resumed_from", cfg.resume);
        cj_kstr(&j, "out", out);
        cj_obj_end(&j);
    }
done:
    sm_dist_free(group);
    free(init_spec);
    free(names);
    free(val.log);
    sm_dataset_free(val.ds);
    free(spec_owned);
    sm_loss_free(loss);
    sm_model_free(m);
    sm_dataset_free(ds);
    return rc;
}
