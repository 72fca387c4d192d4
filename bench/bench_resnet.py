#!/usr/bin/python3
"""bench_resnet.py - ResNet-18 at 224 px in simile against torchvision's ResNet-18 in PyTorch, side
by side in one run, on synthetic images, the same thread count:
  - training: images/s of steps of batch --batch (forward, backward of a fixed random gradient of
    the 128-d output, plain SGD over the parameters), one untimed warm-up step first;
  - embedding: images/s of the inference forward of --embed images (simile: sm_model_embed, the
    bn-folded plan; PyTorch: eval mode under torch.no_grad()).
Both networks are the `resnet18` built-in's layout: torchvision's resnet18 with its fc replaced by
Linear(512, 128) (simile: `gap; fc 128; l2norm`; PyTorch: F.normalize of the fc output).  Prints
each side's figures, the ratios and peak resident memory (/usr/bin/time -v).

usage: bench/bench_resnet.py [--tool build/bench/bench_tool] [--threads 2] [--batch 32]
                             [--steps 3] [--embed 64] [--size 224]
"""
import argparse, json, os, subprocess, sys

from benchlib import timed

HERE = os.path.dirname(os.path.abspath(__file__))

TORCH_PEER = r'''
import json, sys, time
import torch, torch.nn.functional as F, torchvision
size, threads, batch, steps, nembed = map(int, sys.argv[1:6])
torch.set_num_threads(threads)
torch.manual_seed(1)
net = torchvision.models.resnet18()
net.fc = torch.nn.Linear(512, 128)
x = torch.rand(max(batch, nembed), 3, size, size) - 0.5
R = torch.rand(batch, 128) - 0.5
opt = torch.optim.SGD(net.parameters(), lr=1e-4)
net.train()
for s in range(steps + 1):
    if s == 1:
        t0 = time.perf_counter()
    opt.zero_grad()
    out = F.normalize(net(x[:batch]), dim=1)
    (out * R).sum().backward()
    opt.step()
dt_train = time.perf_counter() - t0
net.eval()
with torch.no_grad():
    net(x[:min(batch, nembed)])
    t0 = time.perf_counter()
    for i in range(0, nembed, 64):
        F.normalize(net(x[i:i + 64]), dim=1)
    dt_embed = time.perf_counter() - t0
print(json.dumps({"train_images_per_sec": round(steps * batch / dt_train, 2),
                  "embed_images_per_sec": round(nembed / dt_embed, 2),
                  "params": sum(p.numel() for p in net.parameters())}))
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", default=os.path.join(HERE, "..", "build", "bench", "bench_tool"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    a = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    args = [str(a.size), str(a.threads), str(a.batch), str(a.steps), str(a.embed)]
    out, _, rss_s = timed([a.tool, "resnet", "resnet18"] + args, env)
    s = json.loads(out.strip().splitlines()[-1])
    out, _, rss_t = timed([sys.executable, "-c", TORCH_PEER] + args, env)
    t = json.loads(out.strip().splitlines()[-1])
    print("resnet18 %d px, batch %d, %d threads, %d timed steps, %d images embedded" %
          (a.size, a.batch, a.threads, a.steps, a.embed))
    print("  training : simile %.2f images/s (peak %.0f MiB) | pytorch %.2f images/s (peak %.0f MiB) | ratio %.2fx" %
          (s["train_images_per_sec"], rss_s, t["train_images_per_sec"], rss_t,
           s["train_images_per_sec"] / t["train_images_per_sec"]))
    print("  embedding: simile %.2f images/s | pytorch %.2f images/s | ratio %.2fx" %
          (s["embed_images_per_sec"], t["embed_images_per_sec"], s["embed_images_per_sec"] / t["embed_images_per_sec"]))
    print("  parameters: simile %d | pytorch %d" % (s["params"], t["params"]))
    print(json.dumps({"simile": s, "pytorch": t, "simile_peak_mib": round(rss_s), "pytorch_peak_mib": round(rss_t),
                      "threads": a.threads}))


if __name__ == "__main__":
    main()
