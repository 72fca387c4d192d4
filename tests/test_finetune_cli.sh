#!/usr/bin/env bash
# test_finetune_cli.sh - `simile train`'s training workflow on a Fashion-MNIST subset (the first
# 150 train images of each of classes 0-5, mlp, 1 thread):
#  - --resume: a run is killed (SIGKILL) in its second epoch, after its first epoch-end
#    checkpoint, and resumed; another is killed mid-epoch after a --checkpoint-steps checkpoint
#    and resumed; both final model files are byte-identical (cmp) to an uninterrupted run's;
#  - --init reports which tensors it took and which it did not (a new embedding head), and
#    says so in --json; --keep-best with --val-classes-from-train keeps the epoch of the best
#    validation MAP@R that train --json recorded, and `simile info` prints that epoch and figure;
#  - refusals: an --init model with no matching tensor, a checkpoint of another spec, of other
#    settings (the seed, each augmentation option, the data's normalisation: the message names
#    the group of settings that differs), a corrupt checkpoint (exit 3); K too small or too large, --keep-best without a
#    validation set, an unknown --freeze-until layer (exit 2).
# usage: test_finetune_cli.sh path/to/simile
set -u
SIMILE=${1:?usage: test_finetune_cli.sh path/to/simile}
PY=/usr/bin/python3
DATA=/usr/share/datasets/fashion-mnist
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
OUT=$TMP/out.txt
ERR=$TMP/err.txt
. "$(dirname "$0")/checks.sh"
[ -r "$DATA/train-images-idx3-ubyte.gz" ] || { echo "FAIL: $DATA (dataset-fashion-mnist) is not installed"; exit 1; }
"$PY" - "$DATA" "$TMP" <<'PYEOF' || { echo "FAIL: could not write the subset"; exit 1; }
import gzip, struct, sys
import numpy as np
D, T = sys.argv[1], sys.argv[2]
def rd(p):
    b = gzip.open(p).read(); nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], 'big') for i in range(nd)]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * nd).reshape(dims)
x, y = rd(f'{D}/train-images-idx3-ubyte.gz'), rd(f'{D}/train-labels-idx1-ubyte.gz')
keep = np.zeros(len(y), bool)
for c in range(6): keep[np.nonzero(y == c)[0][:150]] = True
x, y = x[keep], y[keep]
open(f'{T}/img', 'wb').write(struct.pack('>IIII', 0x803, *x.shape) + x.tobytes())
open(f'{T}/lab', 'wb').write(struct.pack('>II', 0x801, len(y)) + y.tobytes())
PYEOF
D=(--images "$TMP/img" --labels "$TMP/lab" --threads 1 --quiet)
printf 'fc 256\nbn\nrelu\nfc 128\nbn\nrelu\nfc 32\nl2norm\n' >"$TMP/head32.spec"

# ---- resume: the same bits as an uninterrupted run -------------------------------------------
# every piece of state: P x K sampling, augmentation, a cosine schedule with warm-up, the weight
# average, held-out validation and --keep-best; epochs of 8000 samples (about half a second)
R=(--model mlp --loss multisimilarity --epochs 3 --epoch-size 8000 --aug-shift 2 --aug-flip --schedule cosine
   --warmup 20 --ema 0.99 --val-classes-from-train 2 --keep-best --seed 3)
