#!/usr/bin/python3
"""test_onnx_ort.py - ONNX export checked by ONNX Runtime (docs/interop.md).  Two simile-trained
models (a few seeded epochs on the quadrant images of simtest.py): cnn-s (global average pool)
and a spec with every exportable kind whose fc reads a 2x2x16 map (the HWC -> CHW column
permutation).  Each is exported with batch norm folded and with --keep-bn; onnx.checker (full
check, with shape inference) accepts every file, and ONNX Runtime for Node (npm onnxruntime-node,
installed with --ignore-scripts into BUILD_DIR/onnxrt by scripts/setup.sh, or here if missing)
gives embeddings equal to `simile embed`'s within 1e-5 for every image, with the batch dimension
left dynamic (two batch sizes); `simile import` of each export embeds as the original.  An export of a model file that is not one exits 3 and writes
nothing.  Fails (does not skip) when onnxruntime-node cannot be installed.

usage: test_onnx_ort.py SIMILE BUILD_DIR"""
import os, subprocess, sys, json, tempfile, random
import numpy as np
import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import simtest
from simtest import check, write_idx

SIMILE, BUILD = sys.argv[1], sys.argv[2]
HERE = os.path.dirname(os.path.abspath(__file__))
ORT_DIR = os.path.join(os.path.abspath(BUILD), "onnxrt")
ORT_VERSION = "1.30.0"  # scripts/setup.sh installs the same


def run(*args, cwd=None):
    return subprocess.run([SIMILE] + [str(a) for a in args], capture_output=True, text=True, timeout=240, cwd=cwd)


def ensure_ort():
    """onnxruntime-node in BUILD_DIR/onnxrt or the source tree's build/onnxrt (scripts/setup.sh's);
    installs it into BUILD_DIR/onnxrt (npm, 5 minutes at most) if neither has it."""
    global ORT_DIR
    for d in (ORT_DIR, os.path.join(HERE, "..", "build", "onnxrt")):
        if os.path.exists(os.path.join(d, "node_modules", "onnxruntime-node", "package.json")):
            ORT_DIR = os.path.abspath(d)
            return True, "present"
    os.makedirs(ORT_DIR, exist_ok=True)
    try:
        p = subprocess.run(["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", ORT_DIR,
                            "onnxruntime-node@" + ORT_VERSION], capture_output=True, text=True, timeout=300)
        ok = p.returncode == 0 and os.path.exists(os.path.join(ORT_DIR, "node_modules", "onnxruntime-node"))
        return ok, p.stdout[-2000:] + p.stderr[-2000:]
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)


def onnx_built(build):
    """Whether this simile has ONNX support; without it, SKIP only where the build chose so
    (-DSIMILE_ONNX=OFF in BUILD_DIR/CMakeCache.txt), else the test fails (protobuf-c missing)."""
    r = subprocess.run([SIMILE, "import", os.devnull, "--out", os.devnull], capture_output=True, text=True, timeout=60)
    if "built without ONNX support" not in r.stderr:
        return True
    try:
        off = "SIMILE_ONNX:BOOL=OFF" in open(os.path.join(build, "CMakeCache.txt")).read()
    except OSError:
        off = False
    if off:
        print("SKIP: simile was configured without ONNX support (-DSIMILE_ONNX=OFF)")
        sys.exit(0)
    check(False, "simile has ONNX support (install protobuf-c-compiler and libprotobuf-c-dev, scripts/setup.sh)", r.stderr)
    sys.exit(1)


