#!/usr/bin/env bash
# test_docs_refs.sh - the documentation cites only what is in the repository: no reference to the
# protocol file that lived outside it (PROTOCOL.md, shared/docs) in the README, docs, sources,
# bench/, scripts/ or tests/; every docs/NAME.md named anywhere there exists; docs/benchmarks.md
# holds the four protocols and the side-by-side and CPU rules.  ($1, the CLI path, is unused.)
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
FAILS=0
pass() { echo "ok   $1"; }
fail() { FAILS=$((FAILS + 1)); echo "FAIL $1"; }
FILES=$(ls README.md docs/*.md; find src include report cli bench scripts tests -type f \
        \( -name '*.c' -o -name '*.h' -o -name '*.py' -o -name '*.sh' -o -name '*.txt' \) ! -name test_docs_refs.sh)
if grep -n -E 'PROTOCOL|shared/docs' $FILES >/tmp/sm_docs_refs.$$ 2>/dev/null; then
    fail "references to a file outside the repository:"; sed 's/^/     | /' /tmp/sm_docs_refs.$$ | head -10
else
    pass "no reference to PROTOCOL.md or shared/docs"
fi
rm -f /tmp/sm_docs_refs.$$
missing=0
for d in $(grep -oh -E 'docs/[A-Za-z0-9_-]+\.md' $FILES | sort -u); do
    [ -f "$d" ] || { missing=$((missing + 1)); echo "     | $d is named but does not exist"; }
done
[ $missing -eq 0 ] && pass "every docs/*.md named exists" || fail "$missing docs named but missing"
lack=0
for h in "## Data" "## fmnist-open" "## fmnist-closed" "## Evaluation at scale" "## Exact nearest-neighbour search" \
         "## The peers and how each is run" "side by side in one run" "lscpu"; do
    grep -qF -- "$h" docs/benchmarks.md || { lack=$((lack + 1)); echo "     | docs/benchmarks.md lacks \"$h\""; }
done
[ $lack -eq 0 ] && pass "docs/benchmarks.md has the protocols and the rules" || fail "docs/benchmarks.md incomplete"
if [ $FAILS -gt 0 ]; then echo "$FAILS check(s) failed"; exit 1; fi
echo "all checks passed"
