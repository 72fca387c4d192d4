# checks.sh - the helpers the shell tests share (sourced, not run): one line per check, "ok" or
# "FAIL", counted in CHECKS and FAILS; `checks_end NAME` prints the count and sets the exit code.
# The sourcing script sets OUT and ERR (capture files) before it calls run.
CHECKS=0
FAILS=0
pass() { CHECKS=$((CHECKS + 1)); echo "ok   $1"; }
fail() { CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)); echo "FAIL $1"; }
# run NAME WANT_RC CMD...: run the command, capture stdout/stderr, compare the exit code.
run() {
    local name=$1 want=$2
    shift 2
    "$@" >"$OUT" 2>"$ERR"
    local rc=$?
    if [ "$rc" -eq "$want" ]; then pass "$name (exit $rc)"; return 0; fi
    fail "$name: exit $rc, want $want"
    sed 's/^/     | /' "$ERR" | head -5
    return 1
}
# expect NAME FILE REGEX: the file matches the extended regex; expect_not: it does not.
expect() {
    if grep -Eq -- "$3" "$2"; then pass "$1"; else fail "$1: no match for /$3/"; sed 's/^/     | /' "$2" | head -5; fi
}
expect_not() {
    if grep -Eq -- "$3" "$2"; then fail "$1: unexpected /$3/"; sed 's/^/     | /' "$2" | head -5; else pass "$1"; fi
}
# checks_end NAME: "NAME: N checks, N failed"; returns non-zero if any check failed.
checks_end() {
    echo "$1: $CHECKS checks, $FAILS failed"
    [ "$FAILS" -eq 0 ]
}
