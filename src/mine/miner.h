/* miner.h - internal miners on a precomputed distance (or similarity) matrix, shared by the
 * metric losses and the public sm_mine_* functions: triplet selection predicates, batch-hard,
 * and pair masks (all pairs, pair-margin, multi-similarity).  Semantics of
 * pytorch-metric-learning's TripletMarginMiner, BatchHardMiner, PairMarginMiner and
 * MultiSimilarityMiner. */
#ifndef SM_MINE_MINER_H
#define SM_MINE_MINER_H
#include "core/core.h"

/* Bits of a pair mask (n, n): pair (i, j) selected as a positive / as a negative. */
#define SM_PAIR_POS 1u
#define SM_PAIR_NEG 2u

/* Triplet margin m = d_an - d_ap for distances, s_ap - s_an for similarities (inverted). */
static inline float sm_triplet_margin(int inverted, float ap, float an) {
    return inverted ? ap - an : an - ap;
}

/* Keep a valid triplet under an "on the fly" miner (ALL, SEMIHARD, EASY; HARD is per anchor,
 * see sm_batch_hard): all: always; semihard: 0 < m <= margin; easy: m > margin. */
static inline int sm_triplet_keep(sm_triplet_miner kind, float margin, int inverted, float ap,
                                  float an) {
    float m = sm_triplet_margin(inverted, ap, an);
    switch (kind) {
    case SM_TRIPLETS_SEMIHARD: return m > 0.0f && m <= margin;
    case SM_TRIPLETS_EASY: return m > margin;
    default: return 1;
    }
}

/* Batch-hard: for each anchor i of D (n, n) the hardest positive pos[i] (largest distance /
 * smallest similarity) and hardest negative neg[i] (smallest distance / largest similarity),
 * first index on ties; -1 in both if the anchor lacks a positive or a negative. */
void sm_batch_hard(const float *D, const int32_t *labels, int n, int inverted, int32_t *pos,
                   int32_t *neg);

/* mask (n, n) of every positive pair (i != j, same label) and every negative pair. */
void sm_pairs_all(const int32_t *labels, int n, uint8_t *mask);

/* Pair-margin miner on D (n, n): positives with d > pos_margin (similarity: s < pos_margin),
 * negatives with d < neg_margin (similarity: s > neg_margin). */
void sm_pairs_margin(const float *D, const int32_t *labels, int n, int inverted, float pos_margin,
                     float neg_margin, uint8_t *mask);

/* Multi-similarity miner on the similarity matrix S (n, n), epsilon eps: positive (i, j) kept if
 * S_ij - eps < max over negatives k of i of S_ik; negative (i, k) kept if S_ik + eps > min over
 * positives j of i of S_ij.  Empty if the batch has no positive or no negative pair. */
void sm_pairs_multisim(const float *S, const int32_t *labels, int n, float eps, uint8_t *mask);

/* Number of selected positive and negative pairs of a mask. */
void sm_pairs_count(const uint8_t *mask, int n, int64_t *npos, int64_t *nneg);

#endif
