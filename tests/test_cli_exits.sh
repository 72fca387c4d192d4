#!/usr/bin/env bash
# test_cli_exits.sh - exit codes and help of the simile command-line tool (path given as $1):
# -h, --help and `simile help CMD` print that command's help on stdout with exit 0 for every
# command and gallery subcommand; an unknown loss, loss option, spec, optimizer or schedule is a
# usage error (exit 2) naming the bad value and the valid ones, found before any work: compare
# with a bad loss exits 2 within seconds and leaves no output folder; training progress shows
# elapsed time and an ETA and says "1 epoch", "1 class".  One line per check; exits non-zero if
# any check fails.
set -u
SIMILE=${1:?usage: test_cli_exits.sh path/to/simile}
PY=/usr/bin/python3
TMP=$(mktemp -d /tmp/sm_test_cli_exits.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/checks.sh"
OUT="$TMP/out.txt"
ERR="$TMP/err.txt"

# ---- data: Fashion-MNIST-named IDX files of 8x8 random images, 10 classes --------------------
"$PY" - "$TMP/data" <<'PYEOF' || { echo "FAIL could not write the IDX files"; exit 1; }
import gzip, os, struct, sys
import numpy as np
d = sys.argv[1]; os.makedirs(d)
rng = np.random.default_rng(0)
for split, n in (("train", 300), ("t10k", 200)):
    y = (np.arange(n) % 10).astype(np.uint8)
    x = rng.integers(0, 256, size=(n, 8, 8)).astype(np.uint8)
    with gzip.open(f"{d}/{split}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 8, 8) + x.tobytes())
    with gzip.open(f"{d}/{split}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + y.tobytes())
# one class only, for "1 class"
y = np.zeros(40, np.uint8); x = rng.integers(0, 256, size=(40, 8, 8)).astype(np.uint8)
open(f"{d}/one-img", "wb").write(struct.pack(">IIII", 0x803, 40, 8, 8) + x.tobytes())
open(f"{d}/one-lab", "wb").write(struct.pack(">II", 0x801, 40) + y.tobytes())
PYEOF
SPEC="conv 4 k=3 p=1; bn; relu; gap; fc 8; l2norm"
D="$TMP/data"

# ---- help: -h, --help, simile help CMD -------------------------------------------------------------
for c in train eval info losses compare embed gallery identify verify classify; do
    for h in -h --help; do
        run "simile $c $h" 0 "$SIMILE" $c $h && expect "simile $c $h prints its usage on stdout" "$OUT" "usage: simile $c"
    done
    run "simile help $c" 0 "$SIMILE" help $c && expect "simile help $c prints $c's usage" "$OUT" "usage: simile $c"
done
for s in create enrol remove list compact calibrate; do
    for h in -h --help; do
        run "simile gallery $s $h" 0 "$SIMILE" gallery $s $h &&
            expect "simile gallery $s $h prints its usage" "$OUT" "usage: simile gallery $s"
    done
done
run "simile help gallery enrol" 0 "$SIMILE" help gallery enrol && expect "help gallery enrol" "$OUT" "usage: simile gallery enrol"
run "train -h after other options" 0 "$SIMILE" train --epochs 3 -h && expect "train -h prints train's usage" "$OUT" "usage: simile train"
run "simile help" 0 "$SIMILE" help && expect "simile help lists the commands" "$OUT" "^ +compare "
run "simile help unknown command" 2 "$SIMILE" help frobnicate && expect "the unknown command is named" "$ERR" "frobnicate"
run "info with no file prints usage on stderr" 2 "$SIMILE" info && expect "info usage on stderr" "$ERR" "usage: simile info"

# ---- usage errors: exit 2, the bad value and the valid ones named -------------------------------
TR=(train --images "$D/train-images-idx3-ubyte.gz" --labels "$D/train-labels-idx1-ubyte.gz" --model "$SPEC" --out "$TMP/x.smm" --quiet)
run "train --loss triplett" 2 "$SIMILE" "${TR[@]}" --loss triplett &&
    expect "triplett named with the valid losses" "$ERR" "unknown loss 'triplett' \(valid: softmax, .*triplet"
run "train --loss-opts with an unknown key" 2 "$SIMILE" "${TR[@]}" --loss triplet --loss-opts margn=0.2 &&
    expect "the bad key and the loss's options named" "$ERR" "margn.*" && expect "the valid options shown" "$ERR" "options of triplet: .*margin="
run "train --loss-opts with a bad value" 2 "$SIMILE" "${TR[@]}" --loss triplet --loss-opts miner=bogus &&
    expect "the bad value named" "$ERR" "bogus"
run "train arcface without classes=" 2 "$SIMILE" "${TR[@]}" --loss arcface && expect "classes= is asked for" "$ERR" "classes="
run "train --optimizer adamm" 2 "$SIMILE" "${TR[@]}" --optimizer adamm && expect "optimizers named" "$ERR" "adamm.*adam, adamw or sgd"
run "train --schedule linear" 2 "$SIMILE" "${TR[@]}" --schedule linear && expect "schedules named" "$ERR" "linear.*constant"
run "train a bad spec" 2 "$SIMILE" "${TR[@]}" --model "conv 4 k=3; blorp" && expect "the bad layer named" "$ERR" "blorp"
[ -e "$TMP/x.smm" ] && fail "a refused train wrote its model" || pass "no refused train wrote a model"
run "train softmax (classes= supplied by train)" 0 "$SIMILE" "${TR[@]}" --loss softmax --epochs 1

# compare: every loss checked before any work; nothing written; quick
CMP0=(compare --data "$D" --model "$SPEC" --quick --few-per-class 0 --train-per-class 0 --test-per-class 0
      --shots 2 --calib-per-class 5 --gallery-per-class 5 --pairs-per-class 5 --scatter-per-class 5 --triplets 100)
CMP=("${CMP0[@]}" --quiet)
t0=$(date +%s)
run "compare --losses softmax,foo" 2 "$SIMILE" "${CMP[@]}" --losses softmax,foo --out "$TMP/c1" &&
    expect "foo named with the valid losses" "$ERR" "unknown loss 'foo' \(valid: "
t1=$(date +%s)
[ $((t1 - t0)) -le 5 ] && pass "compare refuses within 5 s ($((t1 - t0)) s)" || fail "compare took $((t1 - t0)) s to refuse"
[ -e "$TMP/c1" ] && fail "compare with a bad loss created its output folder" || pass "compare with a bad loss wrote nothing"
run "compare --loss-opts with a bad option" 2 "$SIMILE" "${CMP[@]}" --losses softmax,triplet --loss-opts triplet:miner=bogus --out "$TMP/c2" &&
    expect "the bad option value named" "$ERR" "bogus"
[ -e "$TMP/c2" ] && fail "compare with a bad loss option created its output folder" || pass "compare with a bad loss option wrote nothing"
# a spec that does not fit the 8x8 images is found by sm_compare_run after loading, before training
run "compare with a spec too large for the images" 2 "$SIMILE" "${CMP[@]}" --losses softmax,triplet --model "conv 4 k=9; gap" --out "$TMP/c3"
[ -e "$TMP/c3" ] && fail "compare with a bad spec left its output folder" || pass "compare with a bad spec wrote nothing"
expect_not "compare with a bad spec trained nothing" "$OUT" "training softmax"

# ---- progress: elapsed time and ETA, singular and plural -------------------------------------------
run "train --epochs 1 on one class" 0 "$SIMILE" train --images "$D/one-img" --labels "$D/one-lab" --model "$SPEC" \
    --epochs 1 --batch 16 --threads 1 --out "$TMP/one.smm"
expect "\"1 epoch\" in the header" "$OUT" ", 1 epoch, "
expect_not "no \"1 epochs\"" "$OUT" "1 epochs"
expect "\"1 class\" in the header" "$OUT" "40 images 8x8x1, 1 class, "
expect_not "no \"1 classes\"" "$OUT" "1 classes"
expect "\"1 thread\" in the header" "$OUT" ", 1 thread$"
expect "the epoch line shows elapsed time and an ETA" "$OUT" "^epoch 1/1 .* elapsed [0-9]+:[0-9]{2}  ETA [0-9]+:[0-9]{2}$"
run "train --epochs 3" 0 "$SIMILE" train --images "$D/train-images-idx3-ubyte.gz" --labels "$D/train-labels-idx1-ubyte.gz" \
    --model "$SPEC" --epochs 3 --batch 32 --out "$TMP/three.smm"
expect "\"3 epochs\" and \"10 classes\" in the header" "$OUT" "300 images 8x8x1, 10 classes, .*"
expect "\"3 epochs\"" "$OUT" ", 3 epochs, "
[ "$(grep -Ec '^epoch [123]/3 .* elapsed [0-9]+:[0-9]{2}  ETA [0-9]+:[0-9]{2}$' "$OUT")" -eq 3 ] &&
    pass "every epoch line has elapsed and ETA" || fail "epoch lines without elapsed/ETA"
run "eval on one class" 0 "$SIMILE" eval --model "$TMP/one.smm" --images "$D/one-img" --labels "$D/one-lab" --task classify
expect "eval: \"40 images\"" "$OUT" "classification: 40 images"
run "compare --epochs 1" 0 "$SIMILE" "${CMP0[@]}" --losses softmax,contrastive --threads 1 --no-save --out "$TMP/c4"
expect "compare: \"1 epoch\" in the run log" "$OUT" "images x 1 epoch in"
expect_not "compare: no \"1 epochs\"" "$OUT" "1 epochs"
expect "compare: \"1 thread\"" "$OUT" "wall time [0-9.]+ s, 1 thread$"
expect "compare: epoch lines show elapsed and ETA" "$OUT" "^epoch 1/1 .* elapsed [0-9]+:[0-9]{2}  ETA [0-9]+:[0-9]{2}$"
[ -s "$TMP/c4/report.html" ] && ! grep -q "1 epochs\|1 threads" "$TMP/c4/report.html" && pass "report.html: no \"1 epochs\", \"1 threads\"" || fail "report.html missing or says 1 epochs / 1 threads"
grep -q ">training</th><td class=\"l\">1 epoch, " "$TMP/c4/report.html" && pass "report.html settings: \"1 epoch\"" || fail "report.html settings: no \"1 epoch\""

checks_end test_cli_exits.sh
