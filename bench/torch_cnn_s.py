#!/usr/bin/python3
"""torch_cnn_s.py - the PyTorch peer for simile's training and embedding benchmarks: the same
cnn-s (3x3 conv no bias - BN - ReLU blocks of 32, 64, 128, max-pool after the first two, global
average pool, fc 128 -> 64, L2-normalised) with a 64 -> C linear head and cross-entropy, Adam 1e-3,
on Fashion-MNIST read from the same IDX files.  Prints one JSON line.

usage: torch_cnn_s.py --images F --labels F [--classes 0,1] [--batch 128] [--threads 2]
                      [--epochs 1] [--mode train|embed] [--eval-images F --eval-labels F]
"""
import argparse, gzip, json, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    op = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    with op(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class CnnS(nn.Module):
    def __init__(self, classes):
        super().__init__()
        def block(i, o):
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]
        self.features = nn.Sequential(*block(1, 32), nn.MaxPool2d(2), *block(32, 64), nn.MaxPool2d(2),
                                      *block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 64))
        self.head = nn.Linear(64, classes)

    def embed(self, x):
        return F.normalize(self.features(x), dim=1)

    def forward(self, x):
        return self.head(self.embed(x))


def load(images, labels, classes):
    x = read_idx(images).astype(np.float32) / 255.0
    y = read_idx(labels).astype(np.int64)
    if classes is not None:
        keep = np.isin(y, classes)
        x, y = x[keep], y[keep]
    x = (x - 0.2860) / 0.3530
    return torch.from_numpy(x[:, None, :, :].copy()), torch.from_numpy(y.copy())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", required=True)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--eval-images")
    ap.add_argument("--eval-labels")
    ap.add_argument("--classes", default=None)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--mode", default="train", choices=["train", "embed"])
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    classes = [int(c) for c in a.classes.split(",")] if a.classes else None
    x, y = load(a.images, a.labels, classes)
    model = CnnS(int(y.max()) + 1)
    out = {"peer": "pytorch " + torch.__version__, "threads": a.threads, "batch": a.batch, "images": len(x)}
    if a.mode == "embed":
        model.eval()
        with torch.no_grad():
            model.embed(x[:a.batch])  # warm-up
            t0 = time.perf_counter()
            for i in range(0, len(x), a.batch):
                model.embed(x[i:i + a.batch])
            dt = time.perf_counter() - t0
        out.update(mode="embed", seconds=dt, images_per_sec=len(x) / dt)
        print(json.dumps(out))
        return
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    epochs = []
    for ep in range(a.epochs):
        model.train()
        perm = torch.randperm(len(x))
        t0 = time.perf_counter()
        total = 0.0
        for i in range(0, len(x), a.batch):
            idx = perm[i:i + a.batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        dt = time.perf_counter() - t0
        rec = {"epoch": ep + 1, "loss": total / len(x), "seconds": dt, "images_per_sec": len(x) / dt}
        if a.eval_images:
            xe, ye = load(a.eval_images, a.eval_labels, classes)
            model.eval()
            with torch.no_grad():
                pred = torch.cat([model(xe[i:i + 1000]).argmax(1) for i in range(0, len(xe), 1000)])
            rec["test_accuracy"] = float((pred == ye).float().mean())
        epochs.append(rec)
    out.update(mode="train", epochs=epochs, images_per_sec=epochs[-1]["images_per_sec"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
