#!/usr/bin/env bash
# test_install.sh - the installed library as a user gets it: `cmake --install` of this build
# into a temporary prefix; libsimile.so's SONAME and its exported symbols (exactly the
# functions include/simile.h declares, nothing else); README's C example is examples/example.c
# as it stands; the example built from the prefix with `cc example.c $(pkg-config --cflags
# --libs simile)`, statically with `pkg-config --static`, and by a tiny CMake project with
# find_package(simile) (simile::simile and simile::simile_static); each build run on a missing
# data folder (exit 1, the missing file named, no model written) and on tiny 8x8 IDX data
# (exit 0, a model that `simile info` reads).
# Usage: test_install.sh /path/to/build/simile
set -u
S=$(realpath "${1:?usage: test_install.sh BUILD/simile}")
B=$(dirname "$S")
SRC=$(realpath "$(dirname "$0")/..")
T=$(mktemp -d /tmp/simile_install_XXXXXX)
trap 'rm -rf "$T"' EXIT
OUT=$T/out.txt ERR=$T/err.txt
. "$SRC/tests/checks.sh"
P=$T/prefix

run "cmake --install into a temporary prefix" 0 cmake --install "$B" --prefix "$P"
LIB=$(ls "$P"/lib*/libsimile.so.0 "$P"/lib/*/libsimile.so.0 2>/dev/null | head -1)
LIBDIR=$(dirname "${LIB:-$P/lib/x}")
for f in bin/simile include/simile.h; do
  if [ -e "$P/$f" ]; then pass "installed $f"; else fail "missing $f"; fi
done
for f in libsimile.a libsimile.so libsimile.so.0 pkgconfig/simile.pc cmake/simile/simileConfig.cmake \
         cmake/simile/simileConfigVersion.cmake; do
  if [ -e "$LIBDIR/$f" ]; then pass "installed lib/$f"; else fail "missing lib/$f"; fi
done
objdump -p "$LIBDIR/libsimile.so" > "$OUT"
expect "SONAME libsimile.so.0" "$OUT" "SONAME +libsimile\.so\.0$"
ver=$(sed -n 's/^project(simile VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
if [ -e "$LIBDIR/libsimile.so.$ver" ]; then pass "libsimile.so.$ver (project version)"; else fail "no libsimile.so.$ver"; fi

# exported: the functions declared in simile.h, and nothing else (the version node aside)
nm -D --defined-only "$LIBDIR/libsimile.so" | awk '$2 != "A" {print $3}' | sed 's/@.*//' | sort -u > "$T/exported"
grep -oE '\bsm_[a-z0-9_]+ *\(' "$SRC/include/simile.h" | sed 's/[ (]//g' | sort -u > "$T/declared"
if [ -s "$T/exported" ] && ! grep -qv '^sm_' "$T/exported"; then pass "only sm_ symbols exported ($(wc -l < "$T/exported"))"
else fail "non-sm_ symbols exported: $(grep -v '^sm_' "$T/exported" | head -5 | tr '\n' ' ')"; fi
if cmp -s "$T/exported" "$T/declared"; then pass "exported = declared in simile.h"
else fail "exported != declared: $(diff "$T/declared" "$T/exported" | head -6 | tr '\n' ' ')"; fi

# README's example block is examples/example.c
awk '/^## Using the library/{u=1} u && /^```c$/{c=1; next} c && /^```$/{exit} c' "$SRC/README.md" > "$T/readme.c"
if cmp -s "$T/readme.c" "$SRC/examples/example.c"; then pass "README's C example is examples/example.c"
else fail "README's C example differs from examples/example.c"; fi

# the compiler flags of this build: a sanitizer build's libsimile.so needs the sanitizer runtime
SAN=""
if objdump -p "$LIBDIR/libsimile.so" | grep -q 'NEEDED.*libasan'; then SAN="-fsanitize=address,undefined"; fi
export PKG_CONFIG_PATH="$LIBDIR/pkgconfig"
run "pkg-config --modversion simile" 0 pkg-config --modversion simile
expect "pkg-config version $ver" "$OUT" "^$ver$"
mkdir -p "$T/ex" && cp "$SRC/examples/example.c" "$T/ex/" && cd "$T/ex"
run "cc example.c \$(pkg-config --cflags --libs simile)" 0 sh -c "cc $SAN example.c \$(pkg-config --cflags --libs simile) -o ex_pc"
run "static: cc example.c libsimile.a \$(pkg-config --static --libs) (Libs.private)" 0 \
  sh -c "cc $SAN example.c \$(pkg-config --cflags simile) $LIBDIR/libsimile.a \$(pkg-config --static --libs simile | sed 's/-lsimile//') -o ex_static"
cat > CMakeLists.txt <<'CM'
cmake_minimum_required(VERSION 3.18)
project(example C)
find_package(simile 0.1 REQUIRED)
add_executable(ex_cmake example.c)
target_link_libraries(ex_cmake PRIVATE simile::simile)
add_executable(ex_cmake_static example.c)
target_link_libraries(ex_cmake_static PRIVATE simile::simile_static)
CM
run "find_package(simile): configure" 0 cmake -S . -B cm -DCMAKE_PREFIX_PATH="$P" -DCMAKE_C_FLAGS="$SAN"
run "find_package(simile): build" 0 cmake --build cm
LD_LIBRARY_PATH="$LIBDIR" ldd ex_pc > "$OUT" 2>&1
expect "ex_pc uses the installed libsimile.so.0" "$OUT" "libsimile\.so\.0 => $LIBDIR/"

# tiny data: 4 classes of 8x8 images (class k lights quadrant k), 64 each
mkdir -p data && /usr/bin/python3 - data <<'PY'
import random, struct, sys
random.seed(3)
ims, labs = [], []
for _ in range(64):
    for k in range(4):
        px = [random.randint(0, 40) for _ in range(64)]
        for r in range((k // 2) * 4, (k // 2) * 4 + 4):
            for c in range((k % 2) * 4, (k % 2) * 4 + 4):
                px[r * 8 + c] = random.randint(180, 255)
        ims += px; labs.append(k)
open(sys.argv[1] + "/train-images-idx3-ubyte.gz", "wb").write(struct.pack(">IIII", 0x803, len(labs), 8, 8) + bytes(ims))
open(sys.argv[1] + "/train-labels-idx1-ubyte.gz", "wb").write(struct.pack(">II", 0x801, len(labs)) + bytes(labs))
PY
for ex in ex_pc ex_static cm/ex_cmake cm/ex_cmake_static; do
  rm -f ms.smm
  run "$ex on a missing data folder fails" 1 env LD_LIBRARY_PATH="$LIBDIR" OMP_NUM_THREADS=1 ./$ex no-such-dir ms.smm
  expect "$ex names the missing file" "$ERR" "no-such-dir/train-images-idx3-ubyte.gz"
  if [ -e ms.smm ]; then fail "$ex wrote a model without data"; else pass "$ex wrote no model"; fi
  run "$ex trains on tiny data" 0 env LD_LIBRARY_PATH="$LIBDIR" OMP_NUM_THREADS=1 ./$ex data ms.smm
  expect "$ex reports the images" "$OUT" "trained on 256 images, saved ms.smm"
  run "$ex's model reads back (simile info)" 0 "$P/bin/simile" info ms.smm
done
checks_end test_install
