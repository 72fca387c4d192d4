#!/usr/bin/env bash
# test_seeded_isa.sh - the same seed gives the same bits on every instruction-set path of
# simile's matrix products and on any thread count: a short seeded multi-similarity training
# (cnn-s, the first 120 Fashion-MNIST train images of each of classes 0-4, 1 epoch, seed 1) run
# under SIMILE_ISA=scalar, avx2 and avx512 (a path this CPU lacks is skipped, and said so) on 1
# thread, and on the default path with 2 threads, must write byte-identical model files.  Every
# product is one chain of fused multiply-adds in a fixed order on every path (src/backend/cpu/
# gemm.h) and every other reduction has a fixed order, so no tolerance is needed.
# usage: test_seeded_isa.sh path/to/simile
set -u
SIMILE=${1:?usage: test_seeded_isa.sh path/to/simile}
PY=/usr/bin/python3
DATA=/usr/share/datasets/fashion-mnist
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
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
for c in range(5): keep[np.nonzero(y == c)[0][:120]] = True
x, y = x[keep], y[keep]
open(f'{T}/img', 'wb').write(struct.pack('>IIII', 0x803, *x.shape) + x.tobytes())
open(f'{T}/lab', 'wb').write(struct.pack('>II', 0x801, len(y)) + y.tobytes())
PYEOF
train() { # name threads [SIMILE_ISA]
  env ${3:+SIMILE_ISA=$3} "$SIMILE" train --images "$TMP/img" --labels "$TMP/lab" --loss multisimilarity \
      --epochs 1 --threads "$2" --seed 1 --out "$TMP/$1.smm" >"$TMP/$1.txt" 2>&1
}
flags=$(sed -n 's/^vector  *[^:]*: //p' <("$SIMILE" --version))
if ! "$SIMILE" --version | grep -q '^blas  *simile-kernels'; then
  echo "skip: built with OpenBLAS (-DSIMILE_BLAS=openblas): the paths of simile's own kernels are not used"
  exit 0
fi
ref=""
for isa in scalar avx2 avx512; do
  case $isa in
    avx2) have=$(echo " $flags " | grep -q " avx2 " && echo " $flags " | grep -q " fma " && echo 1) ;;
    avx512) have=$(echo " $flags " | grep -q " avx512f " && echo 1) ;;
    *) have=1 ;;
  esac
  if [ -z "$have" ]; then echo "skip $isa: this CPU lacks it (flags: $flags)"; continue; fi
  if ! train "$isa" 1 "$isa"; then fail "train under SIMILE_ISA=$isa"; cat "$TMP/$isa.txt"; continue; fi
  grep -q "core $isa," "$TMP/$isa.txt" && pass "SIMILE_ISA=$isa: train's header names the path" \
      || fail "SIMILE_ISA=$isa: the header does not name the path: $(grep -m1 ' cpu ' "$TMP/$isa.txt")"
  if [ -z "$ref" ]; then ref=$isa; continue; fi
  cmp -s "$TMP/$ref.smm" "$TMP/$isa.smm" && pass "SIMILE_ISA=$isa gives the model of $ref, byte for byte" \
      || fail "SIMILE_ISA=$isa and $ref give different models"
done
if train threads2 2; then
  cmp -s "$TMP/$ref.smm" "$TMP/threads2.smm" && pass "2 threads give the model of 1 thread, byte for byte" \
      || fail "2 threads and 1 thread give different models"
else
  fail "train on 2 threads"; cat "$TMP/threads2.txt"
fi
SIMILE_ISA=avx1024 "$SIMILE" --version >/dev/null 2>"$TMP/bad.err"; rc=$?
[ "$rc" = 2 ] && grep -q "avx1024" "$TMP/bad.err" && pass "a bad SIMILE_ISA is a usage error (exit 2) naming the value" \
    || fail "SIMILE_ISA=avx1024: exit $rc, $(cat "$TMP/bad.err")"
checks_end test_seeded_isa.sh
