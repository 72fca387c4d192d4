#!/usr/bin/env bash
# test_compute_info.sh - the command line names what it computes with: `simile --version` lists
# the CPU, its vector extensions, what computes the matrix products and the kernel it runs
# (simile's own kernels: the instruction-set path; SIMILE_ISA forces one); `train` prints the
# same kernel in its header; the warning about a generic BLAS kernel appears on stderr of
# `train` and `embed` exactly when `--version` shows it (whether it should appear for given
# facts is test_cpuinfo.c's business; this test runs with the environment it is given and never
# sets OPENBLAS_CORETYPE).  Data: 40 random 6x6 images in 2 classes, written here.
set -u
SIMILE=${1:?usage: test_compute_info.sh path/to/simile}
TMP=$(mktemp -d /tmp/sm_test_compute.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/checks.sh"

/usr/bin/python3 - "$TMP" <<'PYEOF' || { echo "FAIL: could not write the data"; exit 1; }
import random, struct, sys
random.seed(3)
n, h, w = 40, 6, 6
img = bytes(random.randrange(256) for _ in range(n * h * w))
lab = bytes(i % 2 for i in range(n))
open(sys.argv[1] + "/img", "wb").write(struct.pack(">IIII", 0x803, n, h, w) + img)
open(sys.argv[1] + "/lab", "wb").write(struct.pack(">II", 0x801, n) + lab)
PYEOF

"$SIMILE" --version >"$TMP/version.txt" 2>&1 && pass "--version exits 0" || fail "--version exit code"
for key in cpu vector blas kernel threads; do
    grep -Eq "^$key +[^ ]" "$TMP/version.txt" && pass "--version has a '$key' line" || fail "--version lacks '$key': $(cat "$TMP/version.txt")"
done
core=$(sed -n 's/^kernel  *//p' "$TMP/version.txt")
warns=0
grep -q '^warning ' "$TMP/version.txt" && warns=1

"$SIMILE" train --images "$TMP/img" --labels "$TMP/lab" --model "fc 4" --loss contrastive --epochs 1 \
    --batch 20 --per-class 10 --threads 1 --out "$TMP/m.smm" >"$TMP/train.txt" 2>"$TMP/train.err" \
    && pass "train exits 0" || { fail "train failed"; cat "$TMP/train.err"; }
grep -Eq "^ +cpu .*\(family [0-9]+ model [0-9]+, [A-Z0-9-]+\), .* core $core, 1 thread$" "$TMP/train.txt" \
    && pass "train's header names the CPU and kernel $core" || { fail "train's header: no compute line for core $core"; head -4 "$TMP/train.txt"; }
"$SIMILE" embed --model "$TMP/m.smm" --images "$TMP/img" --labels "$TMP/lab" --out "$TMP/e.npy" \
    >"$TMP/embed.txt" 2>"$TMP/embed.err" && pass "embed exits 0" || { fail "embed failed"; cat "$TMP/embed.err"; }
for c in train embed; do
    n=$(grep -c "^simile $c: warning: OpenBLAS runs its generic" "$TMP/$c.err")
    if [ "$warns" = 1 ] && [ "$n" = 1 ]; then pass "$c warns once, as --version does (kernel $core)"
    elif [ "$warns" = 0 ] && [ "$n" = 0 ]; then pass "$c does not warn, nor does --version (kernel $core)"
    else fail "$c printed $n warning lines, --version warning=$warns"; fi
done
# simile's own kernels (the default build): the kernel is an instruction-set path, the widest
# the flags allow unless SIMILE_ISA forces one; a path the CPU lacks or a bad name is exit 2
if grep -q '^blas  *simile-kernels' "$TMP/version.txt"; then
    flags=" $(sed -n 's/^vector  *[^:]*: //p' "$TMP/version.txt") "
    widest=scalar
    case "$flags" in *" avx2 "*) case "$flags" in *" fma "*) widest=avx2 ;; esac ;; esac
    case "$flags" in *" avx512f "*) widest=avx512 ;; esac
    if [ -z "${SIMILE_ISA:-}" ]; then
        [ "$core" = "$widest" ] && pass "the kernel is the widest path, $widest" || fail "kernel '$core', flags allow $widest"
    fi
    v=$(SIMILE_ISA=scalar "$SIMILE" --version | sed -n 's/^kernel  *//p')
    [ "$v" = scalar ] && pass "SIMILE_ISA=scalar: --version names the scalar path" || fail "SIMILE_ISA=scalar: kernel '$v'"
    SIMILE_ISA=avx3 "$SIMILE" --version >/dev/null 2>"$TMP/isa.err"; rc=$?
    [ "$rc" = 2 ] && grep -q "avx3" "$TMP/isa.err" && pass "SIMILE_ISA=avx3 is a usage error naming it" \
        || fail "SIMILE_ISA=avx3: exit $rc: $(cat "$TMP/isa.err")"
    if [ "$widest" != avx512 ]; then
        SIMILE_ISA=avx512 "$SIMILE" --version >/dev/null 2>"$TMP/isa.err"; rc=$?
        [ "$rc" = 2 ] && grep -q "lacks" "$TMP/isa.err" && pass "SIMILE_ISA=avx512 on a CPU without it: exit 2, says so" \
            || fail "SIMILE_ISA=avx512 without AVX-512: exit $rc: $(cat "$TMP/isa.err")"
    fi
fi
checks_end test_compute_info.sh