def main():
    onnx_built(BUILD)
    ok, why = ensure_ort()
    check(ok, "onnxruntime-node %s is installed in %s (npm install --ignore-scripts)" % (ORT_VERSION, ORT_DIR), why)
    if not ok:
        print("FAIL: cannot test the export in ONNX Runtime without onnxruntime-node")
        return 1
    tmp = tempfile.mkdtemp(prefix="simile_ort_")
    random.seed(17)
    write_idx(os.path.join(tmp, "q"), 12, range(4))  # 48 images 8x8, 4 classes
    D = ["--images", "q-img", "--labels", "q-lab"]
    px = np.fromfile(os.path.join(tmp, "q-img"), dtype=np.uint8, offset=16).reshape(-1, 1, 8, 8)
    x = px.astype(np.float32) / np.float32(255.0)  # what simile embed --no-normalize sees, NCHW
    n = len(x)
    xin = os.path.join(tmp, "x.f32")
    x.tofile(xin)
    specs = {"cnn_s": "cnn-s",
             "flat": "conv 8 k=3 p=1 bias=0; bn; relu; maxpool k=2; conv 16 k=3 s=1 p=1; relu; avgpool k=2; "
                     "fc 16 bias=0; bn; relu; fc 8; l2norm"}
    env = dict(os.environ, NODE_PATH=os.path.join(ORT_DIR, "node_modules"))
    for tag, spec in specs.items():
        smm = os.path.join(tmp, tag + ".smm")
        t = run("train", *D, "--model", spec, "--loss", "multisimilarity", "--epochs", "2", "--batch", "16",
                "--per-class", "4", "--seed", "3", "--threads", "2", "--quiet", "--out", smm, cwd=tmp)
        check(t.returncode == 0, "%s: a short seeded training writes the model" % tag, t.stdout + t.stderr)
        if t.returncode:
            continue
        e = run("embed", "--model", smm, *D, "--no-normalize", "--threads", "2", "--out", tag + ".npy", cwd=tmp)
        check(e.returncode == 0, "%s: simile embed" % tag, e.stderr)
        ref = np.load(os.path.join(tmp, tag + ".npy"))
        for keep in (0, 1):
            name = "%s_%s" % (tag, "keep" if keep else "folded")
            path = os.path.join(tmp, name + ".onnx")
            r = run("export", smm, "--out", path, *(["--keep-bn"] if keep else []))
            check(r.returncode == 0 and os.path.exists(path), "%s: simile export exits 0" % name, r.stdout + r.stderr)
            if r.returncode:
                continue
            m = onnx.load(path)
            try:
                onnx.checker.check_model(m, full_check=True)
                err = ""
            except Exception as ex:  # onnx.checker.ValidationError, shape inference errors
                err = str(ex)
            check(err == "", "%s: onnx.checker (full check) accepts the file" % name, err)
            nbn = sum(nd.op_type == "BatchNormalization" for nd in m.graph.node)
            want = (3 if tag == "cnn_s" else 2) if keep else 0
            check(nbn == want, "%s: %d BatchNormalization nodes (want %d)" % (name, nbn, want))
            dim0 = m.graph.input[0].type.tensor_type.shape.dim[0]
            check(dim0.dim_param != "" and dim0.dim_value == 0, "%s: the batch dimension is dynamic" % name)
            for rows in (n, 5):
                xi = os.path.join(tmp, "x%d.f32" % rows)
                x[:rows].tofile(xi)
                yo = os.path.join(tmp, name + "_%d.f32" % rows)
                p = subprocess.run(["node", os.path.join(HERE, "onnx_ort_run.js"), path, xi, str(rows), "1", "8", "8", yo],
                                   capture_output=True, text=True, timeout=120, env=env)
                check(p.returncode == 0, "%s: ONNX Runtime runs a batch of %d" % (name, rows), p.stdout + p.stderr)
                if p.returncode:
                    continue
                got = np.fromfile(yo, dtype=np.float32)
                if got.size != rows * ref.shape[1]:
                    check(False, "%s: output of %d values (want %d x %d)" % (name, got.size, rows, ref.shape[1]))
                    continue
                diff = float(np.max(np.abs(got.reshape(rows, -1) - ref[:rows])))
                check(diff <= 1e-5, "%s: ONNX Runtime's embeddings of %d images equal simile's within 1e-5 (max %.2e)"
                      % (name, rows, diff))
            # and back: simile import of its own export embeds the same
            back = os.path.join(tmp, name + "_back.smm")
            r = run("import", path, "--out", back)
            e = run("embed", "--model", back, *D, "--no-normalize", "--threads", "2", "--out", name + "_back.npy", cwd=tmp)
            ok = r.returncode == 0 and e.returncode == 0
            diff = float(np.max(np.abs(np.load(os.path.join(tmp, name + "_back.npy")) - ref))) if ok else -1
            check(ok and diff <= 1e-5, "%s: simile import of the export embeds as the original within 1e-5 (max %.2e)"
                  % (name, diff), r.stderr + e.stderr)
    # a file that is not a model: exit 3, nothing written
    bad = os.path.join(tmp, "bad.smm")
    open(bad, "wb").write(b"SMILEMDL" + bytes(20))
    out = os.path.join(tmp, "bad.onnx")
    r = run("export", bad, "--out", out)
    check(r.returncode == 3 and not os.path.exists(out), "export of a corrupt model file: exit 3, nothing written",
          r.stderr)
    print("%d failure(s)" % simtest.fails)
    return 1 if simtest.fails else 0


if __name__ == "__main__":
    sys.exit(main())
