/* cmd_compare.c - `simile compare`: the softmax-versus-metric-learning report (docs/report.md).
 * Parses options into an sm_compare_config, loads the train and test splits, runs
 * sm_compare_run, and writes report.html, report.json, report.txt and the models to --out. */
#include "cli.h"
#include "simile_report.h"
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *help =
    "usage: simile compare [options]\n"
    "Train one network with softmax cross-entropy and with metric losses on the seen classes,\n"
    "measure every model on unseen classes (retrieval, few-shot enrolment, open set, ROC), on the\n"
    "seen classes (closed-set accuracy) and its embedding structure, repeat with a few images a\n"
    "class, and write a self-contained HTML report, a JSON file of every figure and the models.\n"
    "Defaults: Fashion-MNIST, fmnist-open (seen 0-4, unseen 5-9), cnn-s, 5 epochs (~10 min on 2 idle cores).\n"
    "Under mpirun -np N: every run trains data-parallel and every set is embedded shard by shard;\n"
    "rank 0 prints and writes (docs/distributed.md).\n\n"
    "output:\n"
    "  --out DIR              report.html, report.json, report.txt, models (default results)\n"
    "  --no-save              do not save the models\n"
    "  --quick                1-2 minutes on 2 cores: 1 epoch, 600 train and 300 test images a class,\n"
    "                         smaller galleries and pair sets (any option below still applies)\n"
    "  --quiet                no progress bars or per-epoch lines\n"
    "models and training:\n"
    "  --model SPEC           built-in (cnn-s, cnn-c, cnn-m, mlp, resnet-s, resnet18), @file or layer text (default cnn-s)\n"
    "  --losses LIST          comma-separated (default softmax,multisimilarity,triplet,contrastive)\n"
    "  --loss-opts NAME:OPTS  options of one loss, e.g. triplet:margin=0.2,miner=hard (repeatable;\n"
    "                         default triplet:margin=0.1,miner=semihard)\n"
    "  --seen LIST            classes trained on (default 0-4)\n"
    "  --unseen LIST          classes never trained on (default 5-9)\n"
    "  --epochs N             default 5 (--quick: 1)\n"
    "  --batch N              default 128\n"
    "  --lr X                 default 1e-3\n"
    "  --optimizer O          adam (default), adamw, sgd\n"
    "  --schedule S           constant (default) or cosine (decay to 0 over each run)\n"
    "  --per-class K          P x K sampling for metric losses (default 32)\n"
    "  --seed N               default 1\n"
    "  --grad-shards N        every run's sums over a batch in N parts, as N ranks (simile train)\n"
    "  --threads N            default: all cores\n"
    "  --train-per-class N    first N train images of each seen class (default all; --quick 600)\n"
    "  --test-per-class N     first N test images of each class (default all; --quick 300)\n"
    "evaluation:\n"
    "  --shots N              images enrolled a new class (default 5)\n"
    "  --open-known N         unseen classes enrolled in the open-set test (default 3)\n"
    "  --calib-per-class N    held-out train images a class for the threshold (default 200; --quick 100)\n"
    "  --far X                false-accept rate of the open-set threshold (default 0.01)\n"
    "  --gallery-per-class N  closed-set gallery of train images a seen class (default 1000; --quick 200)\n"
    "  --pairs-per-class N    unseen test images a class for ROC and histograms, 2..500 (default 200;\n"
    "                         --quick 100)\n"
    "  --triplets N           random triplets for the margin fraction (default 100000; --quick 20000)\n"
    "  --margin X             that margin, on L2 of normalised embeddings (default 0.1)\n"
    "  --scatter-per-class N  points a class in the 2-D pictures (default 300; --quick 150)\n"
    "  --few-per-class N      few-samples experiment: train images a seen class, 0 = skip (default 20)\n"
    "  --few-epochs N         its epochs (default 100; --quick 30)\n"
    "  --class-names LIST     comma-separated display names by label, or none (default Fashion-MNIST's)\n"
    "data:\n"
    "  --data DIR             folder with Fashion-MNIST-named IDX files (default " SM_DEFAULT_DATA_DIR ")\n"
    "  --folder DIR           images instead: DIR/train and DIR/test, each one sub-folder a class (the\n"
    "                         same class names in both; docs/data.md); --class-names defaults to them\n"
    "  --size HxW, --channels 1|3, --skip-bad   the folders' images, as simile train takes them\n"
    "  --mean A[,B,C] --std A[,B,C], --normalize imagenet|fmnist|none   normalisation (default\n"
    "                         0.2860 / 0.3530; ImageNet's for colour folders); --no-normalize to skip\n";

