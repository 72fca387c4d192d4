#!/usr/bin/env bash
# test_main_sh.sh - argument parsing of scripts/main.sh without running the main job (simile
# path as $1): -h; --quick, --threads N / --threads=N, --out DIR and other simile compare
# options become the right compare command (--dry-run prints it; a stand-in binary that records
# its working folder and arguments shows what is run, and from where: the user's folder, so a
# relative --out lands there); a stray argument, a bad option of the script or an option
# without its value is refused with exit 2; a bad compare option is refused by simile compare
# itself (exit 2, nothing written); a missing binary gives a clear message.  One line per
# check; exits non-zero if any check fails.
set -u
SIMILE=${1:?usage: test_main_sh.sh path/to/simile}
MAIN="$(cd "$(dirname "$0")/.." && pwd)/scripts/main.sh"
TMP=$(mktemp -d /tmp/sm_test_main_sh.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/checks.sh"
OUT="$TMP/out.txt"
ERR="$TMP/err.txt"

run "main.sh -h" 0 "$MAIN" -h && expect "-h prints the options" "$OUT" "^usage: scripts/main.sh .*--threads N"
run "main.sh --help" 0 "$MAIN" --help && expect "--help names --out" "$OUT" "--out DIR +output folder, relative to the current directory"

# --dry-run: the compare command, nothing run
export SIMILE=/nonexistent/simile
run "--quick --threads 1 (the issue's command)" 0 "$MAIN" --quick --threads 1 --dry-run &&
    expect "its compare command" "$OUT" "^/nonexistent/simile compare --quick --threads 1 --out results $"
run "--threads=2 --out x" 0 "$MAIN" --dry-run --threads=2 --out=x && expect "--threads=2 --out=x" "$OUT" " compare --threads 2 --out x $"
run "compare options passed on" 0 "$MAIN" --losses softmax,triplet --quick --seed 2 --no-save --out "my out" --dry-run &&
    expect "in their order, values kept" "$OUT" " compare --losses softmax,triplet --quick --seed 2 --no-save --out 'my out' $"
run "a stray argument" 2 "$MAIN" --quick results2 && expect "it is named, with --out" "$ERR" "unexpected argument 'results2' \(the output folder is --out DIR\)"
run "an unknown short option" 2 "$MAIN" -q && expect "it is named" "$ERR" "unknown option '-q'"
run "--threads without a value" 2 "$MAIN" --threads && expect "--threads needs a value" "$ERR" "--threads needs a value"
run "--out followed by an option" 2 "$MAIN" --out --quick && expect "--out needs a value" "$ERR" "--out needs a value"
run "a missing binary" 1 "$MAIN" --quick && expect "says to build first" "$ERR" "not found: build first"

# what is run, and from where: a stand-in binary records its folder and arguments
cat >"$TMP/fake" <<'FAKE'
#!/bin/sh
echo "cwd=$(pwd)"
echo "args=$*"
FAKE
chmod +x "$TMP/fake"
mkdir -p "$TMP/user/here"
export SIMILE="$TMP/fake"
(cd "$TMP/user/here" && "$MAIN" --quick --threads 1) >"$OUT" 2>"$ERR"
[ $? -eq 0 ] && pass "main.sh runs the binary" || fail "main.sh with the stand-in binary"
expect "from the user's folder (a relative --out lands there)" "$OUT" "^cwd=$TMP/user/here$"
expect "with the compare arguments" "$OUT" "^args=compare --quick --threads 1 --out results$"

# the real binary: a bad compare option or loss is refused by simile compare, exit 2, nothing written
case $1 in /*) export SIMILE=$1 ;; *) export SIMILE=$PWD/$1 ;; esac
(cd "$TMP/user" && "$MAIN" --bogus-option --out r1) >"$OUT" 2>"$ERR"
[ $? -eq 2 ] && pass "an unknown compare option: exit 2" || fail "an unknown compare option: exit not 2"
expect "simile compare names it" "$ERR" "bogus-option"
(cd "$TMP/user" && "$MAIN" --quick --losses softmax,foo --out r2) >"$OUT" 2>"$ERR"
[ $? -eq 2 ] && pass "a bad loss: exit 2" || fail "a bad loss: exit not 2"
expect "the bad loss named" "$ERR" "unknown loss 'foo'"
[ ! -e "$TMP/user/r1" ] && [ ! -e "$TMP/user/r2" ] && pass "nothing written" || fail "a refused run left an output folder"

checks_end test_main_sh.sh
