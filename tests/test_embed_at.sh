#!/usr/bin/env bash
# test_embed_at.sh - embedding before the projection head (`train --embed-at`, `simile cut`), on
# 1,024 samples of Fashion-MNIST classes 0-2, cnn-s (layer 12 is its gap), 1 thread:
#  - the model saved with --embed-at 12.gap is layers 1..12 + an l2norm, 128 wide, and
#    `simile eval` on the validation set prints the MAP@R that the last epoch's validation
#    reported in --json (validation embeds at the same layer as the saved model);
#  - --embed-at does not change the training: `simile cut --at 12.gap` of the same run
#    without it evaluates to the same figures;
#  - refusals (exit 2): a layer the model does not have, a layer inside a residual block,
#    a layer whose output is a feature map.
# usage: test_embed_at.sh path/to/simile
set -u
SIMILE=${1:?usage: test_embed_at.sh path/to/simile}
PY=/usr/bin/python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
OUT=$TMP/out
ERR=$TMP/err
. "$(dirname "$0")/checks.sh"

COMMON=(--classes 0-2 --loss multisimilarity --epochs 2 --epoch-size 512 --seed 4 --threads 1
        --val-split test --val-classes 5-9)
run "train --embed-at 12.gap" 0 "$SIMILE" train "${COMMON[@]}" --embed-at 12.gap --json --out "$TMP/trunk.smm"
cp "$OUT" "$TMP/trunk.json"
"$SIMILE" info "$TMP/trunk.smm" >"$TMP/info" 2>&1
expect "the saved model ends gap, l2norm" "$TMP/info" '^ *13 l2norm'
expect_not "the saved model has no fc" "$TMP/info" ' fc '
expect "the saved model embeds 128 wide" "$TMP/info" 'embedding 128$'
$PY - "$TMP/trunk.json" >"$TMP/j" <<'PYEOF' && pass "--json records embed_at" || fail "--json records embed_at: $(cat "$TMP/j")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["embed_at"] == {"layer": 12, "embedding_dim": 128}, d.get("embed_at")
print(d["epoch_log"][-1]["val"]["map_at_r"])
PYEOF
VAL=$(tail -n 1 "$TMP/j")
run "eval the trunk" 0 "$SIMILE" eval --model "$TMP/trunk.smm" --split test --classes 5-9 --threads 1
EV=$(sed -nE 's/^ *MAP@R +([0-9.]+)$/\1/p' "$OUT")
if [ -n "$EV" ] && $PY -c "import sys; sys.exit(abs(float('$EV') - float('$VAL')) > 5e-5)"; then
    pass "eval's MAP@R $EV = the last validation's $VAL"
else
    fail "eval's MAP@R '$EV' differs from the last validation's '$VAL'"
fi
cp "$OUT" "$TMP/trunk.eval"

run "train without --embed-at" 0 "$SIMILE" train "${COMMON[@]}" --quiet --out "$TMP/whole.smm"
run "simile cut --at 12.gap" 0 "$SIMILE" cut "$TMP/whole.smm" --at 12.gap --out "$TMP/cut.smm"
run "eval the cut model" 0 "$SIMILE" eval --model "$TMP/cut.smm" --split test --classes 5-9 --threads 1
same_eval() { diff -q <(tail -n +2 "$1") <(tail -n +2 "$2") >/dev/null; } # (line 1 names the file)
if same_eval "$OUT" "$TMP/trunk.eval"; then pass "cut of the whole run evaluates as the --embed-at run";
else fail "cut of the whole run evaluates differently"; diff "$OUT" "$TMP/trunk.eval" | head -5; fi
run "eval the whole model" 0 "$SIMILE" eval --model "$TMP/whole.smm" --split test --classes 5-9 --threads 1
if same_eval "$OUT" "$TMP/trunk.eval"; then fail "the whole model evaluates as its trunk (nothing was cut)";
else pass "the whole model evaluates differently from its trunk"; fi

run "--embed-at 99 refused" 2 "$SIMILE" train "${COMMON[@]}" --embed-at 99 --out "$TMP/x.smm"
expect "names the layer" "$ERR" "'99' is not a layer"
run "--embed-at inside a block refused" 2 "$SIMILE" train --model resnet-s "${COMMON[@]}" --embed-at 6 --out "$TMP/x.smm"
expect "says why" "$ERR" "inside the residual block of layers 5..11"
run "cut at a feature map refused" 2 "$SIMILE" cut "$TMP/whole.smm" --at 11.relu --out "$TMP/x.smm"
expect "says why" "$ERR" "feature map"
[ ! -e "$TMP/x.smm" ] && pass "nothing written" || fail "a refused run wrote a model"
checks_end test_embed_at
