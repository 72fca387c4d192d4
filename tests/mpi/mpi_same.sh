#!/usr/bin/env bash
# mpi_same.sh - the CLI on 2 ranks gives what one process gives (path of simile in $1, of mpirun
# in $2; label mpi):
#   - `simile train` on 2 ranks and on one process with --grad-shards 2 (and 2 threads) write
#     the same model file, byte for byte, with the default optimiser (Adam); without the shards
#     the one process trains other bits; the same with dropout (masks by place in the batch) and
#     with --freeze-bn; --grad-shards 3 on 2 ranks is a usage error (exit 2);
#   - a streamed folder (--folder --stream, each rank decoding only its rows of each batch, a
#     batch cut short by --epoch-size) trains the same model as the folder in memory on 2
#     ranks and as one process with --grad-shards 2;
#   - `simile eval` on 2 ranks (each embeds its half) prints the same figures as on one process,
#     to the last digit of its JSON, classification and retrieval, and prints them once;
#   - `simile compare` on 2 ranks and on one process with --grad-shards 2: the same figures in
#     report.json (timings aside) and the same model files, written once.
set -u
SIMILE=$1
MPIRUN=$2
PY=/usr/bin/python3
TMP=$(mktemp -d /tmp/sm_mpi_same.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
OUT="$TMP/out.txt"
ERR="$TMP/err.txt"
. "$(dirname "$0")/../checks.sh"
MPI=("$MPIRUN" --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS=1)

# 203 random 8x8 images with labels 0..3 (class 0 brighter): an odd count, uneven halves; and
# IDX files with Fashion-MNIST's names of 10 classes of 28x28 images, each class its own
# pattern plus noise (30 train and 20 test images a class), for compare
"$PY" - "$TMP" <<'PYEOF' || { echo "FAIL could not write the IDX files"; exit 1; }
import gzip, os, struct, sys
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(0)
n = 203
y = (np.arange(n) % 4).astype(np.uint8)
x = rng.integers(0, 200, size=(n, 8, 8)).astype(np.uint8)
x[y == 0] = np.minimum(x[y == 0].astype(int) + 55, 255).astype(np.uint8)
open(f'{d}/img', 'wb').write(struct.pack('>IIII', 0x803, n, 8, 8) + x.tobytes())
open(f'{d}/lab', 'wb').write(struct.pack('>II', 0x801, n) + y.tobytes())
os.makedirs(f'{d}/fm')
pattern = rng.integers(0, 256, size=(10, 28, 28))
for split, per in (('train', 30), ('t10k', 20)):
    ys = np.tile(np.arange(10), per).astype(np.uint8)
    xs = np.clip(0.6 * pattern[ys] + rng.integers(0, 100, size=(len(ys), 28, 28)), 0, 255).astype(np.uint8)
    with gzip.open(f'{d}/fm/{split}-images-idx3-ubyte.gz', 'wb') as f:
        f.write(struct.pack('>IIII', 0x803, len(ys), 28, 28) + xs.tobytes())
    with gzip.open(f'{d}/fm/{split}-labels-idx1-ubyte.gz', 'wb') as f:
        f.write(struct.pack('>II', 0x801, len(ys)) + ys.tobytes())
PYEOF
SPEC="conv 4 k=3 p=1; bn; relu; gap; fc 8; l2norm"
DATA=(--images "$TMP/img" --labels "$TMP/lab")
TRAIN=(train "${DATA[@]}" --model "$SPEC" --epochs 2 --batch 32 --quiet)

# ---- train: 2 ranks = one process with 2 gradient shards ----------------------------------------
run "train multi-similarity on 2 ranks" 0 "${MPI[@]}" "$SIMILE" "${TRAIN[@]}" --loss multisimilarity --per-class 8 \
    --threads 1 --out "$TMP/ms2.smm"
run "the same on one process, --grad-shards 2, 2 threads" 0 "$SIMILE" "${TRAIN[@]}" --loss multisimilarity \
    --per-class 8 --threads 2 --grad-shards 2 --out "$TMP/ms1.smm"
cmp -s "$TMP/ms2.smm" "$TMP/ms1.smm" && pass "the same model file, byte for byte" || fail "the model files differ"
run "one process without shards" 0 "$SIMILE" "${TRAIN[@]}" --loss multisimilarity --per-class 8 --threads 1 \
    --out "$TMP/ms0.smm"
cmp -s "$TMP/ms2.smm" "$TMP/ms0.smm" && fail "without shards the same bits (the option changes nothing?)" ||
    pass "without shards other bits (sums grouped otherwise)"
run "softmax on 2 ranks" 0 "${MPI[@]}" "$SIMILE" "${TRAIN[@]}" --loss softmax --threads 1 --out "$TMP/ce2.smm"
run "softmax on one process, --grad-shards 2" 0 "$SIMILE" "${TRAIN[@]}" --loss softmax --threads 1 --grad-shards 2 \
    --out "$TMP/ce1.smm"
cmp -s "$TMP/ce2.smm" "$TMP/ce1.smm" && pass "softmax: the same model file" || fail "softmax: the model files differ"
DROP="conv 4 k=3 p=1; bn; relu; gap; dropout p=0.3; fc 8; l2norm"
run "with dropout on 2 ranks" 0 "${MPI[@]}" "$SIMILE" "${TRAIN[@]}" --model "$DROP" --loss multisimilarity --per-class 8 \
    --threads 1 --out "$TMP/dr2.smm"
run "with dropout on one process, --grad-shards 2" 0 "$SIMILE" "${TRAIN[@]}" --model "$DROP" --loss multisimilarity \
    --per-class 8 --threads 1 --grad-shards 2 --out "$TMP/dr1.smm"
cmp -s "$TMP/dr2.smm" "$TMP/dr1.smm" && pass "dropout: the same model file (a value's mask is that of its place in the batch)" ||
    fail "dropout: the model files differ"
run "with --freeze-bn on 2 ranks" 0 "${MPI[@]}" "$SIMILE" "${TRAIN[@]}" --loss multisimilarity --per-class 8 --freeze-bn \
    --threads 1 --out "$TMP/fz2.smm"
run "with --freeze-bn on one process, --grad-shards 2" 0 "$SIMILE" "${TRAIN[@]}" --loss multisimilarity --per-class 8 \
    --freeze-bn --threads 1 --grad-shards 2 --out "$TMP/fz1.smm"
cmp -s "$TMP/fz2.smm" "$TMP/fz1.smm" && pass "--freeze-bn: the same model file (running statistics on every rank)" ||
    fail "--freeze-bn: the model files differ"
run "--grad-shards 3 on 2 ranks" 2 "${MPI[@]}" "$SIMILE" "${TRAIN[@]}" --loss softmax --threads 1 --grad-shards 3 \
    --out "$TMP/x.smm"
expect "the message names the shards and ranks" "$ERR" "grad-shards 3 under 2 ranks"
run "--grad-shards larger than the batch" 2 "$SIMILE" "${TRAIN[@]}" --loss softmax --grad-shards 33 --out "$TMP/x.smm"
[ ! -e "$TMP/x.smm" ] && pass "nothing written" || fail "a model was written"

# ---- a streamed folder: each rank decodes only its rows of each batch, the same bits ----------------
"$PY" - "$TMP/folder" "$(dirname "$0")/.." <<'PYEOF' || fail "could not write the image folder"
import os, random, sys
sys.path.insert(0, sys.argv[2])
import simtest
random.seed(5)
for k in range(4):
    os.makedirs(f"{sys.argv[1]}/c{k}")
    for i in range(12):
        open(f"{sys.argv[1]}/c{k}/{i:02d}.png", "wb").write(simtest.png(simtest.img(k)))
PYEOF
FOLD=(train --folder "$TMP/folder" --model "$SPEC" --loss multisimilarity --per-class 4 --batch 16 --epochs 2
      --epoch-size 40 --aug-flip --aug-shift 1 --quiet --threads 1)
run "folder, --stream, on 2 ranks" 0 "${MPI[@]}" "$SIMILE" "${FOLD[@]}" --stream --out "$TMP/fs2.smm"
run "folder in memory on 2 ranks" 0 "${MPI[@]}" "$SIMILE" "${FOLD[@]}" --out "$TMP/fm2.smm"
run "folder, --stream, one process, --grad-shards 2" 0 "$SIMILE" "${FOLD[@]}" --stream --grad-shards 2 --out "$TMP/fs1.smm"
cmp -s "$TMP/fs2.smm" "$TMP/fm2.smm" && pass "streamed shards: the same model as in memory (batches of 16, 16, 8)" ||
    fail "the streamed 2-rank model differs from the in-memory one"
cmp -s "$TMP/fs2.smm" "$TMP/fs1.smm" && pass "and as one process with 2 shards" || fail "it differs from one process"

# ---- eval: 2 ranks print what one process prints -------------------------------------------------
run "eval on one process" 0 "$SIMILE" eval --model "$TMP/ce1.smm" "${DATA[@]}" --task both --threads 1 --json "$TMP/e1.json"
cp "$OUT" "$TMP/e1.txt"
run "eval on 2 ranks" 0 "${MPI[@]}" "$SIMILE" eval --model "$TMP/ce1.smm" "${DATA[@]}" --task both --threads 1 \
    --json "$TMP/e2.json"
cmp -s "$OUT" "$TMP/e1.txt" && pass "the same text, printed once" || { fail "the text differs"; diff "$TMP/e1.txt" "$OUT" | head -5; }
expect "accuracy and MAP@R are in it" "$OUT" "accuracy.*MAP@R|MAP@R"
if "$PY" -c "
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a == b, (a, b)
assert a['images'] == 203 and a['queries'] == 203 and 0 <= a['map_at_r'] <= 1, a
" "$TMP/e1.json" "$TMP/e2.json"; then pass "the same JSON figures (every digit)"; else fail "the JSON figures differ"; fi
run "eval of the multi-similarity model on 2 ranks" 0 "${MPI[@]}" "$SIMILE" eval --model "$TMP/ms2.smm" "${DATA[@]}" \
    --threads 1 --json -
cp "$OUT" "$TMP/m2.json"
run "and on one process" 0 "$SIMILE" eval --model "$TMP/ms2.smm" "${DATA[@]}" --threads 1 --json -
cmp -s "$OUT" "$TMP/m2.json" && pass "retrieval: one JSON document, the same" || fail "retrieval JSON differs"
run "eval of a missing model on 2 ranks" 3 "${MPI[@]}" "$SIMILE" eval --model "$TMP/none.smm" "${DATA[@]}"

# ---- compare: 2 ranks = one process with 2 gradient shards ---------------------------------------
CMP=(compare --data "$TMP/fm" --quick --epochs 1 --train-per-class 0 --test-per-class 0
     --losses softmax,multisimilarity --batch 40 --per-class 8 --shots 3 --calib-per-class 5
     --gallery-per-class 10 --pairs-per-class 10 --scatter-per-class 10 --triplets 1000 --few-per-class 8
     --few-epochs 2 --quiet --threads 1)
run "compare on 2 ranks" 0 "${MPI[@]}" "$SIMILE" "${CMP[@]}" --out "$TMP/c2"
cp "$OUT" "$TMP/c2.txt"
run "compare on one process, --grad-shards 2" 0 "$SIMILE" "${CMP[@]}" --grad-shards 2 --out "$TMP/c1"
n1=$(grep -c '^multisimilarity ' "$OUT"); n2=$(grep -c '^multisimilarity ' "$TMP/c2.txt")
[ "$n1" -ge 1 ] && [ "$n1" -eq "$n2" ] && pass "the tables printed once ($n2 multi-similarity rows, as one process)" ||
    fail "the tables: $n2 multi-similarity rows on 2 ranks, $n1 on one process"
if "$PY" - "$TMP/c1/report.json" "$TMP/c2/report.json" <<'PYEOF'; then pass "report.json: the same figures"; else fail "report.json figures differ"; fi
import json, sys
def strip(d):
    d.pop("run", None); d.pop("command", None); d["settings"].pop("model_dir", None)
    for m in d["models"]: m.pop("timing", None); m.pop("file", None)
    return d
a, b = (strip(json.load(open(p))) for p in sys.argv[1:3])
assert len(a["models"]) == 4, len(a["models"])
sys.exit(0 if a == b else 1)
PYEOF
for f in softmax multisimilarity few_softmax few_multisimilarity; do
    cmp -s "$TMP/c1/$f.smm" "$TMP/c2/$f.smm" && pass "$f.smm the same" || fail "$f.smm differs"
done
ls "$TMP/c2" | grep -q "tmp\." && fail "a temporary file was left" || pass "no temporary file left"
checks_end mpi_same
