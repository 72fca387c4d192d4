#!/usr/bin/env bash
# test_backend_layering.sh - the rules of the compute backend (docs/architecture.md), checked on
# the source tree: outside src/backend/ no file calls BLAS, uses vector intrinsics or calls a
# CPU kernel (sm_k_*) directly instead of the backend's operations (sm_be_*) -- except the two
# programs that test and measure the CPU backend's own kernels (tests/test_gemm.c,
# bench/bench_kernels.c); every operation of
# src/backend/ops.def is implemented by the CPU backend's table (it is generated from the same
# list, so this is the compiler's check) and run by tests/test_backend_ops.c.
# usage: test_backend_layering.sh [simile-binary (unused)]
cd "$(dirname "$0")/.." || exit 1
. tests/checks.sh
dirs="src cli serve report include python bench fuzz"
existing=""
for d in $dirs; do [ -d "$d" ] && existing="$existing $d"; done
hits=$(grep -rnE "cblas_|_mm256_|_mm512_|_mm_[a-z]|immintrin\.h|\bsm_k1?_[a-z0-9_]+\(" $existing \
       --include=*.c --include=*.h --include=*.cu 2>/dev/null | grep -v "^src/backend/" \
       | grep -vE "^(tests/test_gemm\.c|bench/bench_kernels\.c):")
if [ -z "$hits" ]; then pass "no BLAS, intrinsics or CPU kernel calls outside src/backend/"
else fail "BLAS, intrinsics or CPU kernels used outside src/backend/:"; echo "$hits" | sed 's/^/     | /' | head -20; fi
ops=$(grep -oE "^SM_BE_OP\([a-z0-9_]+" src/backend/ops.def | sed 's/SM_BE_OP(//')
[ "$(echo "$ops" | wc -w)" -ge 30 ] && pass "ops.def lists $(echo "$ops" | wc -w) operations" || fail "ops.def: too few operations parsed"
missing=""
for op in $ops; do grep -q "sm_be_${op}(" tests/test_backend_ops.c || missing="$missing $op"; done
if [ -z "$missing" ]; then pass "every operation is run by tests/test_backend_ops.c"
else fail "operations not run by tests/test_backend_ops.c:$missing"; fi
checks_end test_backend_layering
