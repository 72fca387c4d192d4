#!/usr/bin/env bash
# run.sh - run one fuzz target for a given time: fuzz/run.sh TARGET SECONDS [extra libFuzzer flags]
# TARGET is idx, npy, model, gallery, spec, image, cli, serve, checkpoint or onnx (or "all": each in turn).  Builds
# build-fuzz if needed (clang; see docs/robustness.md), generates the seed corpora with
# make_corpus, keeps the growing corpus in build-fuzz/corpus/TARGET and any crash, leak,
# timeout or out-of-memory input in fuzz/findings/TARGET/.  One libFuzzer process, at the
# lowest priority.  Exits non-zero if libFuzzer reports a finding.
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:?usage: fuzz/run.sh TARGET SECONDS [libFuzzer flags]}; S=${2:?seconds}; shift 2
B=${SIMILE_FUZZ_BUILD:-build-fuzz}
if [ "$T" = all ]; then
  rc=0
  for t in idx npy model gallery spec image cli serve checkpoint onnx; do "$0" "$t" "$S" "$@" || rc=1; done
  exit $rc
fi
if [ ! -x "$B/fuzz/fuzz_$T" ] || [ -n "${SIMILE_FUZZ_REBUILD:-}" ]; then
  cmake -S . -B "$B" -DCMAKE_C_COMPILER=clang -DSIMILE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$B" -j"$(nproc)" >/dev/null
fi
[ -d "$B/seeds/$T" ] || "$B/fuzz/make_corpus" "$B/seeds" >/dev/null
mkdir -p "$B/corpus/$T" "fuzz/findings/$T"
mask=1; [ "$T" = cli ] && mask=3   # the CLI prints a lot
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
echo "== fuzz_$T for ${S}s"
nice -n 19 "$B/fuzz/fuzz_$T" -max_total_time="$S" -rss_limit_mb=2048 -timeout=25 -max_len=8192 \
  -close_fd_mask=$mask -print_final_stats=1 -artifact_prefix="fuzz/findings/$T/" "$@" \
  "$B/corpus/$T" "$B/seeds/$T" 2>&1 | grep -v '^#[0-9]*.*\(NEW\|REDUCE\|pulse\)' | tail -40
exit "${PIPESTATUS[0]}"
