#!/usr/bin/env bash
# bench_mpi.sh - data-parallel training against one process on the same work: cnn-s with
# multi-similarity on classes 0-4 of Fashion-MNIST, EPOCH_SIZE images (P x K batches of 128),
# as 1 process x 2 threads and as mpirun -np 2 x 1 thread, alternating, ROUNDS times each.
# Prints images/s of each run, the time rank 0 spent in MPI calls per step (the gathers of
# embeddings, the SyncBN sums, the gradient sum, the agreed decisions; it includes waiting for
# the slower rank) and the medians; bench_dist times the collectives alone.  Needs a build with
# MPI (docs/distributed.md).  Not a test.
# usage: bench/bench_mpi.sh build/simile [ROUNDS=3] [EPOCH_SIZE=5120]
set -eu
BIN=${1:?usage: bench_mpi.sh build/simile [ROUNDS] [EPOCH_SIZE]}
ROUNDS=${2:-3}
SIZE=${3:-5120}
TMP=$(mktemp -d /tmp/sm_bench_mpi.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
lscpu | grep -E "^Model name|^CPU family|^Model:" | tr -s ' '
uptime
STEPS=$((SIZE / 128))
COMMON="train --classes 0-4 --loss multisimilarity --epochs 1 --epoch-size $SIZE --json --out $TMP/m.smm"
field() { /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }
one="" two="" comm=""
for r in $(seq 1 "$ROUNDS"); do
    a=$("$BIN" $COMMON --seed "$r" --threads 2 2>/dev/null | field "['epoch_log'][0]['images_per_sec']")
    out=$(mpirun --allow-run-as-root --oversubscribe -np 2 "$BIN" $COMMON --seed "$r" --threads 1 2>/dev/null)
    b=$(echo "$out" | field "['epoch_log'][0]['images_per_sec']")
    c=$(echo "$out" | field "['communication_seconds']")
    ms=$(/usr/bin/python3 -c "print(f'{1000 * $c / $STEPS:.1f}')")
    echo "round $r: 1 process x 2 threads $(printf %.0f "$a") images/s; 2 ranks x 1 thread $(printf %.0f "$b") images/s, MPI $ms ms a step"
    one="$one $a"; two="$two $b"; comm="$comm $ms"
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
echo "median: 1 process x 2 threads $(printf %.0f "$(echo "$one" | median)") images/s; 2 ranks x 1 thread" \
     "$(printf %.0f "$(echo "$two" | median)") images/s, MPI $(echo "$comm" | median) ms a step ($STEPS steps)"
uptime
