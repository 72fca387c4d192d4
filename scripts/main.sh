#!/usr/bin/env bash
# main.sh - the main job on the built-in data (Fashion-MNIST, fmnist-open protocol): `simile
# compare` trains cnn-s with softmax cross-entropy, multi-similarity, triplet and contrastive
# losses on the seen classes 0-4, evaluates every model on the unseen classes 5-9 and on the seen
# ones, repeats with 20 images a class, prints the table and writes results/report.html (the
# report), results/report.json (every figure) and the models.  docs/report.md explains it.
# usage: scripts/main.sh [--quick] [output-dir] [more simile compare options]
#        (--quick: about a minute; the full run takes about 10 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=()
if [ "${1:-}" = "--quick" ]; then QUICK=(--quick); shift; fi
OUT=${1:-results}
[ $# -gt 0 ] && shift
exec build/simile compare "${QUICK[@]}" --out "$OUT" "$@"
