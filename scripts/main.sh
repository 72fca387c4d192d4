#!/usr/bin/env bash
# main.sh - the main job on the built-in data (Fashion-MNIST, fmnist-open protocol): train cnn-s
# with softmax cross-entropy and with multi-similarity on the seen classes 0-4, then evaluate
# both on the unseen classes 5-9 (retrieval) and on the seen classes (closed set).
# usage: scripts/main.sh [--quick] [output-dir]      (--quick: 1 epoch each)
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=5
if [ "${1:-}" = "--quick" ]; then EPOCHS=1; shift; fi
OUT=${1:-results}
mkdir -p "$OUT"
S=build/simile
for loss in softmax multisimilarity; do
  echo "== training cnn-s with $loss on classes 0-4 ($EPOCHS epochs)"
  $S train --classes 0-4 --loss "$loss" --epochs "$EPOCHS" --out "$OUT/open_$loss.smm"
done
for loss in softmax multisimilarity; do
  echo "== $loss model: unseen classes 5-9 (retrieval)"
  $S eval --model "$OUT/open_$loss.smm" --classes 5-9 --task retrieval --json "$OUT/open_${loss}_unseen.json"
done
echo "== softmax model: seen classes 0-4 (its own argmax)"
$S eval --model "$OUT/open_softmax.smm" --classes 0-4 --task classify --json "$OUT/open_softmax_seen.json"
echo "== softmax model on the unseen classes: its head has no output for classes 5-9"
$S eval --model "$OUT/open_softmax.smm" --classes 5-9 --task classify | head -3