run "uninterrupted run with a checkpoint" 0 "$SIMILE" train "${D[@]}" "${R[@]}" --checkpoint "$TMP/u.ckpt" --out "$TMP/u.smm"
grep '^best validation' "$OUT" >"$TMP/u.best"
# kill: after the file appears (an epoch's end, or step 15), the run is inside the next epoch
killed_run() { # NAME CKPT OUT EXTRA...: start, wait for the checkpoint, SIGKILL
    local name=$1 ck=$2 out=$3
    shift 3
    rm -f "$ck" "$out"
    "$SIMILE" train "${D[@]}" "${R[@]}" --checkpoint "$ck" --out "$out" "$@" >"$TMP/killed.txt" 2>&1 &
    local pid=$! i=0
    while [ ! -e "$ck" ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i + 1)); done
    kill -9 $pid 2>/dev/null
    { wait $pid; } 2>/dev/null
    local rc=$?
    if [ $rc -eq 137 ] && [ -e "$ck" ] && [ ! -e "$out" ]; then pass "$name: killed by SIGKILL after its first checkpoint, no model written"
    else fail "$name: exit $rc, checkpoint $( [ -e "$ck" ] && echo present || echo missing), model $( [ -e "$out" ] && echo written || echo absent)"; fi
}
killed_run "epoch checkpoint" "$TMP/k.ckpt" "$TMP/k.smm"
run "resume from the epoch-1 checkpoint" 0 "$SIMILE" train "${D[@]}" "${R[@]}" --checkpoint "$TMP/k.ckpt" --resume "$TMP/k.ckpt" --out "$TMP/k.smm"
if cmp -s "$TMP/u.smm" "$TMP/k.smm"; then pass "resumed model is byte-identical to the uninterrupted one (cmp)"
else fail "resumed model differs from the uninterrupted one"; fi
grep '^best validation' "$OUT" >"$TMP/k.best"
if [ -s "$TMP/u.best" ] && cmp -s "$TMP/u.best" "$TMP/k.best"; then pass "and reports the same best epoch and figure: $(cat "$TMP/k.best")"
else fail "the resumed run reports another best epoch: $(cat "$TMP/k.best") against $(cat "$TMP/u.best")"; fi
killed_run "step checkpoint" "$TMP/s.ckpt" "$TMP/s.smm" --checkpoint-steps 15
run "resume from the step-15 checkpoint (mid-epoch 1)" 0 "$SIMILE" train "${D[@]}" "${R[@]}" --checkpoint "$TMP/s.ckpt" --checkpoint-steps 15 --resume "$TMP/s.ckpt" --out "$TMP/s.smm"
if cmp -s "$TMP/u.smm" "$TMP/s.smm"; then pass "model resumed mid-epoch is byte-identical to the uninterrupted one (cmp)"
else fail "model resumed mid-epoch differs from the uninterrupted one"; fi
if cmp -s "$TMP/u.ckpt" "$TMP/k.ckpt"; then pass "the last checkpoints are byte-identical too"; else fail "the last checkpoints differ"; fi

# checkpoint refusals: another spec, other settings, a corrupt file, a missing one
run "checkpoint of another spec: exit 3" 3 "$SIMILE" train "${D[@]}" "${R[@]}" --model @"$TMP/head32.spec" --resume "$TMP/u.ckpt" --out "$TMP/x.smm"
expect "the message names the spec" "$ERR" "model spec"
run "checkpoint of other settings: exit 3" 3 "$SIMILE" train "${D[@]}" "${R[@]}" --seed 4 --resume "$TMP/u.ckpt" --out "$TMP/x.smm"
expect "the message says so" "$ERR" "other data or settings"
expect "and names the group that differs" "$ERR" "sampling \\(batch, P x K, epoch size, seed\\) differs"
# each augmentation option is part of the settings: added to the checkpoint's, it is refused
for aug in "--aug-crop default" "--aug-jitter brightness=0.2" "--aug-erase default"; do
    # shellcheck disable=SC2086 # the option and its value are two words
    run "checkpoint without $aug: exit 3" 3 "$SIMILE" train "${D[@]}" "${R[@]}" $aug --resume "$TMP/u.ckpt" --out "$TMP/x.smm"
    expect "the message names the augmentation" "$ERR" "its augmentation \\(shift, flip, crop, colour jitter, erasing\\) differs"
done
run "checkpoint with --aug-shift 1 instead of 2: exit 3" 3 "$SIMILE" train "${D[@]}" "${R[@]}" --aug-shift 1 --resume "$TMP/u.ckpt" --out "$TMP/x.smm"
expect "the message names the augmentation" "$ERR" "its augmentation"
# so is the data's normalisation (the images' values): another mean/std is refused
run "checkpoint with another normalisation: exit 3" 3 "$SIMILE" train "${D[@]}" "${R[@]}" --mean 0.5 --std 0.5 --resume "$TMP/u.ckpt" --out "$TMP/x.smm"
expect "the message names the training data" "$ERR" "its training data \\(images, labels, size, channels, normalisation\\)"
"$PY" -c "import sys; b = bytearray(open(sys.argv[1], 'rb').read()); b[len(b) // 2] ^= 1; open(sys.argv[2], 'wb').write(b)" "$TMP/u.ckpt" "$TMP/bad.ckpt"
run "corrupt checkpoint: exit 3" 3 "$SIMILE" train "${D[@]}" "${R[@]}" --resume "$TMP/bad.ckpt" --out "$TMP/x.smm"
expect "the message names the checksum" "$ERR" "checksum"
run "missing checkpoint: exit 3" 3 "$SIMILE" train "${D[@]}" "${R[@]}" --resume "$TMP/none.ckpt" --out "$TMP/x.smm"
[ ! -e "$TMP/x.smm" ] && pass "refused resumes write no model" || fail "a refused resume wrote a model"

# ---- fine-tuning ----------------------------------------------------------------------------
run "source model" 0 "$SIMILE" train "${D[@]}" --model mlp --loss multisimilarity --epochs 1 --out "$TMP/src.smm"
D2=(--images "$TMP/img" --labels "$TMP/lab" --threads 1)
run "--init with a new 32-d embedding head" 0 "$SIMILE" train "${D2[@]}" --model @"$TMP/head32.spec" --loss multisimilarity \
    --epochs 1 --init "$TMP/src.smm" --freeze-bn --freeze-until 1.fc --backbone-lr-mult 0.1 --json --out "$TMP/ft.smm"
