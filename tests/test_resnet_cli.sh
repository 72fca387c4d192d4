#!/usr/bin/env bash
# test_resnet_cli.sh - residual specs, dropout and gem through the simile command (path in $1):
# a bad residual spec (nested res, unmatched end, a main branch that changes the shape without a
# shortcut section) is a usage error, exit 2, naming the spec line; a residual model with a
# projection shortcut, dropout and gem trains for one epoch on 8x8 images, and the same seed
# gives a byte-identical model file while another seed gives another (dropout's masks come from
# the seeded training RNG); `simile info` lists the block markers; eval reads the model back.
set -u
SIMILE=${1:?usage: test_resnet_cli.sh path/to/simile}
PY=/usr/bin/python3
TMP=$(mktemp -d /tmp/sm_test_resnet_cli.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/checks.sh"
OUT="$TMP/out.txt"
ERR="$TMP/err.txt"

"$PY" - "$TMP" <<'PYEOF' || { echo "FAIL could not write the IDX files"; exit 1; }
import os, struct, sys
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(0)
n = 240
y = (np.arange(n) % 4).astype(np.uint8)
x = rng.integers(0, 256, size=(n, 8, 8)).astype(np.uint8)
x[:, :2, :2] = (y[:, None, None] * 60).astype(np.uint8)   # a little class signal
open(f"{d}/img", "wb").write(struct.pack(">IIII", 0x803, n, 8, 8) + x.tobytes())
open(f"{d}/lab", "wb").write(struct.pack(">II", 0x801, n) + y.tobytes())
PYEOF
TR=(train --images "$TMP/img" --labels "$TMP/lab" --loss multisimilarity --epochs 1 --batch 32 --per-class 8 --threads 1 --quiet)

run "nested res" 2 "$SIMILE" "${TR[@]}" --model $'conv 4 p=1\nres\nconv 4 p=1\nres\nend\nend\ngap' --out "$TMP/bad.smm" &&
    expect "the nested res's line named" "$ERR" "spec line 4: .*nest"
run "unmatched end" 2 "$SIMILE" "${TR[@]}" --model $'conv 4 p=1\nend\ngap' --out "$TMP/bad.smm" &&
    expect "the end's line named" "$ERR" "spec line 2: unmatched 'end'"
run "shape mismatch without shortcut" 2 "$SIMILE" "${TR[@]}" --model $'conv 4 p=1\nres; conv 8 k=3 s=2 p=1\nend\ngap' --out "$TMP/bad.smm" &&
    expect "the end's line and both shapes named" "$ERR" "spec line 3: .*4x4x8.*8x8x4"
[ -e "$TMP/bad.smm" ] && fail "a bad spec wrote a model" || pass "a bad spec wrote no model"

SPEC='conv 8 k=3 p=1 bias=0; bn; relu
res; conv 16 k=3 s=2 p=1 bias=0; bn; relu; conv 16 k=3 p=1 bias=0; bn
shortcut; conv 16 k=1 s=2 bias=0; bn; end; relu
res; conv 16 k=3 p=1 bias=0; bn; relu; conv 16 k=3 p=1 bias=0; bn; end; relu
dropout p=0.3; gem; fc 16; l2norm'
run "train a residual model (seed 1)" 0 "$SIMILE" "${TR[@]}" --model "$SPEC" --seed 1 --out "$TMP/a.smm"
run "train it again (seed 1)" 0 "$SIMILE" "${TR[@]}" --model "$SPEC" --seed 1 --out "$TMP/b.smm"
run "train it with seed 2" 0 "$SIMILE" "${TR[@]}" --model "$SPEC" --seed 2 --out "$TMP/c.smm"
cmp -s "$TMP/a.smm" "$TMP/b.smm" && pass "the same seed gives a byte-identical model" || fail "the same seed gave different models"
cmp -s "$TMP/a.smm" "$TMP/c.smm" && fail "seeds 1 and 2 gave the same model" || pass "another seed gives another model"
run "info on the residual model" 0 "$SIMILE" info "$TMP/a.smm" &&
    expect "info lists the block markers" "$OUT" "shortcut" && expect "info lists gem" "$OUT" "gem"
run "eval the residual model" 0 "$SIMILE" eval --model "$TMP/a.smm" --images "$TMP/img" --labels "$TMP/lab" --threads 1 &&
    expect "eval prints MAP@R" "$OUT" "MAP@R"
checks_end test_resnet_cli
