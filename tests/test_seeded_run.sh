#!/usr/bin/env bash
# test_seeded_run.sh - speed changes keep results: a short seeded multi-similarity run on a
# Fashion-MNIST subset (the first 400 train images of each of classes 0-4; 2 epochs, 1 thread,
# seed 1) must give the per-epoch training losses and the retrieval figures on the first 200
# test images of each of classes 5-9 that commit 5663937 gave (recorded below, before the
# batch-parallel inference path).  Training is bit-deterministic for a seed and thread count,
# so the losses must agree to the 4 printed decimals; the embeddings may differ by float
# rounding (bn folded into the convolutions), so the metrics must agree within 0.002.
# usage: test_seeded_run.sh path/to/simile
set -u
SIMILE=${1:?usage: test_seeded_run.sh path/to/simile}
PY=/usr/bin/python3
DATA=/usr/share/datasets/fashion-mnist
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
[ -r "$DATA/train-images-idx3-ubyte.gz" ] || { echo "FAIL: $DATA (dataset-fashion-mnist) is not installed"; exit 1; }
"$PY" - "$DATA" "$TMP" <<'PYEOF' || { echo "FAIL: could not write the subset"; exit 1; }
import gzip, struct, sys
import numpy as np
D, T = sys.argv[1], sys.argv[2]
def rd(p):
    b = gzip.open(p).read(); nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], 'big') for i in range(nd)]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * nd).reshape(dims)
def subset(split, classes, per):
    x, y = rd(f'{D}/{split}-images-idx3-ubyte.gz'), rd(f'{D}/{split}-labels-idx1-ubyte.gz')
    keep = np.zeros(len(y), bool)
    for c in classes: keep[np.nonzero(y == c)[0][:per]] = True
    return x[keep], y[keep]
for name, split, classes, per in [('tr', 'train', range(5), 400), ('te', 't10k', range(5, 10), 200)]:
    x, y = subset(split, classes, per)
    open(f'{T}/{name}_img', 'wb').write(struct.pack('>IIII', 0x803, *x.shape) + x.tobytes())
    open(f'{T}/{name}_lab', 'wb').write(struct.pack('>II', 0x801, len(y)) + y.tobytes())
PYEOF
"$SIMILE" train --images "$TMP/tr_img" --labels "$TMP/tr_lab" --loss multisimilarity --epochs 2 \
    --threads 1 --seed 1 --out "$TMP/m.smm" >"$TMP/train.txt" 2>&1 || { echo "FAIL: train"; cat "$TMP/train.txt"; exit 1; }
"$SIMILE" eval --model "$TMP/m.smm" --images "$TMP/te_img" --labels "$TMP/te_lab" --threads 1 \
    >"$TMP/eval.txt" 2>&1 || { echo "FAIL: eval"; cat "$TMP/eval.txt"; exit 1; }
"$PY" - "$TMP/train.txt" "$TMP/eval.txt" <<'PYEOF'
import re, sys
train, ev = open(sys.argv[1]).read(), open(sys.argv[2]).read()
# recorded with commit 5663937 (before the batch-parallel inference path)
want_loss = [1.7799, 1.7015]
want = {"precision@1": 0.871, "R-precision": 0.4988, "MAP@R": 0.3737}
loss = [float(v) for v in re.findall(r"^epoch \d+/2 +loss ([0-9.]+)", train, re.M)]
fails = 0
if loss != want_loss:
    print(f"FAIL training losses {loss}, recorded {want_loss}"); fails += 1
else:
    print(f"ok   training losses {loss}")
for k, v in want.items():
    m = re.search(r"^ *" + re.escape(k) + r" +([0-9.]+)", ev, re.M)
    got = float(m.group(1)) if m else None
    if got is None or abs(got - v) > 0.002:
        print(f"FAIL {k} {got}, recorded {v}"); fails += 1
    else:
        print(f"ok   {k} {got} (recorded {v})")
sys.exit(1 if fails else 0)
PYEOF
