#!/usr/bin/env bash
# test_python.sh - the Python package as docs/python.md installs it: `cmake --install` of this
# build into a temporary prefix, a clean virtual environment (/usr/bin/python3 -m venv
# --system-site-packages: NumPy, PyTorch and pytest from Debian), `pip install
# --no-build-isolation --no-index python/`, then `python -c "import simile"` (from the venv, not
# the source tree) and the package's pytest suite (python/tests) against the installed library.
# In a sanitizer build the interpreter is started with the sanitizer runtimes preloaded (a
# libsimile.so built with -fsanitize=address needs them first) and leak detection off (the
# interpreter keeps its memory to the end by design).
# Usage: test_python.sh /path/to/build/simile
set -u
S=$(realpath "${1:?usage: test_python.sh BUILD/simile}")
B=$(dirname "$S")
SRC=$(realpath "$(dirname "$0")/..")
T=$(mktemp -d /tmp/simile_python_XXXXXX)
trap 'rm -rf "$T"' EXIT
OUT=$T/out.txt ERR=$T/err.txt
. "$SRC/tests/checks.sh"
export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

run "cmake --install into a temporary prefix" 0 cmake --install "$B" --prefix "$T/prefix"
LIBDIR=$(dirname "$(ls "$T"/prefix/lib*/libsimile.so.0 "$T"/prefix/lib/*/libsimile.so.0 2>/dev/null | head -1)")
if objdump -p "$LIBDIR/libsimile.so.0" | grep -q 'NEEDED.*libasan'; then
  export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
  echo "note: sanitizer build: python runs with $LD_PRELOAD preloaded, leak detection off"
fi
# --without-pip: Debian's pip (python3-pip) is seen through the system site-packages and
# installs into the venv it is run from; this saves the seconds of copying a pip into it
run "python3 -m venv --system-site-packages" 0 /usr/bin/python3 -m venv --system-site-packages --without-pip "$T/venv"
cp -r "$SRC/python" "$T/src"  # pip builds in the folder it is given: keep the source tree clean
run "pip install --no-build-isolation --no-index python/" 0 "$T/venv/bin/python" -m pip install --no-build-isolation --no-index "$T/src"
cd "$T"
export LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
run 'python -c "import simile"' 0 "$T/venv/bin/python" -c "import simile, sys; print(simile.__file__); print(simile.version())"
expect "imported from the venv" "$OUT" "^$T/venv/lib/python3[^/]*/site-packages/simile/__init__.py$"
expect "the library's version" "$OUT" "^0\.[0-9]+\.[0-9]+$"
run "import simile without the library fails clearly" 1 env LD_LIBRARY_PATH= PKG_CONFIG_PATH= SIMILE_LIBRARY= \
  "$T/venv/bin/python" -c "import simile"
expect "the message says how to install it" "$ERR" "cannot load libsimile.so.0: install the library"
# the package's tests (-rs: a skipped test says why)
SIMILE_CLI="$S" SIMILE_LOSS_TOOL="$B/tests/loss_tool" SIMILE_SOURCE_DIR="$SRC" OMP_NUM_THREADS=2 \
  "$T/venv/bin/python" -m pytest -q -rs --durations=5 -p no:cacheprovider "$SRC/python/tests" > "$OUT" 2>&1
rc=$?
cat "$OUT"
if [ $rc -eq 0 ]; then pass "pytest python/tests"; else fail "pytest python/tests (exit $rc)"; fi
if /usr/bin/python3 -c "import torch" 2>/dev/null; then  # with every peer installed nothing may skip
  expect_not "no test skipped (PyTorch is installed)" "$OUT" "skipped"
fi

# docs/python.md's examples, each ```python block in order in one folder (the second saves the
# model the third loads), with the installed package
mkdir -p "$T/docs" && cd "$T/docs"
awk '/^```python$/{n++; f=sprintf("block%d.py", n); c=1; next} c && /^```$/{c=0; next} c {print > f}' "$SRC/docs/python.md"
nblocks=$(ls block*.py 2>/dev/null | wc -l)
if [ "$nblocks" -eq 3 ]; then pass "docs/python.md has 3 examples"; else fail "docs/python.md has $nblocks examples, want 3"; fi
for i in $(seq 1 "$nblocks"); do
  run "docs/python.md example $i" 0 env OMP_NUM_THREADS=2 "$T/venv/bin/python" "block$i.py"
  cat "$OUT"
done
expect "example 3 reports identification" "$OUT" "^5-shot accuracy 0\.[0-9]+"
if [ -s unseen.smg ]; then run "the example's gallery is read by simile gallery list" 0 "$S" gallery list --gallery unseen.smg; fi
checks_end test_python
