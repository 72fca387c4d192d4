/* cli_gallery.h - the open-set recognition commands (embed, gallery, identify, verify,
 * classify) and the input loading they share: IDX files (cli_data), a folder of class
 * sub-folders, single image files, or embeddings in a .npy file; a per-class selection
 * (skip the first N of each class, keep the next M); embedding with a model. */
#ifndef SM_CLI_GALLERY_H
#define SM_CLI_GALLERY_H
#include "cli.h"

#define CLI_MAX_IMAGES 4096

/* Where queries or enrolment data come from (exactly one source, named explicitly). */
typedef struct cli_inputs {
    cli_data data;                      /* IDX files (the default source) and normalisation */
    const char *folder;                 /* --folder DIR */
    const char *npy, *npy_labels;       /* --npy FILE (n, d) embeddings, --npy-labels FILE (n) */
    const char *images[CLI_MAX_IMAGES]; /* --image FILE or positional arguments */
    int nimages;
    int first_per_class;                /* --first-per-class M: keep M of each class (0 = all) */
    int skip_per_class;                 /* --skip-per-class N: drop the first N of each class */
    int raw;                            /* --raw: do not L2-normalise embeddings */
    int skip_bad;                       /* --skip-bad: leave out unreadable image files */
    int threads;                        /* --threads N */
    int data_given;                     /* --data, --split, --images or --labels was given */
} cli_inputs;

/* Loaded inputs: embeddings (or images), labels and the name of each label. */
typedef struct cli_batch {
    int64_t n;
    int d;
    float *emb;        /* (n, d) embeddings; NULL until embedded */
    sm_dataset *ds;    /* images (n, h, w, c) when the source was images; NULL for .npy */
    int32_t *labels;   /* (n) labels, NULL if unlabelled */
    char **names;      /* (nnames) label -> class name, NULL if unlabelled */
    int nnames;
    const char **item; /* (n) where each input came from: its file path, or "<file>#<index>" for
                        * an IDX sample or a .npy row (the gallery stores it as the source) */
    char *item_buf;    /* storage for generated descriptions */
} cli_batch;

/* Long options of the inputs (to append to a command's table) and their help text. */
#define CLI_INPUT_OPTIONS                                                                    \
    {"data", 1, 0, 1000}, {"split", 1, 0, 1001}, {"images", 1, 0, 1002},                  \
    {"labels", 1, 0, 1003}, {"classes", 1, 0, 1004}, {"mean", 1, 0, 1005},                 \
    {"std", 1, 0, 1006}, {"no-normalize", 0, 0, 1007}, {"folder", 1, 0, 1100},           \
    {"npy", 1, 0, 1101}, {"npy-labels", 1, 0, 1102}, {"image", 1, 0, 1103},              \
    {"first-per-class", 1, 0, 1104}, {"skip-per-class", 1, 0, 1105}, {"raw", 0, 0, 1106},  \
    {"threads", 1, 0, 1107}, {"skip-bad", 0, 0, 1108}, {"normalize", 1, 0, 1008}
extern const char *const cli_inputs_help;

void cli_inputs_defaults(cli_inputs *in, const char *split);
/* Handle an input option: 1 consumed, 0 not an input option, -1 bad value (reported). */
int cli_inputs_option(const char *cmd, cli_inputs *in, int opt, const char *arg);
/* Add positional arguments as image files; returns non-zero (reported) on too many. */
int cli_inputs_positional(const char *cmd, cli_inputs *in, int argc, char **argv, int first);
/* EXIT_OK if an input source was named (--folder, --npy, --image or image arguments,
 * --images/--labels, --data DIR or --split S); else a usage error saying what to give (EXIT_USAGE).  The
 * commands acting on a user's gallery or images never fall back to the built-in data. */
int cli_inputs_require(const char *cmd, const cli_inputs *in);
/* 1 if the inputs are embeddings (.npy) rather than images. */
int cli_inputs_are_embeddings(const cli_inputs *in);

/* Load the inputs; images are decoded at the model's input shape (m may be NULL only for
 * .npy).  Applies the per-class selection.  On failure the batch is empty and the message is
 * recorded (cli_report prints it). */
sm_status cli_inputs_load(const char *cmd, const cli_inputs *in, sm_model *m, cli_batch *b);
/* Embed the loaded images with m (no-op for .npy) and L2-normalise unless in->raw. */
sm_status cli_batch_embed(const cli_inputs *in, sm_model *m, cli_batch *b);
void cli_batch_free(cli_batch *b);
/* The class name of input i ("" if unlabelled). */
const char *cli_batch_name(const cli_batch *b, int64_t i);


/* Parse "nearest", "vote", "centroid".  Returns 0 on success. */
int cli_parse_rule(const char *s, sm_decision_rule *rule);
const char *cli_rule_name(sm_decision_rule rule);
/* Load the model at path into *m (NULL, and EXIT_OK, when path is NULL: embedding inputs need
 * none); on failure print the error and return its exit code. */
int cli_load_model(const char *cmd, const char *path, sm_model **m);
/* Open a gallery and, when m is not NULL, check that it was built with that model; on a
 * mismatch *g is NULL and the message names the file. */
sm_status cli_gallery_open_checked(const char *path, sm_model *m, sm_gallery **g);
/* For a change: as cli_gallery_open_checked, journaled (sm_gallery_open_journaled): each change
 * is appended to "<path>.journal" and fsynced, not a rewrite of the gallery file. */
sm_status cli_gallery_open_write(const char *path, sm_model *m, sm_gallery **g);
/* After the changes: fold the journal into the gallery file once it holds
 * CLI_CHECKPOINT_RECORDS records (the changes are durable either way). */
#define CLI_CHECKPOINT_RECORDS 256
sm_status cli_gallery_commit(sm_gallery *g);
/* Warn on stderr (once per call) when g's threshold was calibrated and items were enrolled or
 * removed since: the threshold may no longer fit. */
void cli_gallery_warn_changed(const char *cmd, const char *path, const sm_gallery *g);
/* l2, cosine or ip; -1 for anything else. */
int cli_parse_metric(const char *s, sm_metric *metric);
const char *cli_metric_name(sm_metric m);

int cmd_embed(int argc, char **argv);
int cmd_gallery(int argc, char **argv);
int cmd_identify(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_classify(int argc, char **argv);

#endif
