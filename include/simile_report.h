/* simile_report.h - the public header of simile's comparison report (report/, the static
 * library simile_report): softmax versus metric learning, side by side (docs/report.md).
 * An application of the library: everything it computes goes through include/simile.h, whose
 * conventions (statuses, sm_errmsg(), ownership) hold here too.  Link simile_report and simile. */
#ifndef SIMILE_REPORT_H
#define SIMILE_REPORT_H

#include "simile.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SM_COMPARE_MAX_LOSSES 8

/* Settings of sm_compare_run; sm_compare_config_default gives the defaults in brackets. */
typedef struct sm_compare_config {
    const char *model_spec;          /* network spec or built-in name ["cnn-s"]                 */
    int num_losses;                  /* [4]                                                     */
    const char *losses[SM_COMPARE_MAX_LOSSES];       /* [softmax, multisimilarity, triplet,
                                                         contrastive]                           */
    const char *loss_options[SM_COMPARE_MAX_LOSSES]; /* ["", "", "margin=0.1,miner=semihard",
                                                         ""]; softmax/focal get classes= added */
    const char *seen_classes;        /* trained on ["0-4"]                                      */
    const char *unseen_classes;      /* never trained on ["5-9"]                                */
    const char *const *class_names;  /* display names by label, or NULL ["class N"]            */
    int num_class_names;
    int epochs, batch_size;          /* [5, 128]                                                */
    float lr;                        /* [1e-3]                                                  */
    int optimizer;                   /* an sm_optimizer [SM_OPT_ADAM]                           */
    int schedule;                    /* an sm_schedule, SM_SCHED_CONSTANT or SM_SCHED_COSINE
                                        (decays to 0 over each run's steps) [constant]          */
    int per_class;                   /* P x K sampling for metric losses, K [32]; classifiers
                                        (softmax, focal) use shuffled batches                   */
    uint64_t seed;                   /* model init, sampling and triplet sampling [1]          */
    int train_per_class;             /* first N train images of each seen class, 0 = all [0]   */
    int test_per_class;              /* first N test images of each class, 0 = all [0]         */
    int gallery_per_class;           /* closed set: first N train images a seen class [1000]   */
    int shots;                       /* few-shot enrolment: train images a new class [5]        */
    int open_known;                  /* open set: the first N unseen classes are enrolled [3]   */
    int calib_per_class;             /* open set: held-out train images a class for the
                                        threshold, after the shots [200]                        */
    double far;                      /* open set and verification: false-accept rate [0.01]    */
    int pairs_per_class;             /* unseen test images a class for ROC and histograms [200] */
    int64_t triplet_samples;         /* random triplets for the margin fraction [100000]       */
    float triplet_margin;            /* margin on L2 of normalised embeddings [0.1]            */
    int scatter_per_class;           /* points a class in the 2-D pictures [300]               */
    int few_per_class;               /* few-samples experiment: train images a seen class,
                                        0 = skip it [20]                                        */
    int few_epochs;                  /* epochs of the few-samples runs [100]                    */
    const char *model_dir;           /* save every model there as <loss>.smm and
                                        few_<loss>.smm; NULL = do not save [NULL]               */
    const char *command_line;        /* recorded in the report [NULL]                           */
    const char *data_description;    /* recorded in the report [NULL]                           */
    int quick;                       /* a shortened run (the CLI's --quick): the report says so
                                        at its top [0]                                          */
    /* Training progress of each run (as sm_train_config.progress), may be NULL. */
    int (*progress)(const struct sm_train_progress *p, void *user);
    /* One line of news at each stage ("training softmax (1/4) ...", a time and throughput line
     * after each run), may be NULL. */
    void (*log)(const char *line, void *user);
    void *user;                      /* passed to progress and log */
    /* Data-parallel over a process group (docs/distributed.md) [NULL: this process]: every run
     * trains on the group (sm_train_config.dist), the embeddings and logits are computed shard
     * by shard and gathered (sm_model_embed_dist); every rank computes the same report, and only
     * rank 0 writes models to model_dir.  Every rank passes the same configuration and data. */
    sm_dist *dist;
    int grad_shards;                 /* sm_train_config.grad_shards of every run [0]            */
} sm_compare_config;

/* Fill cfg with the defaults above. */
void sm_compare_config_default(sm_compare_config *cfg);

/* The figures of one comparison; free with sm_report_free. */
typedef struct sm_report sm_report;

/* Run the comparison (docs/report.md): train the model spec with each loss on the seen classes
 * of `train`, then measure on `test`: retrieval (P@1, R-precision, MAP@R) on the unseen classes;
 * few-shot identification of the unseen classes from `shots` enrolled train images each (nearest
 * neighbour and nearest centroid); open-set identification (the first open_known unseen classes
 * enrolled, threshold at `far` on held-out train pairs, the other unseen classes to be rejected);
 * verification ROC; closed-set accuracy on the seen classes (the head's argmax where the loss has
 * one, nearest neighbour and centroid over a gallery of train images); the embedding structure
 * (intra/inter-class distances, fraction of triplets satisfying the margin); a 2-D PCA picture;
 * then the few-samples experiment.  Both datasets must hold the seen and unseen classes, already
 * normalised.  Same config, data and thread count give the same figures.  The model spec and
 * every loss with its options are built (and freed) before the first run trains anything, so a
 * bad one is refused before any work and nothing is written to model_dir.
 * Errors: SM_ERR_INVALID (bad config), SM_ERR_RANGE (a class with too few images), and those of
 * sm_model_create, sm_loss_create, sm_train (SM_ERR_NUMERIC if training diverges), sm_model_save. */
sm_status sm_compare_run(sm_report **out, const sm_compare_config *cfg, const sm_dataset *train,
                         const sm_dataset *test);

/* Write the report as one self-contained HTML file (inline CSS and SVG, no script, no network)
 * or as JSON with every figure's data, atomically.  Errors: SM_ERR_INVALID, SM_ERR_IO. */
sm_status sm_report_write_html(const sm_report *r, const char *path);
sm_status sm_report_write_json(const sm_report *r, const char *path);

/* The plain-text tables (owned by r, valid until it is freed); "" on a NULL report. */
const char *sm_report_text(sm_report *r);

/* Total wall time of sm_compare_run in seconds. */
double sm_report_wall_seconds(const sm_report *r);

void sm_report_free(sm_report *r);

#ifdef __cplusplus
}
#endif
#endif /* SIMILE_REPORT_H */
