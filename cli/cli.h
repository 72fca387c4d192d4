/* cli.h - shared pieces of the simile command-line tool: exit codes, option helpers, data
 * loading with the Fashion-MNIST defaults, progress display.  Calls only the public API. */
#ifndef SM_CLI_H
#define SM_CLI_H
#include "simile.h"
#include <stdio.h>
#include "json.h"

/* Exit codes scripts can rely on. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_INPUT = 3, EXIT_NUMERIC = 4 };
/* simile verify: the two inputs were decided "different" (0 is "same", or no decision). */
enum { EXIT_DIFFERENT = 10 };

#ifndef SM_DEFAULT_DATA_DIR /* overridable at build time (the CLI fuzz target points it elsewhere) */
#define SM_DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist"
#endif
#define SM_FMNIST_MEAN 0.2860f
#define SM_FMNIST_STD 0.3530f

/* Where human-readable results go: stdout, or stderr while a --json document owns stdout
 * (cli_set_json(1)).  main() resets it before each command. */
FILE *cli_text(void);
void cli_set_json(int on);
/* on: cli_text() writes to /dev/null (a rank other than 0 under mpirun: rank 0 alone prints);
 * errors still go to stderr. */
void cli_set_silent(int on);
int cli_json_on(void);

/* Exit code for a library status (input errors -> EXIT_INPUT, NaN -> EXIT_NUMERIC). */
int cli_exit_code(sm_status st);
/* Print "simile <cmd>: <message>" for a failed status to stderr and return its exit code. */
int cli_report(const char *cmd, sm_status st, const char *detail);
/* Record a CLI-level message for cli_report and return st. */
sm_status cli_fail(sm_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print a usage error and return EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...);
/* *layer = the 1-based layer of m that text names ("N" or "N.kind", sm_model_find_layer); with
 * allow_zero, "0" gives 0 (none).  Returns EXIT_OK, or a usage error naming opt, text and what
 * (e.g. "the model" or a file name). */
int cli_layer_arg(const char *cmd, const sm_model *m, const char *opt, const char *text, int allow_zero,
                  const char *what, int *layer);

/* The short options every command's getopt_long takes: "-h" (returned as 'h'), the same as
 * --help.  Commands print their help on stdout and exit 0 for either. */
#define CLI_SHORTOPTS "h"
/* 1 if arg is -h or --help (for the commands that parse their arguments by hand). */
int cli_is_help(const char *arg);

/* Check a loss name and its options before any work, by creating the loss (embedding dimension
 * 64) and freeing it.  With caller_adds_classes set, a missing classes= is taken as supplied by
 * the caller (as train does for softmax and focal, compare for every loss that needs it).
 * Returns 0 if the loss can be built, else prints a usage error naming the bad value and the
 * valid ones and returns EXIT_USAGE. */
int cli_check_loss(const char *cmd, const char *name, const char *options, int caller_adds_classes);

/* "image" or "images" for a count: printf("%lld %s", n, cli_pl(n, "image", "images")). */
const char *cli_pl(long long n, const char *one, const char *many);

/* Number parsing for option values; return 0 on success, print an error otherwise. */
int cli_int(const char *cmd, const char *opt, const char *val, int lo, int hi, int *out);
int cli_float(const char *cmd, const char *opt, const char *val, double lo, double hi, float *out);
/* --optimizer: adam, adamw or sgd. */
int cli_optimizer(const char *cmd, const char *val, sm_optimizer *out);
/* --schedule: constant, cosine, and step when allow_step is set. */
int cli_schedule(const char *cmd, const char *val, int allow_step, sm_schedule *out);

/* Where data comes from: a directory with Fashion-MNIST-named files and a split, explicit
 * image and label files, or a folder of class sub-folders of images (docs/data.md);
 * normalisation; class filter. */