static const char *fmnist_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                       "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

static void log_line(const char *line, void *user) {
    (void)user;
    printf("== %s\n", line);
    fflush(stdout);
}

/* cli_train_progress, with at most about 5 per-epoch lines for a run of many epochs. */
static int compare_progress(const sm_train_progress *p, void *user) {
    int every = p->epochs > 10 ? p->epochs / 5 : 1;
    if (p->epoch_done && p->epoch % every && p->epoch != p->epochs) return 0;
    return cli_train_progress(p, user);
}

static int mkdir_p(const char *dir) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') { *p = 0; if (mkdir(tmp, 0777) && errno != EEXIST) return -1; *p = '/'; }
    return mkdir(tmp, 0777) && errno != EEXIST ? -1 : 0;
}

int cmd_compare(int argc, char **argv) {
    enum { O_OUT = 1, O_NOSAVE, O_QUICK, O_QUIET, O_MODEL, O_LOSSES, O_LOSSOPTS, O_SEEN, O_UNSEEN, O_EPOCHS, O_BATCH,
           O_LR, O_OPT, O_SCHED, O_PERCLASS, O_SEED, O_THREADS, O_TRAINPC, O_TESTPC, O_SHOTS, O_OPENK, O_CALIB, O_FAR, O_GALLERY,
           O_PAIRS, O_TRIPLETS, O_MARGIN, O_SCATTER, O_FEWPC, O_FEWEP, O_NAMES, O_HELP, O_GRADSHARDS };
    static const struct option opts[] = {
        {"out", 1, 0, O_OUT}, {"no-save", 0, 0, O_NOSAVE}, {"quick", 0, 0, O_QUICK}, {"quiet", 0, 0, O_QUIET},
        {"model", 1, 0, O_MODEL}, {"losses", 1, 0, O_LOSSES}, {"loss-opts", 1, 0, O_LOSSOPTS}, {"seen", 1, 0, O_SEEN},
        {"unseen", 1, 0, O_UNSEEN}, {"epochs", 1, 0, O_EPOCHS}, {"batch", 1, 0, O_BATCH}, {"lr", 1, 0, O_LR},
        {"optimizer", 1, 0, O_OPT}, {"schedule", 1, 0, O_SCHED}, {"per-class", 1, 0, O_PERCLASS}, {"seed", 1, 0, O_SEED},
        {"threads", 1, 0, O_THREADS}, {"grad-shards", 1, 0, O_GRADSHARDS}, {"train-per-class", 1, 0, O_TRAINPC}, {"test-per-class", 1, 0, O_TESTPC},
        {"shots", 1, 0, O_SHOTS}, {"open-known", 1, 0, O_OPENK}, {"calib-per-class", 1, 0, O_CALIB},
        {"far", 1, 0, O_FAR}, {"gallery-per-class", 1, 0, O_GALLERY}, {"pairs-per-class", 1, 0, O_PAIRS},
        {"triplets", 1, 0, O_TRIPLETS}, {"margin", 1, 0, O_MARGIN}, {"scatter-per-class", 1, 0, O_SCATTER},
        {"few-per-class", 1, 0, O_FEWPC}, {"few-epochs", 1, 0, O_FEWEP}, {"class-names", 1, 0, O_NAMES},
        {"help", 0, 0, O_HELP},
        {"data", 1, 0, 1000}, {"mean", 1, 0, 1005}, {"std", 1, 0, 1006}, {"no-normalize", 0, 0, 1007},
        {"normalize", 1, 0, 1008}, {"folder", 1, 0, 1009}, {"size", 1, 0, 1010}, {"channels", 1, 0, 1011},
        {"skip-bad", 0, 0, 1013}, {0, 0, 0, 0}};
    const char *cmd = "compare", *out = "results", *names_arg = NULL;
    int quiet = 0, save = 1, threads = 0, seed = 1, triplets = -1;
    char losses_buf[1024], names_buf[2048];
    const char *names[128];
    int nnames = 0;
    cli_data data;
    cli_data_defaults(&data, "train");
    sm_compare_config cfg;
    sm_compare_config_default(&cfg);
    /* --quick first, so that explicit options override it whatever their order */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--quick")) {
            cfg.epochs = 1; cfg.train_per_class = 600; cfg.test_per_class = 300; cfg.gallery_per_class = 200;
            cfg.calib_per_class = 100; cfg.pairs_per_class = 100; cfg.scatter_per_class = 150; cfg.few_epochs = 30;
            cfg.triplet_samples = 20000; cfg.quick = 1;
        }
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_SHORTOPTS, opts, NULL)) != -1) {
        int r = cli_data_option(cmd, &data, c, optarg);
        if (r < 0) return EXIT_USAGE;
        if (r) continue;
        switch (c) {
        case O_OUT: out = optarg; break;
        case O_NOSAVE: save = 0; break;
        case O_QUICK: break;
        case O_QUIET: quiet = 1; break;
        case O_MODEL: cfg.model_spec = optarg; break;
        case O_LOSSES: {
            snprintf(losses_buf, sizeof losses_buf, "%s", optarg);
            cfg.num_losses = 0;
            for (char *s = strtok(losses_buf, ","); s; s = strtok(NULL, ",")) {
                if (cfg.num_losses == SM_COMPARE_MAX_LOSSES)
                    return cli_usage_error(cmd, "--losses: at most %d losses", SM_COMPARE_MAX_LOSSES);
                cfg.losses[cfg.num_losses] = s;
                cfg.loss_options[cfg.num_losses++] = !strcmp(s, "triplet") ? "margin=0.1,miner=semihard" : "";
            }
            if (!cfg.num_losses) return cli_usage_error(cmd, "--losses: empty list");
            break;
        }
        case O_LOSSOPTS: break; /* applied after all losses are known */
        case O_SEEN: cfg.seen_classes = optarg; break;
        case O_UNSEEN: cfg.unseen_classes = optarg; break;
        case O_EPOCHS: if (cli_int(cmd, "--epochs", optarg, 1, 100000, &cfg.epochs)) return EXIT_USAGE; break;
        case O_BATCH: if (cli_int(cmd, "--batch", optarg, 1, 65536, &cfg.batch_size)) return EXIT_USAGE; break;
        case O_LR: if (cli_float(cmd, "--lr", optarg, 1e-12, 100, &cfg.lr)) return EXIT_USAGE; break;
        case O_SCHED: {
            sm_schedule s;
            if (cli_schedule(cmd, optarg, 0, &s)) return EXIT_USAGE;
            cfg.schedule = (int)s; /* sm_compare_config keeps it as an int */
            break;
        }
        case O_OPT: {
            sm_optimizer o;
            if (cli_optimizer(cmd, optarg, &o)) return EXIT_USAGE;
            cfg.optimizer = (int)o; /* sm_compare_config keeps it as an int */
            break;
        }
        case O_PERCLASS: if (cli_int(cmd, "--per-class", optarg, 1, 65536, &cfg.per_class)) return EXIT_USAGE; break;
        case O_SEED: if (cli_int(cmd, "--seed", optarg, 0, 2147483647, &seed)) return EXIT_USAGE; break;
        case O_THREADS: if (cli_int(cmd, "--threads", optarg, 1, 1024, &threads)) return EXIT_USAGE; break;
        case O_GRADSHARDS: if (cli_int(cmd, "--grad-shards", optarg, 0, 65536, &cfg.grad_shards)) return EXIT_USAGE; break;
        case O_TRAINPC: if (cli_int(cmd, "--train-per-class", optarg, 0, 1 << 30, &cfg.train_per_class)) return EXIT_USAGE; break;
        case O_TESTPC: if (cli_int(cmd, "--test-per-class", optarg, 0, 1 << 30, &cfg.test_per_class)) return EXIT_USAGE; break;
        case O_SHOTS: if (cli_int(cmd, "--shots", optarg, 1, 100000, &cfg.shots)) return EXIT_USAGE; break;
        case O_OPENK: if (cli_int(cmd, "--open-known", optarg, 1, 1000, &cfg.open_known)) return EXIT_USAGE; break;
        case O_CALIB: if (cli_int(cmd, "--calib-per-class", optarg, 1, 1 << 20, &cfg.calib_per_class)) return EXIT_USAGE; break;
        case O_FAR: {
            float f;
            if (cli_float(cmd, "--far", optarg, 1e-9, 0.999999, &f)) return EXIT_USAGE;
            cfg.far = f;
            break;
        }
        case O_GALLERY: if (cli_int(cmd, "--gallery-per-class", optarg, 1, 1 << 30, &cfg.gallery_per_class)) return EXIT_USAGE; break;
        case O_PAIRS: if (cli_int(cmd, "--pairs-per-class", optarg, 2, 500, &cfg.pairs_per_class)) return EXIT_USAGE; break;
        case O_TRIPLETS: if (cli_int(cmd, "--triplets", optarg, 0, 1 << 30, &triplets)) return EXIT_USAGE; break;
        case O_MARGIN: if (cli_float(cmd, "--margin", optarg, 0, 4, &cfg.triplet_margin)) return EXIT_USAGE; break;
        case O_SCATTER: if (cli_int(cmd, "--scatter-per-class", optarg, 1, 1 << 20, &cfg.scatter_per_class)) return EXIT_USAGE; break;
        case O_FEWPC: if (cli_int(cmd, "--few-per-class", optarg, 0, 1 << 20, &cfg.few_per_class)) return EXIT_USAGE; break;
        case O_FEWEP: if (cli_int(cmd, "--few-epochs", optarg, 1, 100000, &cfg.few_epochs)) return EXIT_USAGE; break;
        case O_NAMES: names_arg = optarg; break;
        case 'h':
        case O_HELP: printf("%s", help); return EXIT_OK;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    /* --loss-opts NAME:OPTS, now that the loss list is final */
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_SHORTOPTS, opts, NULL)) != -1) {
        if (c != O_LOSSOPTS) continue;
        const char *colon = strchr(optarg, ':');
        if (!colon) return cli_usage_error(cmd, "--loss-opts: expected NAME:OPTIONS, got '%s'", optarg);
        int found = 0;
        for (int i = 0; i < cfg.num_losses; i++)
            if (strlen(cfg.losses[i]) == (size_t)(colon - optarg) && !strncmp(cfg.losses[i], optarg, (size_t)(colon - optarg))) {
                cfg.loss_options[i] = colon + 1;
                found = 1;
            }
        if (!found) return cli_usage_error(cmd, "--loss-opts: '%.*s' is not in --losses", (int)(colon - optarg), optarg);
    }
    for (int i = 0; i < cfg.num_losses; i++) /* every loss and its options, before any work */
        if (cli_check_loss(cmd, cfg.losses[i], cfg.loss_options[i], 1)) return EXIT_USAGE;
    if (triplets >= 0) cfg.triplet_samples = triplets;
    cfg.seed = (uint64_t)seed;
    if (cfg.per_class > cfg.batch_size)
        return cli_usage_error(cmd, "--per-class %d is larger than --batch %d", cfg.per_class, cfg.batch_size);
    if (names_arg && !strcmp(names_arg, "none")) {
        cfg.class_names = NULL;
    } else if (names_arg) {
        snprintf(names_buf, sizeof names_buf, "%s", names_arg);
        for (char *s = strtok(names_buf, ","); s && nnames < 128; s = strtok(NULL, ",")) names[nnames++] = s;
        cfg.class_names = names;
        cfg.num_class_names = nnames;
    } else {
        cfg.class_names = fmnist_names;
        cfg.num_class_names = 10;
    }
    sm_set_num_threads(threads);

    /* the command line and data description go into the report */
    char cmdline[4096] = "simile", desc[4096];
    for (int i = 0; i < argc; i++) {
        size_t l = strlen(cmdline);
        snprintf(cmdline + l, sizeof cmdline - l, " %s", argv[i]);
    }
    cfg.command_line = cmdline;
    if (data.folder)
        snprintf(desc, sizeof desc, "image folders %s/train and %s/test (one sub-folder a class), pixels scaled to [0, 1]%s", data.folder,
                 data.folder, data.normalize ? ", normalised per channel (simile info on a saved model shows the values)" : "");
    else if (data.normalize)
        snprintf(desc, sizeof desc, "IDX files in %s (train and t10k splits), pixels scaled to [0, 1], normalised with mean %.4f, std %.4f",
                 data.dir, (double)data.mean, (double)data.std);
    else
        snprintf(desc, sizeof desc, "IDX files in %s (train and t10k splits), pixels scaled to [0, 1]", data.dir);
    cfg.data_description = desc;
    cfg.model_dir = save ? out : NULL;
    cfg.log = log_line;
    if (!quiet) cfg.progress = compare_progress;
    if (cfg.grad_shards > cfg.batch_size)
        return cli_usage_error(cmd, "--grad-shards %d is larger than --batch %d", cfg.grad_shards, cfg.batch_size);

    /* under mpirun: every run data-parallel, every set embedded by shards; rank 0 prints and writes */
    sm_dist *group = NULL;
    sm_status gst = sm_dist_init(&group);
    if (gst) return cli_report(cmd, gst, NULL);
    const int rank = sm_dist_rank(group), nranks = sm_dist_size(group);
    if (nranks > 1 && cfg.grad_shards > 1 && cfg.grad_shards != nranks) {
        int urc = cli_usage_error(cmd, "--grad-shards %d under %d ranks: each rank is one shard (give 0 or %d)",
                                  cfg.grad_shards, nranks, nranks);
        sm_dist_free(group);
        return urc;
    }
    if (nranks > 1) cfg.dist = group;
    if (rank > 0) { quiet = 1; cfg.log = NULL; cfg.progress = NULL; cli_set_silent(1); }

    struct stat sb;
    int out_existed = stat(out, &sb) == 0;
    gst = rank == 0 && mkdir_p(out) ? cli_fail(SM_ERR_IO, "cannot create the output folder") : SM_OK;
    if ((gst = sm_dist_agree(group, gst))) { /* all ranks stop, or none */
        sm_dist_free(group);
        return cli_report(cmd, gst, NULL);
    }
    if (!quiet) {
        char comp[512];
        cli_compute_line(comp, sizeof comp);
        printf("== compare: %s\n", comp);
    }
    cli_compute_warning(cmd);
    sm_dataset *train = NULL, *test = NULL;
    sm_report *rep = NULL;
    int rc = EXIT_OK;
    cli_data test_data = data;
    test_data.split = "t10k";
    char trdir[4096], tedir[4096], **trn = NULL, **ten = NULL;
    int ntrn = 0, nten = 0;
    if (data.folder) { /* DIR/train and DIR/test, the test images at the training images' shape */
        snprintf(trdir, sizeof trdir, "%s/train", data.folder);
        snprintf(tedir, sizeof tedir, "%s/test", data.folder);
        data.folder = trdir;
        test_data.folder = tedir;
    }
    sm_status st = cli_data_load_full(&data, &train, NULL, 0, NULL, &trn, &ntrn);
    if (!st && data.folder) sm_dataset_shape(train, &test_data.size_h, &test_data.size_w, &test_data.channels);
    if (!st) st = cli_data_load_full(&test_data, &test, NULL, 0, NULL, &ten, &nten);
    if (!st && data.folder) {
        int same = ntrn == nten;
        for (int i = 0; same && i < ntrn; i++) same = !strcmp(trn[i], ten[i]);
        if (!same) st = cli_fail(SM_ERR_MISMATCH, "%s and %s must hold the same class sub-folders (%d and %d classes)", trdir, tedir, ntrn, nten);
        if (!st && !names_arg) { /* the folder names are the class names */
            cfg.num_class_names = ntrn < 128 ? ntrn : 128;
            for (int i = 0; i < cfg.num_class_names; i++) names[i] = trn[i];
            cfg.class_names = names;
        }
    }
    if (st) { rc = cli_report(cmd, st, NULL); goto done; }
    if ((st = sm_compare_run(&rep, &cfg, train, test))) { rc = cli_report(cmd, st, NULL); goto done; }
    if (rank > 0) goto done; /* the same report; rank 0 writes it */
    char path[4096];
    snprintf(path, sizeof path, "%s/report.html", out);
    if ((st = sm_report_write_html(rep, path))) { rc = cli_report(cmd, st, NULL); goto done; }
    snprintf(path, sizeof path, "%s/report.json", out);
    if ((st = sm_report_write_json(rep, path))) { rc = cli_report(cmd, st, NULL); goto done; }
    const char *text = sm_report_text(rep);
    fputs(text, stdout);
    snprintf(path, sizeof path, "%s/report.txt", out);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f)) {
        if (f) fclose(f);
        rc = cli_report(cmd, SM_ERR_IO, "cannot write report.txt");
        goto done;
    }
    printf("\nwrote %s/report.html, %s/report.json, %s/report.txt%s\n", out, out, out,
           save ? " and the models (*.smm)" : "");
done:
    free(trn); /* the report has copied the class names it shows */
    free(ten);
    if (rc && !out_existed && rank == 0) rmdir(out); /* a refusal leaves no folder behind (rmdir only removes an empty one) */
    sm_report_free(rep);
    sm_dataset_free(train);
    sm_dataset_free(test);
    cli_set_silent(0);
    sm_dist_free(group);
    return rc;
}
