/* sampler.h - the order in which an epoch visits the training set: shuffled batches, or
 * class-balanced P x K batches (K = per_class images of each of P = batch / K classes). */
#ifndef SM_SAMPLER_H
#define SM_SAMPLER_H
#include "core/core.h"

typedef struct sm_epoch_plan {
    int64_t *order;     /* (total) sample indices, batch after batch */
    int64_t *starts;    /* (nbatches + 1) batch boundaries into order */
    int64_t nbatches, total;
} sm_epoch_plan;

/* Shuffled: every sample once, batches of `batch` (the last may be smaller). */
sm_status sm_plan_shuffled(sm_epoch_plan *p, int64_t n, int batch, sm_rng *rng);
/* P x K: every sample at least once; each batch has up to batch/per_class classes with
 * per_class samples each (a class's last group is topped up with random samples of the same
 * class).  The classes with the most groups left go first, so batches stay full. */
sm_status sm_plan_pk(sm_epoch_plan *p, const int32_t *labels, int64_t n, int batch,
                     int per_class, sm_rng *rng);
/* pytorch-metric-learning's MPerClassSampler (with batch_size): every batch independently draws
 * P = batch/per_class distinct classes at random and per_class random samples of each (without
 * replacement when the class has that many); `total` samples in all, rounded down to whole
 * batches (at least one).  Samples are not guaranteed to be visited. */
sm_status sm_plan_pk_random(sm_epoch_plan *p, const int32_t *labels, int64_t n, int batch,
                            int per_class, int64_t total, sm_rng *rng);
void sm_plan_free(sm_epoch_plan *p);

#endif
