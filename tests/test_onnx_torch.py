#!/usr/bin/python3
"""test_onnx_torch.py - ONNX import against PyTorch (docs/interop.md).  PyTorch models with fixed
seeds and random weights (and random batch-norm statistics, so that folding and the statistics
matter) are exported with torch.onnx.export, in eval mode (the exporter folds batch norm into the
convolutions, which then have biases) and with training=TrainingMode.PRESERVE (batch norm kept);
`simile import` reads each and `simile embed` embeds 16 images, which must equal PyTorch's output
within 1e-4 relative per row (max abs difference over max abs value).  Models: cnn-s from
bench/torch_cnn_s.py (F.normalize: the ReduceL2 / Clip / Expand / Div pattern), a cnn-c-like net
whose first Linear reads a flattened 3x3x32 map (the NCHW -> NHWC column permutation) and ends
in an LpNormalization, and torchvision's ResNet-18 (residual blocks: tested once the model parser
takes them, else SKIP naming what is missing).  Then the refusals: an unsupported operator
(Sigmoid, made with onnx.helper) and a truncated file exit 3, name what they must, and write
nothing.

usage: test_onnx_torch.py SIMILE BUILD_DIR"""
import os, subprocess, sys, tempfile
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import onnx
from onnx import helper, TensorProto

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import simtest
from simtest import check
from torch_cnn_s import CnnS

SIMILE, BUILD = sys.argv[1], sys.argv[2]
SPEC_TOOL = os.path.join(BUILD, "tests", "spec_tool")
torch.set_num_threads(2)


def run(*args):
    return subprocess.run([SIMILE] + [str(a) for a in args], capture_output=True, text=True, timeout=240)


def randomise_bn(model, gen):
    """Random affine parameters and running statistics in every batch norm."""
    for mod in model.modules():
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = mod.num_features
            with torch.no_grad():
                mod.weight.copy_(0.5 + torch.rand(n, generator=gen))
                mod.bias.copy_(0.2 * torch.randn(n, generator=gen))
                mod.running_mean.copy_(0.2 * torch.randn(n, generator=gen))
                mod.running_var.copy_(0.5 + torch.rand(n, generator=gen))


def write_images(folder, n, h, w, c, rng):
    """n PGM (c 1) or PPM (c 3) images; returns their paths and the (n, c, h, w) float32 / 255."""
    os.makedirs(folder, exist_ok=True)
    px = rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8)
    paths = []
    for i in range(n):
        p = os.path.join(folder, "%02d.%s" % (i, "pgm" if c == 1 else "ppm"))
        with open(p, "wb") as f:
            f.write(b"P5\n" if c == 1 else b"P6\n")
            f.write(b"%d %d\n255\n" % (w, h))
            f.write(px[i].tobytes())
        paths.append(p)
    return paths, (px.astype(np.float32) / np.float32(255.0)).transpose(0, 3, 1, 2).copy()


def rel_err(a, b):
    """Per row: max |a - b| over max |b|; the worst row."""
    return float(np.max(np.max(np.abs(a - b), axis=1) / np.maximum(np.max(np.abs(b), axis=1), 1e-30)))


class Embed(nn.Module):
    """cnn-s's embedding (CnnS.embed) as a module of its own, for the exporter."""
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m.embed(x)


class CnnFlat(nn.Module):
    """cnn-c's shape at a small scale: the first Linear reads a flattened 32x3x3 map."""
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                               nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                               nn.Flatten(), nn.Linear(32 * 3 * 3, 48, bias=False), nn.BatchNorm1d(48), nn.ReLU(),
                               nn.Dropout(0.3), nn.Linear(48, 24))

    def forward(self, x):
        return F.normalize(self.f(x), dim=1)


