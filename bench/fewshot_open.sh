#!/usr/bin/env bash
# fewshot_open.sh - the fmnist-open few-shot and open-set gallery evaluation of docs/gallery.md.
#  1. a cnn-s trained with multi-similarity on the train split of classes 0-4 (5 epochs, as in
#     docs/benchmarks.md, with the learning rate decayed by a cosine; reused if $MODEL exists);
#  2. few-shot: enrol the first 5 train images of each unseen class 5-9, identify the 5,000
#     test images of classes 5-9 (nearest neighbour, centroid, 5-NN vote);
#  3. open set: enrol classes 5-7 only (first 5 train images each), calibrate the threshold on
#     held-out train images of 5-7 (numbers 6-205 of each class: not enrolled, not test), then
#     identify the test images of classes 5-9: TAR on 5-7, rejection rate on 8-9.
# Usage: bench/fewshot_open.sh   (env: SIMILE binary, MODEL file, OUT folder, THREADS)
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SIMILE:-build/simile}
OUT=${OUT:-/tmp/simile_fewshot}
MODEL=${MODEL:-$OUT/open_multisimilarity.smm}
THREADS=${THREADS:-2}
mkdir -p "$OUT"
run() { echo "+ $*"; "$@"; }
if [ ! -f "$MODEL" ]; then
  run "$S" train --classes 0-4 --loss multisimilarity --epochs 5 --batch 128 --per-class 32 \
      --schedule cosine --seed 1 --threads "$THREADS" --out "$MODEL"
fi
run "$S" info "$MODEL" | tail -n +1 | grep -E "fingerprint" || true

echo "== few-shot: 5 enrolled train images of each class 5-9, 5,000 test queries"
G=$OUT/fewshot.smg
rm -f "$G"
run "$S" gallery create --out "$G" --model "$MODEL"
run "$S" gallery enrol --gallery "$G" --model "$MODEL" --split train --classes 5-9 --first-per-class 5 --threads "$THREADS"
for rule in nearest centroid vote; do
  run "$S" identify --gallery "$G" --model "$MODEL" --split test --classes 5-9 --rule "$rule" --k 5 --threads "$THREADS"
done

echo "== open set: classes 5-7 enrolled, 8-9 must be rejected"
O=$OUT/openset.smg
rm -f "$O"
run "$S" gallery create --out "$O" --model "$MODEL"
run "$S" gallery enrol --gallery "$O" --model "$MODEL" --split train --classes 5-7 --first-per-class 5 --threads "$THREADS"
for cal in "--far 0.01" "--far 0.05" "--far 0.1" "--f1"; do
  # shellcheck disable=SC2086
  run "$S" gallery calibrate --gallery "$O" --model "$MODEL" --split train --classes 5-7 \
      --skip-per-class 5 --first-per-class 200 $cal --threads "$THREADS"
  run "$S" identify --gallery "$O" --model "$MODEL" --split test --classes 5-9 --threads "$THREADS"
done

echo "== verification metrics on test pairs (query to enrolled class, classes 5-7; nothing stored)"
run "$S" gallery calibrate --gallery "$O" --model "$MODEL" --split test --classes 5-7 --far 0.01 --dry-run --threads "$THREADS"
