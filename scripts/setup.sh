#!/usr/bin/env bash
# setup.sh - install simile's build and test dependencies from Debian's packages and build it
# (Release, in ./build).  Run as root on a fresh Debian 12 machine; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
# the library and the CLI; the data of the main job and the tests; peers and tools of the tests
# only (README.md lists the same)
LIB_PKGS="build-essential cmake pkg-config zlib1g-dev libstb-dev libmicrohttpd-dev libcjson-dev nettle-dev protobuf-c-compiler libprotobuf-c-dev libopenmpi-dev openmpi-bin"
DATA_PKGS="dataset-fashion-mnist"
# the Python package (python/, docs/python.md): installed with pip from Debian's setuptools, tested
# with pytest in a venv, simile.torch against PyTorch
PY_PKGS="python3-numpy python3-pip python3-setuptools python3-wheel python3-venv python3-pytest python3-torch"
# libopenblas-openmp-dev: the peer of bench/bench_kernels and the -DSIMILE_BLAS=openblas build only
TEST_PKGS="python3-pil python3-sklearn python3-faiss chromium curl wrk openssl libopenblas-openmp-dev python3-torchvision python3-onnx"
PKGS="$LIB_PKGS $DATA_PKGS $PY_PKGS $TEST_PKGS"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
# node and npm (the ONNX export test runs ONNX Runtime for Node): Debian's, unless some are there
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release ${SIMILE_CMAKE_ARGS:-}
cmake --build build -j"$(nproc)"
# ONNX Runtime for Node, for tests/test_onnx_ort.py: the npm package (its prebuilt CPU library
# ships inside it; --ignore-scripts skips the optional GPU download), into build/onnxrt, at most
# 10 minutes.  The test installs it itself if this did not, and fails if it cannot.
ORT_NODE_VERSION=1.30.0
if [ ! -f build/onnxrt/node_modules/onnxruntime-node/package.json ]; then
  mkdir -p build/onnxrt
  timeout 600 npm install --ignore-scripts --no-audit --no-fund --prefix build/onnxrt \
    "onnxruntime-node@$ORT_NODE_VERSION" || echo "setup.sh: npm could not install onnxruntime-node (tests/test_onnx_ort.py will fail)" >&2
fi
