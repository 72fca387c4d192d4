#!/usr/bin/env bash
# mpi_cli.sh - `simile train` under mpirun -np 2 (path of simile in $1, of mpirun in $2; label
# mpi): it trains data-parallel ("2 ranks" in the header, "ranks": 2 in the JSON), only rank 0
# prints (one header, one JSON document on stdout) and writes the model, which `simile info` and
# `simile eval` read; a missing data file stops both ranks with exit 3.
set -u
SIMILE=$1
MPIRUN=$2
PY=/usr/bin/python3
TMP=$(mktemp -d /tmp/sm_mpi_cli.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
OUT="$TMP/out.txt"
ERR="$TMP/err.txt"
. "$(dirname "$0")/../checks.sh"
MPI=("$MPIRUN" --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS=1)

# 200 random 8x8 images with labels 0..3, class 0 brighter
"$PY" - "$TMP" <<'PYEOF' || { echo "FAIL could not write the IDX files"; exit 1; }
import struct, sys
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(0)
n = 200
y = (np.arange(n) % 4).astype(np.uint8)
x = rng.integers(0, 200, size=(n, 8, 8)).astype(np.uint8)
x[y == 0] = np.minimum(x[y == 0].astype(int) + 55, 255).astype(np.uint8)
open(f'{d}/img', 'wb').write(struct.pack('>IIII', 0x803, n, 8, 8) + x.tobytes())
open(f'{d}/lab', 'wb').write(struct.pack('>II', 0x801, n) + y.tobytes())
PYEOF
SPEC="conv 4 k=3 p=1; bn; relu; gap; fc 8; l2norm"

run "train on 2 ranks" 0 "${MPI[@]}" "$SIMILE" train --images "$TMP/img" --labels "$TMP/lab" --model "$SPEC" \
    --loss multisimilarity --epochs 2 --batch 32 --per-class 8 --threads 1 --json --out "$TMP/m.smm"
expect "the header says 2 ranks" "$ERR" "1 thread a rank, 2 ranks \(MPI, SyncBN\)"
[ "$(grep -c '^train: ' "$ERR")" -eq 1 ] && pass "one header (rank 0 alone prints)" || fail "header printed $(grep -c '^train: ' "$ERR") times"
if "$PY" -c "
import json, sys
d = json.load(open(sys.argv[1]))
assert d['ranks'] == 2 and d['communication_seconds'] >= 0 and len(d['epoch_log']) == 2, d
" "$OUT"; then pass "one JSON document with ranks 2"; else fail "the JSON on stdout"; sed 's/^/     | /' "$OUT" | head -5; fi
[ -s "$TMP/m.smm" ] && pass "rank 0 wrote the model" || fail "no model file"
run "info reads it" 0 "$SIMILE" info "$TMP/m.smm"
run "eval reads it" 0 "$SIMILE" eval --model "$TMP/m.smm" --images "$TMP/img" --labels "$TMP/lab"
expect "eval gives retrieval figures" "$OUT" "MAP@R"
ls "$TMP" | grep -q "tmp\." && fail "a temporary model file was left" || pass "no temporary file left"
run "a missing data file on 2 ranks" 3 "${MPI[@]}" "$SIMILE" train --images "$TMP/none" --labels "$TMP/lab" \
    --model "$SPEC" --threads 1 --out "$TMP/x.smm"
expect "the message names the file" "$ERR" "none"
[ ! -e "$TMP/x.smm" ] && pass "nothing written" || fail "a model was written"
checks_end mpi_cli
