/* trainer.h - the state of a training (sm_trainer) shared by its step (train.c) and its
 * checkpoints (checkpoint.c): everything a checkpoint holds is a field here. */
#ifndef SM_TRAINER_H
#define SM_TRAINER_H
#include "data/data.h"
#include "dist/dist.h"
#include "loss/loss.h"
#include "model/model.h"
#include "train/sampler.h"

#define SM_CKPT_NGROUPS 7 /* groups of settings a checkpoint fingerprints (sm_trainer_config_crcs) */

struct sm_trainer {
    sm_model *m;
    sm_loss *loss;
    const sm_dataset *ds;
    sm_train_config cfg;
    float *xb;            /* (batch, h, w, c) gathered inputs */
    int32_t *yb;          /* (batch) */
    float *gemb;          /* (batch, d) dL/demb */
    sm_dist *dist;        /* the process group when it has several ranks, else NULL */
    float *eall;          /* (batch, d) the whole batch's embeddings, gathered from the ranks */
    int64_t *counts;      /* (ranks) bytes of each rank's shard of embeddings */
    float *backup;        /* (store.n) the whole store after the last good step */
    float *ema;           /* (store.n) moving average of the store, when cfg.ema_decay > 0 */
    float *old_head;      /* (old_nhead) the model's head before training, put back unless
                           * sm_trainer_finish stores the trained one */
    int64_t old_nhead;
    float fill;           /* a blank pixel after normalisation, for shifted-in borders */
    float *aug_scratch;   /* (batch, h, w, c) for the random resized crop, else NULL */
    float mean[3], std[3]; /* the model's input normalisation (0, 1 if none), for colour jitter */
    sm_prefetch *pf;      /* a streamed dataset's batches, decoded ahead; else NULL */
    uint64_t pass_gen;    /* plans made so far: with the batch number, a prefetch key */
    sm_rng rng;
    sm_epoch_plan plan;
    /* where the loop stands */
    int epoch;            /* 0-based current epoch */
    int in_epoch;         /* an epoch has started and not ended */
    int64_t b, pb;        /* steps done this epoch; next batch of the current pass */
    int64_t seen, target, steps; /* samples done this epoch; its target (-1: one pass); steps */
    double sum_loss, t0, t_train;
    int64_t gstep;        /* optimiser steps so far */
    int done, failed, finished;
    /* fine-tuning: the optimiser's ranges of the trainable prefix and their learning-rate
     * multipliers (nranges 0: one range, the whole prefix at lr); ranges of multiplier 0 and
     * frozen batch-norm statistics are "kept": their values never change, in the average too */
    sm_param_range *ranges; /* (nranges) */
    int nranges;
    sm_param_range *keep;   /* (nkeep) store ranges that stay as they are */
    int nkeep;
    uint32_t cfg_crc[SM_CKPT_NGROUPS]; /* what a checkpoint must have been written with, by group
                                        * (checkpoint.c; computed when first needed) */
    int cfg_crc_set;
    /* model selection */
    float *val_emb;         /* (val n, d) */
    sm_model *trunk;        /* cfg.embed_at: layers 1..embed_at (sm_model_cut), its weights
                             * taken from the model again before each validation */
    double *val_hist;       /* (epochs) validation MAP@R of each epoch done; NaN before */
    sm_retrieval_result val_last;
    float *best;            /* (store.n) the store at the best epoch's end (keep_best) */
    int best_epoch;         /* 1-based; 0: none yet */
    double best_val;
    char errmsg[SM_ERRMSG_MAX];
};

/* The fingerprints of what determines a training's bits besides its state and its model spec
 * and loss (which a checkpoint stores as text), one a group of settings: 0 the training data
 * (size, shape, labels, the image values or, streamed, the files and their normalisation) and
 * the model's normalisation; 1 the validation set and keep_best; 2 the optimiser and schedule
 * (epochs included) and the EMA; 3 the sampling and the seed; 4 the augmentation (and the fill
 * value of shifts); 5 fine-tuning (freezing, the learning-rate ranges); 6 the process count. */
void sm_trainer_config_crcs(const sm_trainer *t, uint32_t out[SM_CKPT_NGROUPS]);
/* Version 1's single fingerprint (fewer settings), which version-1 checkpoints hold. */
uint32_t sm_trainer_config_crc_v1(const sm_trainer *t);

#endif
