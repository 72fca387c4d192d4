/* ckpt_setup.h - the small training that fuzz_checkpoint loads checkpoints into and that
 * make_corpus writes its seed checkpoints from (the same data, model, loss and settings, so
 * that the seeds pass the settings' fingerprint and the fuzzer reaches the blocks). */
#ifndef SM_CKPT_SETUP_H
#define SM_CKPT_SETUP_H
#include "simile.h"
#include <stdlib.h>

typedef struct fz_training { sm_dataset *ds, *val; sm_model *m; sm_loss *loss; sm_trainer *t; } fz_training;

static inline sm_dataset *fz_ckpt_data(int n, int classes, int salt) {
    float x[24 * 16];
    int32_t y[24];
    for (int i = 0; i < n; i++) {
        y[i] = i % classes;
        for (int j = 0; j < 16; j++) x[i * 16 + j] = (float)((i * 7 + j * 3 + salt) % 11) * 0.1f + (float)(j % 4 == y[i]);
    }
    sm_dataset *ds = NULL;
    return sm_dataset_from_arrays(&ds, x, y, n, 4, 4, 1) ? NULL : ds;
}

static inline void fz_training_free(fz_training *f) {
    sm_trainer_free(f->t); sm_model_free(f->m); sm_loss_free(f->loss); sm_dataset_free(f->ds); sm_dataset_free(f->val);
    f->t = NULL; f->m = NULL; f->loss = NULL; f->ds = f->val = NULL;
}

/* 0 on success: 16 images of 4 classes, 8 validation images of 2, a conv-bn net, multi-similarity,
 * P x K batches of 4, augmentation, EMA, keep_best, 2 epochs. */
static inline int fz_training_create(fz_training *f) {
    f->t = NULL; f->m = NULL; f->loss = NULL;
    f->ds = fz_ckpt_data(16, 4, 0);
    f->val = fz_ckpt_data(8, 2, 5);
    if (!f->ds || !f->val || sm_model_create(&f->m, "conv 2 k=3 p=1; bn; relu; gap; fc 4; l2norm", 4, 4, 1, 3) ||
        sm_loss_create(&f->loss, "multisimilarity", "", 4, 4)) {
        fz_training_free(f);
        return 1;
    }
    sm_train_config c;
    sm_train_config_default(&c);
    c.epochs = 2; c.batch_size = 4; c.per_class = 2; c.aug_shift = 1; c.aug_flip = 1; c.ema_decay = 0.5f;
    c.val = f->val; c.keep_best = 1; c.seed = 7;
    if (sm_trainer_create(&f->t, f->m, f->loss, f->ds, &c)) { fz_training_free(f); return 1; }
    return 0;
}
#endif
