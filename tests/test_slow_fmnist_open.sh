#!/usr/bin/env bash
# test_slow_fmnist_open.sh - the fmnist-open end-to-end check (docs/benchmarks.md; issues
# "metric learning" and "open-set recognition").  Labelled "slow" (about 3 minutes on 2 idle
# cores): not in the default run; `ctest --test-dir build -L slow` runs it.
#  1. cnn-s trained with multi-similarity (+ MS miner) on the train split of classes 0-4:
#     batch 128, 32 images a class, Adam 1e-3 with a cosine decay over the 5 epochs, seed 1,
#     2 threads.  MAP@R on the 5,000 test images of the unseen classes 5-9 must be >= 0.38.
#  2. few-shot enrolment with that model: a gallery of the first 5 train images of each of
#     classes 5-9; the 5,000 test images of classes 5-9 identified by nearest neighbour must be
#     right at least 72% of the time.  Centroid and open-set figures are printed, not checked.
#  3. the same training with the contrastive loss (pos 0, neg 1): MAP@R >= 0.38.
#  4. the same multi-similarity training with the embedding taken at cnn-s's gap, before its
#     fc 64 head (--embed-at 12.gap, 128 wide; the layer selected on held-out training classes,
#     docs/training.md, "Embedding before the head"): MAP@R >= 0.42 (seed 1 gives 0.4285 here;
#     mean 0.432 over seeds 1-4).
# Training is bit-deterministic for a seed and a thread count on one machine; the thresholds
# are the issues' and sit 0.005-0.03 below what seed 1 gives here (docs/training.md shows the
# spread over seeds: another machine or seed is a new draw from it).
# usage: test_slow_fmnist_open.sh path/to/simile
set -u
SIMILE=${1:?usage: test_slow_fmnist_open.sh path/to/simile}
DATA=/usr/share/datasets/fashion-mnist
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
[ -r "$DATA/train-images-idx3-ubyte.gz" ] || { echo "FAIL: $DATA (dataset-fashion-mnist) is not installed"; exit 1; }
fails=0
# at_least NAME VALUE MIN: VALUE >= MIN, else a failure
at_least() {
    if [ -z "$2" ]; then echo "FAIL $1: no figure found"; fails=$((fails + 1)); return; fi
    if awk -v v="$2" -v m="$3" 'BEGIN { exit !(v + 0 >= m + 0) }'; then
        echo "ok   $1 = $2 (>= $3)"
    else
        echo "FAIL $1 = $2 (< $3)"; fails=$((fails + 1))
    fi
}
train() { # LOSS OUT
    "$SIMILE" train --data "$DATA" --classes 0-4 --loss "$1" --epochs 5 --batch 128 --per-class 32 \
        --schedule cosine --seed 1 --threads 2 --quiet --val-split test --val-classes 5-9 \
        --out "$2" >"$2.txt" 2>&1 || { echo "FAIL: train $1"; cat "$2.txt"; return 1; }
    cat "$2.txt"
}
mapr() { # MODEL: MAP@R of `simile eval` on the unseen test classes
    "$SIMILE" eval --model "$1" --data "$DATA" --split test --classes 5-9 --threads 2 >"$1.eval" 2>&1 ||
        { cat "$1.eval"; return 1; }
    sed -nE 's/^ *MAP@R +([0-9.]+)$/\1/p' "$1.eval"
}

MS=$TMP/ms.smm
if train multisimilarity "$MS"; then
    at_least "multi-similarity MAP@R on classes 5-9" "$(mapr "$MS")" 0.38
    G=$TMP/fewshot.smg
    "$SIMILE" gallery create --out "$G" --model "$MS" >/dev/null &&
    "$SIMILE" gallery enrol --gallery "$G" --model "$MS" --data "$DATA" --split train --classes 5-9 \
        --first-per-class 5 --threads 2 >/dev/null || { echo "FAIL: enrolment"; fails=$((fails + 1)); }
    for rule in nearest centroid; do
        "$SIMILE" identify --gallery "$G" --model "$MS" --data "$DATA" --split test --classes 5-9 \
            --rule $rule --threads 2 >"$TMP/id_$rule.txt" 2>&1 || { cat "$TMP/id_$rule.txt"; fails=$((fails + 1)); }
    done
    NN=$(sed -nE 's/.*closed-set accuracy \(nearest\) ([0-9.]+).*/\1/p' "$TMP/id_nearest.txt")
    at_least "5-shot nearest-neighbour accuracy on classes 5-9" "$NN" 0.72
    grep -h "closed-set accuracy (centroid)" "$TMP/id_centroid.txt"
    # open set (printed): classes 5-7 enrolled, threshold for FAR 1% on held-out train images
    O=$TMP/open.smg
    "$SIMILE" gallery create --out "$O" --model "$MS" >/dev/null &&
    "$SIMILE" gallery enrol --gallery "$O" --model "$MS" --data "$DATA" --split train --classes 5-7 \
        --first-per-class 5 --threads 2 >/dev/null &&
    "$SIMILE" gallery calibrate --gallery "$O" --model "$MS" --data "$DATA" --split train --classes 5-7 \
        --skip-per-class 5 --first-per-class 200 --far 0.01 --threads 2 >/dev/null &&
    "$SIMILE" identify --gallery "$O" --model "$MS" --data "$DATA" --split test --classes 5-9 --threads 2 |
        grep -E "TAR|reject" || { echo "FAIL: open-set run"; fails=$((fails + 1)); }
else
    fails=$((fails + 1))
fi

CO=$TMP/contrastive.smm
if train contrastive "$CO"; then
    at_least "contrastive MAP@R on classes 5-9" "$(mapr "$CO")" 0.38
else
    fails=$((fails + 1))
fi

# 4: the trunk of the multi-similarity model of 1 (`train --embed-at 12.gap` trains the same bits
# and saves this trunk: tests/test_embed_at.sh)
TR=$TMP/trunk.smm
if [ -s "$MS" ] && "$SIMILE" cut "$MS" --at 12.gap --out "$TR" >/dev/null; then
    at_least "multi-similarity, embedding at the gap (--embed-at 12.gap): MAP@R on classes 5-9" "$(mapr "$TR")" 0.42
else
    echo "FAIL: simile cut"; fails=$((fails + 1))
fi

if [ "$fails" -ne 0 ]; then echo "test_slow_fmnist_open.sh: $fails failed"; exit 1; fi
echo "test_slow_fmnist_open.sh: all passed"