typedef struct cli_data {
    const char *dir, *split, *images, *labels, *classes;
    float mean, std;           /* the first channel's --mean / --std (for the report's text) */
    int normalize;
    int norm_given;            /* --mean, --std, --normalize or --no-normalize was given */
    int nmean, nstd;           /* values given to --mean, --std (1 or 3) */
    float means[3], stds[3];
    const char *folder;        /* --folder DIR */
    const char *class_names;   /* --class-names FILE: one name a line, line k names class k (IDX) */
    int size_h, size_w, channels; /* --size HxW, --channels 1|3 for folders (0: default) */
    int skip_bad;              /* --skip-bad: leave out the folder's unreadable images */
    int stream, cache;         /* train --stream: decode the folder batch by batch; --cache: keep them */
    const sm_model *model;     /* set by the caller: its input shape and stored normalisation apply */
} cli_data;
void cli_data_defaults(cli_data *d, const char *split);
/* The getopt_long entries of the data options (ids 1000-1013, handled by cli_data_option). */
#define CLI_DATA_LONGOPTS                                                                        \
    {"data", 1, 0, 1000}, {"split", 1, 0, 1001}, {"images", 1, 0, 1002}, {"labels", 1, 0, 1003}, \
    {"classes", 1, 0, 1004}, {"mean", 1, 0, 1005}, {"std", 1, 0, 1006},                          \
    {"no-normalize", 0, 0, 1007}, {"normalize", 1, 0, 1008}, {"folder", 1, 0, 1009},            \
    {"size", 1, 0, 1010}, {"channels", 1, 0, 1011}, {"class-names", 1, 0, 1012},               \
    {"skip-bad", 0, 0, 1013}
/* train's --stream and --cache (ids 1014, 1015, handled by cli_data_option). */
#define CLI_STREAM_LONGOPTS {"stream", 0, 0, 1014}, {"cache", 0, 0, 1015}
/* Handle a data option; returns 1 if consumed, 0 if not a data option, -1 on a bad value. */
int cli_data_option(const char *cmd, cli_data *d, int opt, const char *arg);
/* The normalisation for images of c channels: the options given; else d->model's stored one;
 * else ImageNet's for a colour folder, Fashion-MNIST's otherwise.  Fails (SM_ERR_INVALID,
 * message set) when the values given do not fit c channels. */
sm_status cli_data_norm(const cli_data *d, int c, sm_normalization *out);
/* Load, filter and normalise. */
sm_status cli_data_load(const cli_data *d, sm_dataset **out);
/* As cli_data_load; also the image file's path (into path, cap bytes) and, when index is not
 * NULL, each kept sample's index in that file (*index (n), release with free()). */
sm_status cli_data_load_ex(const cli_data *d, sm_dataset **out, char *path, size_t cap, int64_t **index);
/* As cli_data_load_ex; *names (may be NULL) receives the class names by label (a folder's
 * sub-folder names, or --class-names), one block released with free(), or NULL if none;
 * *nnames their count. */
sm_status cli_data_load_full(const cli_data *d, sm_dataset **out, char *path, size_t cap, int64_t **index,
                             char ***names, int *nnames);
extern const char *const cli_data_help;

/* A folder to train on must hold two classes at least (SM_ERR_RANGE, message set; names (may be
 * NULL) the class names). */
sm_status cli_train_data_check(const cli_data *d, const sm_dataset *ds, char *const *names);
/* Store in m the normalisation d gives for c channels and the class names (may be NULL). */
sm_status cli_model_set_data(const cli_data *d, sm_model *m, int c, char *const *names, int nnames);

/* --aug-crop (which 0), --aug-jitter (1), --aug-erase (2): "key=value,..." (or "default") into
 * a; 0 on success, else a usage error was printed. */
int cli_aug_option(const char *cmd, int which, const char *arg, sm_augment *a);

/* Read a spec argument: a built-in name, "@file", or literal text.  *owned is set if the
 * returned string must be freed. */
const char *cli_spec_arg(const char *arg, char **owned, sm_status *st);

/* What simile computes with, for headers: "cpu <brand> (family F model M, <ISA>), <BLAS> core <K>,
 * N threads" (no newline) into buf. */
void cli_compute_line(char *buf, size_t cap);
/* The one warning line of sm_compute_info on stderr ("simile <cmd>: warning: ..."), if any. */
void cli_compute_warning(const char *cmd);

/* Progress bar callback for sm_train (stderr when a terminal; per-epoch lines on stdout). */
int cli_train_progress(const sm_train_progress *p, void *user);

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_losses(int argc, char **argv);
int cmd_compare(int argc, char **argv);
/* cmd_interop.c: ONNX in and out (docs/interop.md) */
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_cut(int argc, char **argv);

#endif