expect "init: counts" "$ERR" "^init: from .*src.smm, 12 of 14 tensors taken"
expect "init: a taken tensor" "$ERR" "^init:   taken      1.fc.weight \(256, 784\)"
expect "init: a statistic taken" "$ERR" "^init:   taken      5.bn.running_var \(128\)"
expect "init: the new head is not taken, and why" "$ERR" "^init:   not taken  7.fc.weight \(32, 128\): the source's is \(64, 128\)"
"$PY" - "$OUT" <<'PYEOF' && pass "train --json: init taken 12, fresh 2" || fail "train --json's init record"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["init"]["tensors_taken"] == 12 and d["init"]["tensors_fresh"] == 2, d["init"]
PYEOF
run "--init without --model trains the init model's own network" 0 "$SIMILE" train "${D2[@]}" --loss multisimilarity \
    --epochs 1 --init "$TMP/ft.smm" --json --out "$TMP/ft2.smm"
expect "every tensor of the 32-d model is taken" "$ERR" "^init: from .*ft.smm, 14 of 14 tensors taken"
printf 'fc 16\nl2norm\n' >"$TMP/tiny.spec"
run "--init with no matching tensor: exit 3" 3 "$SIMILE" train "${D[@]}" --model @"$TMP/tiny.spec" --loss multisimilarity --epochs 1 --init "$TMP/src.smm" --out "$TMP/x.smm"
expect "the message says none matched" "$ERR" "no tensor of the source model"
expect "and lists what was not taken" "$ERR" "not taken  1.fc.weight \(16, 784\): the source's is \(256, 784\)"
run "--init of a missing file: exit 3" 3 "$SIMILE" train "${D[@]}" --model mlp --epochs 1 --init "$TMP/none.smm" --out "$TMP/x.smm"
run "--freeze-until with a wrong kind: exit 2" 2 "$SIMILE" train "${D[@]}" --model mlp --epochs 1 --freeze-until 2.relu --out "$TMP/x.smm"
expect "the message names the value" "$ERR" "'2.relu' is not a layer"
run "--freeze-until beyond the model: exit 2" 2 "$SIMILE" train "${D[@]}" --model mlp --epochs 1 --freeze-until 9 --out "$TMP/x.smm"

# ---- model selection ------------------------------------------------------------------------
run "--keep-best on 2 held-out training classes" 0 "$SIMILE" train "${D2[@]}" --model mlp --loss multisimilarity --epochs 4 \
    --lr 0.01 --val-classes-from-train 2 --keep-best --json --out "$TMP/best.smm"
expect "the held-out classes are named" "$ERR" "^train: classes 4 5 held out for validation \(300 images\)"
cp "$OUT" "$TMP/best.json"
run "info" 0 "$SIMILE" info "$TMP/best.smm"
"$PY" - "$TMP/best.json" "$OUT" <<'PYEOF' && pass "the kept epoch is the best recorded one, and info prints it" || fail "keep-best's epoch or info's line"
import json, re, sys
d = json.load(open(sys.argv[1]))
maps = [e["val"]["map_at_r"] for e in d["epoch_log"]]
best = max(range(len(maps)), key=lambda i: (maps[i], -i)) + 1
sel = d["selection"]
assert sel["epoch"] == best and sel["rule"] == "best" and sel["val_map_at_r"] == maps[best - 1], (sel, maps)
assert d["images"] == 600, d["images"]
m = re.search(r"^selection: epoch (\d+) \(the best epoch\), validation MAP@R ([0-9.]+)$", open(sys.argv[2]).read(), re.M)
assert m and int(m.group(1)) == best and abs(float(m.group(2)) - maps[best - 1]) < 6e-5, (m and m.groups(), maps)
print("epochs' MAP@R", maps, "kept", best)
PYEOF
run "K = 5 of 6 classes: exit 2" 2 "$SIMILE" train "${D[@]}" --model mlp --loss multisimilarity --epochs 1 --val-classes-from-train 5 --out "$TMP/x.smm"
expect "the message names K" "$ERR" "--val-classes-from-train 5"
run "K = 1: exit 2" 2 "$SIMILE" train "${D[@]}" --model mlp --loss multisimilarity --epochs 1 --val-classes-from-train 1 --out "$TMP/x.smm"
run "--keep-best without a validation set: exit 2" 2 "$SIMILE" train "${D[@]}" --model mlp --epochs 1 --keep-best --out "$TMP/x.smm"
[ ! -e "$TMP/x.smm" ] && pass "refused runs write no model" || fail "a refused run wrote a model"
checks_end test_finetune_cli
