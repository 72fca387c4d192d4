#!/usr/bin/python3
"""bench_ort.py - embedding throughput of simile against ONNX Runtime, one after the other in one
run: cnn-s (untrained, inference mode) built in PyTorch by torch_cnn_s.py's CnnS and exported with
torch.onnx.export (opset 13, a dynamic batch) for ONNX Runtime (onnxruntime-node, from
scripts/setup.sh's build/onnxrt), simile's own untrained cnn-s timed by bench_tool as
bench_embed.py does; the 10,000 Fashion-MNIST test images normalised the same way, the same batch
and thread count, one warm-up batch each.  Both run the same network shape; the weights differ
(each side's own random initialisation), which does not change the work.
usage: bench/bench_ort.py [--tool build/bench/bench_tool] [--batch 256] [--threads 2] [--repeat 1]
                          [--ort-dir build/onnxrt]
"""
import argparse, gzip, json, os, subprocess, sys, tempfile
import numpy as np
from benchlib import DATA, timed

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", default=os.path.join(HERE, "..", "build", "bench", "bench_tool"))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--ort-dir", default=os.path.join(HERE, "..", "build", "onnxrt"))
    a = ap.parse_args()
    mods = os.path.join(os.path.abspath(a.ort_dir), "node_modules")
    if not os.path.isdir(os.path.join(mods, "onnxruntime-node")):
        sys.exit("onnxruntime-node is not in %s (scripts/setup.sh installs it)" % mods)
    sys.path.insert(0, HERE)
    import torch
    from torch_cnn_s import CnnS
    torch.manual_seed(1)
    net = CnnS(10).eval()

    class Embed(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m.embed(x)

    images, labels = DATA + "/t10k-images-idx3-ubyte.gz", DATA + "/t10k-labels-idx1-ubyte.gz"
    raw = gzip.open(images).read()
    x = (np.frombuffer(raw, dtype=np.uint8, offset=16).astype(np.float32) / 255.0 - 0.2860) / 0.3530
    n = x.size // 784
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, f32 = os.path.join(tmp, "cnn_s.onnx"), os.path.join(tmp, "x.f32")
        torch.onnx.export(Embed(net), torch.zeros(2, 1, 28, 28), onnx_path, opset_version=13,
                          input_names=["x"], output_names=["emb"], dynamic_axes={"x": {0: "n"}, "emb": {0: "n"}})
        x.tofile(f32)
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), NODE_PATH=mods)
        rows = []
        for r in range(a.repeat):
            out, _, rss_s = timed([a.tool, "embed", images, labels, str(a.threads), str(a.batch)], env)
            ips_s = json.loads(out.strip().splitlines()[-1])["images_per_sec"]
            out, _, rss_o = timed(["node", os.path.join(HERE, "ort_embed.js"), onnx_path, f32, str(n), str(a.batch),
                                   str(a.threads)], env)
            ips_o = json.loads(out.strip().splitlines()[-1])["images_per_sec"]
            rows.append((ips_s, ips_o, rss_s, rss_o))
            print("run %d: simile %.0f images/s (peak %.0f MiB) | onnxruntime %.0f images/s (peak %.0f MiB) | ratio %.2fx"
                  % (r + 1, ips_s, rss_s, ips_o, rss_o, ips_s / ips_o), flush=True)
    med = sorted(rows, key=lambda t: t[0] / t[1])[len(rows) // 2]
    print(json.dumps({"bench": "embed_ort", "images": n, "batch": a.batch, "threads": a.threads,
                      "simile_images_per_sec": round(med[0]), "onnxruntime_images_per_sec": round(med[1]),
                      "ratio": round(med[0] / med[1], 2), "simile_peak_mib": round(med[2]),
                      "onnxruntime_peak_mib": round(med[3])}))


if __name__ == "__main__":
    main()
