#!/usr/bin/env bash
# bench_ab.sh - two builds of simile side by side on the same work, alternating A, B, A, B ...
# in one run so that both see the same machine: cnn-s training (classes 0,1 of Fashion-MNIST,
# 1 epoch, batch 128, multi-similarity) and embedding the 10,000 test images, ROUNDS times each.
# Prints each run's images/s and the median of each side.  For a change's speed: build the
# previous commit into another folder (git worktree add /tmp/prev HEAD~1; cmake ...) and pass
# both binaries.  Not a test.
# usage: bench/bench_ab.sh A/simile B/simile [ROUNDS=3] [THREADS=2]
set -eu
A=${1:?usage: bench_ab.sh A/simile B/simile [ROUNDS] [THREADS]}
B=${2:?usage: bench_ab.sh A/simile B/simile [ROUNDS] [THREADS]}
ROUNDS=${3:-3}
THREADS=${4:-2}
TMP=$(mktemp -d /tmp/sm_bench_ab.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
lscpu | grep -E "^Model name|^CPU family|^Model:" | tr -s ' '
"$A" train --classes 0,1 --epochs 1 --loss multisimilarity --threads "$THREADS" --quiet --out "$TMP/m.smm"
declare -A train embed
for r in $(seq 1 "$ROUNDS"); do
    for side in A B; do
        bin=$A; [ "$side" = B ] && bin=$B
        t=$("$bin" train --classes 0,1 --epochs 1 --loss multisimilarity --threads "$THREADS" --seed "$r" \
            --out "$TMP/t.smm" | sed -n 's/^epoch 1\/1 .* \([0-9]*\) images\/s.*/\1/p')
        e=$("$bin" embed --model "$TMP/m.smm" --split t10k --threads "$THREADS" --out "$TMP/e.npy" \
            | sed -n 's/.*(\([0-9]*\) images\/s).*/\1/p')
        train[$side]="${train[$side]:-} $t"
        embed[$side]="${embed[$side]:-} $e"
        echo "round $r $side: train $t images/s, embed $e images/s"
    done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
for side in A B; do
    echo "$side median: train $(echo "${train[$side]}" | median) images/s, embed $(echo "${embed[$side]}" | median) images/s"
done
