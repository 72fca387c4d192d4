#!/usr/bin/env bash
# test_cli.sh - end-to-end checks of the simile command-line tool (path given as $1) on tiny IDX
# datasets written here: --help of every subcommand, exit codes for usage errors (2), bad or
# missing input files (3), train -> eval -> info on gzipped and plain IDX files, a corrupt model
# file, a bad spec, evaluating a classifier on labels its head does not have, an empty class
# filter, and a metric-loss run if one is registered.  One line per check; exits non-zero if any
# check fails.
set -u

SIMILE=${1:?usage: test_cli.sh path/to/simile}
PY=/usr/bin/python3
TMP=$(mktemp -d /tmp/sm_test_cli.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/checks.sh"
OUT="$TMP/out.txt"
ERR="$TMP/err.txt"

# ---- data -------------------------------------------------------------------------------------
# 200 random 8x8 images with labels 0..3 (class 0 brighter, so that there is something to learn),
# written gzipped and plain; a variant with a label 7; a truncated image file.
"$PY" - "$TMP" <<'EOF' || { echo "FAIL could not write the IDX files"; exit 1; }
import gzip, struct, sys
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(0)
n, h, w = 200, 8, 8
y = (np.arange(n) % 4).astype(np.uint8)
x = rng.integers(0, 200, size=(n, h, w)).astype(np.uint8)
x[y == 0] = np.minimum(x[y == 0].astype(int) + 55, 255).astype(np.uint8)
def img(x): return struct.pack('>IIII', 0x803, x.shape[0], x.shape[1], x.shape[2]) + x.tobytes()
def lab(y): return struct.pack('>II', 0x801, y.shape[0]) + y.tobytes()
open(f'{d}/img', 'wb').write(img(x)); open(f'{d}/lab', 'wb').write(lab(y))
gzip.open(f'{d}/img.gz', 'wb').write(img(x)); gzip.open(f'{d}/lab.gz', 'wb').write(lab(y))
y7 = y.copy(); y7[::10] = 7
open(f'{d}/lab7', 'wb').write(lab(y7))
open(f'{d}/img_trunc', 'wb').write(img(x)[:-100])
open(f'{d}/img6', 'wb').write(img(x[:, :6, :6].copy()))
EOF

SPEC="conv 4 k=3 p=1; bn; relu; gap; fc 8; l2norm"
M="$TMP/m.smm"

# ---- help and usage ------------------------------------------------------------------------------
run "simile --help" 0 "$SIMILE" --help
expect "top-level help lists the commands" "$OUT" "^ +losses +list"
for c in train eval info losses; do
    run "simile $c --help" 0 "$SIMILE" "$c" --help && expect "simile $c --help prints usage" "$OUT" "usage"
done
run "no command" 2 "$SIMILE"
run "unknown command" 2 "$SIMILE" frobnicate
expect "unknown command is named" "$ERR" "frobnicate"
run "train unknown option" 2 "$SIMILE" train --bogus-option
run "eval unknown option" 2 "$SIMILE" eval --model x --bogus-option
run "eval without --model" 2 "$SIMILE" eval --images "$TMP/img" --labels "$TMP/lab"
run "train bad --epochs" 2 "$SIMILE" train --epochs zero --images "$TMP/img" --labels "$TMP/lab"
run "info without a file" 2 "$SIMILE" info
run "losses with an argument" 2 "$SIMILE" losses extra

# ---- train, eval, info ---------------------------------------------------------------------------
run "train on gzipped IDX" 0 "$SIMILE" train --images "$TMP/img.gz" --labels "$TMP/lab.gz" \
    --model "$SPEC" --epochs 1 --batch 32 --out "$M" --no-normalize
expect "train reports the data" "$OUT" "200 images 8x8x1, 4 classes"
expect "train reports the save" "$OUT" "saved"
[ -s "$M" ] && pass "model file written" || fail "model file written"
ls "$TMP" | grep -q '\.tmp\.' && fail "no temporary file left" || pass "no temporary file left"
run "eval on plain IDX" 0 "$SIMILE" eval --model "$M" --images "$TMP/img" --labels "$TMP/lab" --no-normalize
expect "eval prints an accuracy" "$OUT" "accuracy [0-9]+\.[0-9]+"
run "eval --task both" 0 "$SIMILE" eval --model "$M" --images "$TMP/img.gz" --labels "$TMP/lab.gz" --no-normalize --task both
expect "eval --task both prints retrieval metrics" "$OUT" "precision@1"
run "info" 0 "$SIMILE" info "$M"
expect "info shows loss, classes and fingerprint" "$OUT" "loss: softmax, classes: 4, fingerprint [0-9a-f]{8}"
expect "info shows the parameter count" "$OUT" "total [0-9]+ parameters"
run "train on plain IDX, quiet, sgd + cosine" 0 "$SIMILE" train --images "$TMP/img" --labels "$TMP/lab" \
    --model "$SPEC" --epochs 2 --batch 50 --optimizer sgd --lr 0.01 --schedule cosine --quiet \
    --out "$TMP/m2.smm" --no-normalize
[ ! -s "$OUT" ] && pass "--quiet prints nothing" || fail "--quiet prints nothing"

# ---- bad input files -------------------------------------------------------------------------------
run "missing image file" 3 "$SIMILE" train --images "$TMP/nope.gz" --labels "$TMP/lab" --model "$SPEC" --out "$TMP/x.smm"
expect "missing file is named" "$ERR" "nope.gz"
run "truncated IDX" 3 "$SIMILE" train --images "$TMP/img_trunc" --labels "$TMP/lab" --model "$SPEC" --out "$TMP/x.smm"
expect "truncated IDX has a message" "$ERR" "img_trunc"
[ ! -e "$TMP/x.smm" ] && pass "no model written on failure" || fail "no model written on failure"
head -c 300 "$M" > "$TMP/cut.smm"
run "truncated model file (info)" 3 "$SIMILE" info "$TMP/cut.smm"
cp "$M" "$TMP/bad.smm"
printf '\xff\xfe' | dd of="$TMP/bad.smm" bs=1 seek=120 conv=notrunc status=none
run "corrupt model file (eval)" 3 "$SIMILE" eval --model "$TMP/bad.smm" --images "$TMP/img" --labels "$TMP/lab"
expect "corrupt model has a message" "$ERR" "bad.smm"
run "missing model file" 3 "$SIMILE" info "$TMP/none.smm"
run "data size differs from the model input" 3 "$SIMILE" eval --model "$M" --images "$TMP/img6" --labels "$TMP/lab" --no-normalize
expect "size mismatch is explained" "$ERR" "6x6x1"

# ---- bad specs and options -------------------------------------------------------------------------
run "bad spec" 2 "$SIMILE" train --images "$TMP/img" --labels "$TMP/lab" --model "conv 4; foo" --out "$TMP/x.smm"
expect "bad spec names the line" "$ERR" "line 1"
run "spec too large for the input" 2 "$SIMILE" train --images "$TMP/img" --labels "$TMP/lab" --model "conv 4 k=9; gap" --out "$TMP/x.smm"
run "unknown loss is a usage error" 2 "$SIMILE" train --images "$TMP/img" --labels "$TMP/lab" --model "$SPEC" --loss nosuchloss --out "$TMP/x.smm"
expect "unknown loss names the valid ones" "$ERR" "nosuchloss.*valid: .*triplet"

# ---- labels the head cannot predict, empty classes ---------------------------------------------------
run "eval with a label outside the head" 0 "$SIMILE" eval --model "$M" --images "$TMP/img" --labels "$TMP/lab7" --no-normalize
expect "images without a head output are reported" "$OUT" "20 images have a class the head has no output for"
run "--classes 9 (an empty class)" 3 "$SIMILE" train --images "$TMP/img" --labels "$TMP/lab" --classes 9 \
    --model "$SPEC" --out "$TMP/x.smm"
run "--classes bad syntax" 2 "$SIMILE" eval --model "$M" --images "$TMP/img" --labels "$TMP/lab" --classes "1-x"
run "eval --classes 1,2 subset" 0 "$SIMILE" eval --model "$M" --images "$TMP/img" --labels "$TMP/lab" --classes 1,2 --no-normalize
expect "subset evaluates 100 images" "$OUT" "100 images"

# ---- a metric loss ----------------------------------------------------------------------------------
"$SIMILE" losses >"$OUT" 2>"$ERR"
if grep -q '^ *contrastive ' "$OUT"; then
    run "train with contrastive loss" 0 "$SIMILE" train --images "$TMP/img" --labels "$TMP/lab" --model "$SPEC" \
        --loss contrastive --per-class 8 --batch 32 --epochs 1 --out "$TMP/c.smm" --no-normalize --quiet
    run "info of a metric model" 0 "$SIMILE" info "$TMP/c.smm"
    expect "metric model has no head" "$OUT" "loss: contrastive, classes: 0"
    run "eval of a metric model (retrieval)" 0 "$SIMILE" eval --model "$TMP/c.smm" --images "$TMP/img" --labels "$TMP/lab" --no-normalize
    expect "retrieval metrics printed" "$OUT" "precision@1 +[0-9]"
    run "classify on a model without a head" 1 "$SIMILE" eval --model "$TMP/c.smm" --images "$TMP/img" --labels "$TMP/lab" --task classify
    # per-epoch validation, MPerClassSampler-style batches and an EMA: the last epoch's validation
    # figures are those of the saved model (the averaged one), as `simile eval` computes them
    mkdir -p "$TMP/fm"
    for s in train t10k; do cp "$TMP/img.gz" "$TMP/fm/$s-images-idx3-ubyte.gz"; cp "$TMP/lab.gz" "$TMP/fm/$s-labels-idx1-ubyte.gz"; done
    # (a model without a final l2norm: the validation normalises as eval does)
    run "train with --val-split, --pk-random, --ema, --warmup" 0 "$SIMILE" train --data "$TMP/fm" --model "conv 4 k=3 p=1; bn; relu; gap; fc 8" \
        --loss contrastive --per-class 8 --batch 32 --epochs 2 --pk-random --ema 0.9 --val-split test \
        --val-classes 1-3 --schedule cosine --warmup 3 --out "$TMP/v.smm" --no-normalize
    expect "validation line each epoch" "$OUT" "^epoch 2/2  val  P@1 [0-9.]+  R-precision [0-9.]+  MAP@R [0-9.]+  \(150 images\)"
    expect "best epoch reported" "$OUT" "^best validation MAP@R [0-9.]+ at epoch [12]"
    VAL=$(grep -E "^epoch 2/2  val" "$OUT" | sed -E 's/.*MAP@R ([0-9.]+).*/\1/')
    run "eval of the validated model" 0 "$SIMILE" eval --model "$TMP/v.smm" --data "$TMP/fm" --split test --classes 1-3 --no-normalize
    expect "eval's MAP@R equals the last validation line" "$OUT" "MAP@R +${VAL:-none}$"
    run "--val-classes without --val-split" 2 "$SIMILE" train --data "$TMP/fm" --val-classes 1-3 --out "$TMP/x.smm"
    run "--val-split with --images" 2 "$SIMILE" train --images "$TMP/img" --labels "$TMP/lab" --val-split test --out "$TMP/x.smm"
    run "--warmup -1 refused" 2 "$SIMILE" train --data "$TMP/fm" --warmup -1 --out "$TMP/x.smm"
    run "--ema 1 refused" 2 "$SIMILE" train --data "$TMP/fm" --ema 1 --out "$TMP/x.smm"
    run "--val-split of an empty class set" 3 "$SIMILE" train --data "$TMP/fm" --model "$SPEC" --val-split test \
        --val-classes 9 --out "$TMP/x.smm" --no-normalize --epochs 1
else
    echo "note: no 'contrastive' loss registered; metric-loss checks skipped"
fi

checks_end test_cli.sh