def compare(tmp, tag, module, shape, images, x, export_kw, extra_import=(), expect_ok=True):
    """Export module, import it, embed the images, compare; returns the import's result."""
    onnx_path = os.path.join(tmp, tag + ".onnx")
    smm = os.path.join(tmp, tag + ".smm")
    # eval mode on the module exported (the exporter restores the top module's mode afterwards,
    # which sets every child's: a fresh wrapper would put the batch norms back in training)
    module.eval()
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
        torch.onnx.export(module, torch.from_numpy(x[:2]), onnx_path, input_names=["input"], output_names=["emb"],
                          dynamic_axes={"input": {0: "n"}, "emb": {0: "n"}}, opset_version=13, **export_kw)
    module.eval()
    r = run("import", onnx_path, "--out", smm, *extra_import)
    if not expect_ok:
        return r, onnx_path
    check(r.returncode == 0 and os.path.exists(smm), "%s: simile import exits 0 and writes the model" % tag,
          r.stdout + r.stderr)
    if r.returncode != 0:
        return r, onnx_path
    npy = os.path.join(tmp, tag + ".npy")
    e = run("embed", "--model", smm, "--no-normalize", "--raw", "--threads", "2", "--out", npy, *images)
    check(e.returncode == 0, "%s: simile embed exits 0" % tag, e.stdout + e.stderr)
    if e.returncode != 0:
        return r, onnx_path
    got = np.load(npy)
    check(got.shape == ref.shape, "%s: embeddings of shape %s (PyTorch %s)" % (tag, got.shape, ref.shape))
    if got.shape == ref.shape:
        err = rel_err(got, ref)
        check(err <= 1e-4, "%s: simile's embeddings of %d images equal PyTorch's within 1e-4 relative (worst row %.2e)"
              % (tag, len(x), err))
        check(float(np.max(np.abs(ref))) > 1e-3, "%s: the reference is not all zero" % tag)
    return r, onnx_path


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
    tmp = tempfile.mkdtemp(prefix="simile_onnx_")
    rng = np.random.default_rng(17)
    gray, xg = write_images(os.path.join(tmp, "gray"), 16, 28, 28, 1, rng)

    # cnn-s, eval (folded: convs with biases) and PRESERVE (batch norm kept)
    torch.manual_seed(3)
    gen = torch.Generator().manual_seed(4)
    cnn = CnnS(5)
    randomise_bn(cnn, gen)
    cnn.eval()
    emb = Embed(cnn)
    compare(tmp, "cnn_s_eval", emb, (28, 28, 1), gray, xg, {"training": torch.onnx.TrainingMode.EVAL})
    r, _ = compare(tmp, "cnn_s_keep", emb, (28, 28, 1), gray, xg, {"training": torch.onnx.TrainingMode.PRESERVE})
    info = run("info", os.path.join(tmp, "cnn_s_keep.smm"))
    check(info.stdout.count("\nbn ") == 3 and "l2norm" in info.stdout,
          "cnn_s_keep: the imported spec keeps its three batch norms and ends in l2norm", info.stdout)
    info = run("info", os.path.join(tmp, "cnn_s_eval.smm"))
    check("\nbn " not in info.stdout and info.stdout.count("bias=1") == 4,
          "cnn_s_eval: the folded export imports as convs with biases and no bn", info.stdout)

    # flatten of a spatial map into a Linear, Dropout, BatchNorm1d, LpNormalization
    torch.manual_seed(5)
    flat = CnnFlat()
    randomise_bn(flat, gen)
    flat.eval()
    for mode, tag in ((torch.onnx.TrainingMode.EVAL, "flat_eval"), (torch.onnx.TrainingMode.PRESERVE, "flat_keep")):
        r, path = compare(tmp, tag, flat, (28, 28, 1), gray, xg, {"training": mode})
    # the same graph with its L2 normalisation as one LpNormalization node
    m = onnx.load(os.path.join(tmp, "flat_keep.onnx"))
    g = m.graph
    first = [i for i, n in enumerate(g.node) if n.op_type == "ReduceL2"][0]
    src = g.node[first].input[0]
    keep = [n for n in list(g.node)[:first]]
    del g.node[:]
    g.node.extend(keep + [helper.make_node("LpNormalization", [src], ["emb"], name="lpnorm", axis=1, p=2)])
    lp = os.path.join(tmp, "flat_lp.onnx")
    onnx.save(m, lp)
    r = run("import", lp, "--out", os.path.join(tmp, "flat_lp.smm"))
    check(r.returncode == 0, "flat_lp: an LpNormalization graph imports", r.stdout + r.stderr)
    if r.returncode == 0:
        e = run("embed", "--model", os.path.join(tmp, "flat_lp.smm"), "--no-normalize", "--raw", "--threads", "2",
                "--out", os.path.join(tmp, "flat_lp.npy"), *gray)
        flat.eval()
        with torch.no_grad():
            ref = flat(torch.from_numpy(xg)).numpy()
        got = np.load(os.path.join(tmp, "flat_lp.npy")) if e.returncode == 0 else None
        check(got is not None and rel_err(got, ref) <= 1e-4, "flat_lp: embeddings equal PyTorch's within 1e-4 relative",
              e.stderr)
    # --embedding-layer: stop at the first Linear's output (its node name), before the batch norm
    gemm = [n for n in onnx.load(os.path.join(tmp, "flat_keep.onnx")).graph.node if n.op_type in ("Gemm", "MatMul")][0]
    r = run("import", os.path.join(tmp, "flat_keep.onnx"), "--out", os.path.join(tmp, "flat_cut.smm"),
            "--embedding-layer", gemm.name)
    info = run("info", os.path.join(tmp, "flat_cut.smm"))
    check(r.returncode == 0 and "embedding 48" in info.stdout and "l2norm" not in info.stdout,
          "--embedding-layer %s: the model ends at that node (48 features)" % gemm.name, r.stderr + info.stdout)

    # ResNet-18 (torchvision, random weights): needs the residual layers of the model parser
    import torchvision
    torch.manual_seed(6)
    rn = torchvision.models.resnet18(weights=None)
    randomise_bn(rn, gen)
    rn.eval()
    color, xc = write_images(os.path.join(tmp, "color"), 16, 64, 64, 3, rng)
    # the spec text the graph maps to, in this build already (import --print-spec)
    for mode, tag in ((torch.onnx.TrainingMode.EVAL, "eval"), (torch.onnx.TrainingMode.PRESERVE, "keep")):
        path = os.path.join(tmp, "resnet18_spec_%s.onnx" % tag)
        rn.eval()
        with torch.no_grad():
            torch.onnx.export(rn, torch.from_numpy(xc[:1]), path, opset_version=13, training=mode,
                              input_names=["input"], dynamic_axes={"input": {0: "n"}})
        rn.eval()
        p = run("import", path, "--print-spec")
        lines = p.stdout.splitlines()
        convs = [l for l in lines if l.startswith("conv ")]
        want_bn = 20 if tag == "keep" else 0
        stem = ["conv 64 k=7 s=2 p=3 bias=0", "bn eps=1e-05"] if tag == "keep" else ["conv 64 k=7 s=2 p=3 bias=1"]
        stem += ["relu", "maxpool k=3 s=2 p=1", "res"]
        check(lines[:len(stem)] == stem and lines.count("res") == 8 and lines.count("end") == 8
              and lines.count("shortcut") == 3 and len(convs) == 20 and lines.count("bn eps=1e-05") == want_bn
              and sum(l.startswith("conv 128 k=1 s=2 p=0") for l in lines) == 1 and lines[-2:] == ["gap", "fc 1000 bias=1"],
              "ResNet-18 (%s): --print-spec gives the stem, 8 residual blocks (3 with a 1x1 stride-2 shortcut), "
              "20 convolutions, %d batch norms, gap and fc 1000" % (tag, want_bn), p.stdout + p.stderr)
    probe = subprocess.run([SPEC_TOOL, "res; relu; end; gap", "4", "4", "2"], capture_output=True, text=True)
    if probe.returncode == 0:
        for mode, tag in ((torch.onnx.TrainingMode.EVAL, "resnet18_eval"), (torch.onnx.TrainingMode.PRESERVE, "resnet18_keep")):
            compare(tmp, tag, rn, (64, 64, 3), color, xc, {"training": mode})
    else:
        print("SKIP: ResNet-18 import: the model parser does not take residual blocks yet "
              "(spec 'res; relu; end' refused: %s); what this build maps of it is checked below" % probe.stdout.strip())
        r, _ = compare(tmp, "resnet18_eval", rn, (64, 64, 3), color, xc, {"training": torch.onnx.TrainingMode.EVAL},
                       expect_ok=False)
        check(r.returncode == 3 and "residual blocks" in r.stderr and "max-pool padding" in r.stderr
              and "conv 64 k=7 s=2 p=3 bias=1;relu;maxpool k=3 s=2 p=1;res;" in r.stderr,
              "ResNet-18 today: refused (exit 3) naming the missing layers (residual blocks, max-pool padding) and the "
              "spec it maps to (7x7 stem, padded max-pool, then a residual block)", r.stderr)
        check(not os.path.exists(os.path.join(tmp, "resnet18_eval.smm")), "ResNet-18 today: no model file written")

    # refusals: an unsupported operator, a truncated file
    x_in = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])
    y_out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    W = helper.make_tensor("W", TensorProto.FLOAT, [4, 16], list(np.linspace(-1, 1, 64).astype(np.float32)))
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat", axis=1),
             helper.make_node("Sigmoid", ["f"], ["s"], name="squash"),
             helper.make_node("Gemm", ["s", "W"], ["y"], name="proj", transB=1)]
    bad = helper.make_model(helper.make_graph(nodes, "bad", [x_in], [y_out], [W]),
                            opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(bad)
    bad_path = os.path.join(tmp, "sigmoid.onnx")
    onnx.save(bad, bad_path)
    out = os.path.join(tmp, "sigmoid.smm")
    r = run("import", bad_path, "--out", out)
    check(r.returncode == 3 and "Sigmoid" in r.stderr and "'squash'" in r.stderr and "position 1" in r.stderr,
          "unsupported operator: exit 3 naming the operator, the node and its position", "rc %d: %s" % (r.returncode, r.stderr))
    check(not os.path.exists(out), "unsupported operator: no model file written")
    data = open(os.path.join(tmp, "cnn_s_keep.onnx"), "rb").read()
    for cut in (len(data) // 2, len(data) - 3, 7):
        tr = os.path.join(tmp, "truncated.onnx")
        open(tr, "wb").write(data[:cut])
        out = os.path.join(tmp, "truncated.smm")
        r = run("import", tr, "--out", out)
        check(r.returncode == 3 and not os.path.exists(out),
              "file truncated to %d of %d bytes: exit 3, nothing written" % (cut, len(data)), "rc %d: %s" % (r.returncode, r.stderr))
    r = run("import", os.path.join(tmp, "cnn_s_keep.onnx"), "--out", os.path.join(tmp, "x.smm"), "--input", "32x32x1")
    check(r.returncode == 3 and "28x28x1" in r.stderr, "--input that contradicts the file: exit 3 naming the file's shape",
          r.stderr)
    print("%d failure(s)" % simtest.fails)
    return 1 if simtest.fails else 0


if __name__ == "__main__":
    sys.exit(main())
