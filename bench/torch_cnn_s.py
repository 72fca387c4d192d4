#!/usr/bin/python3
"""torch_cnn_s.py - the PyTorch peer for simile's training and embedding benchmarks: the same
cnn-s (3x3 conv no bias - BN - ReLU blocks of 32, 64, 128, max-pool after the first two, global
average pool, fc 128 -> 64, L2-normalised) with a 64 -> C linear head and cross-entropy, Adam 1e-3,
on Fashion-MNIST read from the same IDX files.  Prints one JSON line.

With --loss multisimilarity or contrastive it is the fmnist-open peer: transcriptions of
pytorch-metric-learning 2.x's MultiSimilarityLoss + MultiSimilarityMiner (cosine similarity,
alpha 2, beta 50, base 0.5, epsilon 0.1, mean over anchors) and ContrastiveLoss (L2 distance,
pos margin 0, neg margin 1, each part averaged over its non-zero pairs), trained on batches from a
transcription of MPerClassSampler (m = --per-class, batch_size = --batch, length_before_new_iter
= --epoch-len), evaluated each epoch by MAP@R / R-precision / P@1 on --eval-classes (PML isn't
packaged in Debian, so it is transcribed here from its source).

usage: torch_cnn_s.py --images F --labels F [--classes 0,1] [--batch 128] [--threads 2]
                      [--epochs 1] [--mode train|embed] [--eval-images F --eval-labels F]
                      [--loss ce|multisimilarity|contrastive] [--per-class 32]
                      [--epoch-len N] [--eval-classes 5,6,7,8,9]
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


def ms_miner(E, y, eps=0.1):
    """MultiSimilarityMiner (cosine similarity): hard positives and negatives per anchor."""
    with torch.no_grad():
        S = E @ E.t()
        n = len(y)
        same = y[:, None] == y[None, :]
        eye = torch.eye(n, dtype=torch.bool)
        pos = same & ~eye
        neg = ~same
        inf = float("inf")
        min_pos = torch.where(pos, S, torch.full_like(S, inf)).min(1).values
        max_neg = torch.where(neg, S, torch.full_like(S, -inf)).max(1).values
        hard_pos = pos & (S - eps < max_neg[:, None])
        hard_neg = neg & (S + eps > min_pos[:, None])
    return hard_pos, hard_neg


def ms_loss(E, y, alpha=2.0, beta=50.0, base=0.5):
    """MultiSimilarityLoss on the miner's pairs, PML's logsumexp with add_one, MeanReducer."""
    pos, neg = ms_miner(E, y)
    S = E @ E.t()
    def lse(x, mask):
        x = x.masked_fill(~mask, torch.finfo(x.dtype).min)
        x = torch.cat([x, torch.zeros(len(x), 1)], 1)
        out = torch.logsumexp(x, 1)
        return out.masked_fill(~mask.any(1), 0)
    pl = lse(alpha * (base - S), pos) / alpha
    nl = lse(beta * (S - base), neg) / beta
    return (pl + nl).mean()


def contrastive_loss(E, y, pos_margin=0.0, neg_margin=1.0):
    """ContrastiveLoss with LpDistance (L2 of normalised embeddings), AvgNonZeroReducer per part."""
    n = len(y)
    same = y[:, None] == y[None, :]
    eye = torch.eye(n, dtype=torch.bool)
    D = torch.sqrt(torch.clamp(2 - 2 * E @ E.t(), min=1e-12))  # ||a - b|| of unit vectors
    pl = F.relu(D[same & ~eye] - pos_margin)
    nl = F.relu(neg_margin - D[~same])
    def avg_nz(v):
        nz = (v > 0).sum()
        return v.sum() / nz if nz > 0 else v.sum() * 0
    return avg_nz(pl) + avg_nz(nl)


def mper_class(y, m, batch, length, rng):
    """MPerClassSampler.__iter__ (batch_size given): each batch is batch/m random classes, m
    random images of each (without replacement when the class has m)."""
    labels = np.unique(y)
    by = {int(l): np.nonzero(y == l)[0] for l in labels}
    length -= length % batch
    out = []
    for _ in range(length // batch):
        rng.shuffle(labels)
        for l in labels[:batch // m]:
            t = by[int(l)]
            out.append(rng.choice(t, size=m, replace=len(t) < m))
    return np.concatenate(out)


def map_at_r(E, y):
    """P@1, R-precision, MAP@R with R = other same-class items, query excluded (PML's definitions)."""
    E = E.numpy().astype(np.float64); y = y.numpy()
    S = E @ E.T
    np.fill_diagonal(S, -np.inf)
    order = np.argsort(-S, axis=1, kind="stable")
    res = {"p1": 0.0, "rprec": 0.0, "mapr": 0.0}
    for i in range(len(y)):
        R = int((y == y[i]).sum()) - 1
        rel = (y[order[i, :R]] == y[i])
        res["p1"] += rel[0]
        res["rprec"] += rel.sum() / R
        prec = np.cumsum(rel) / np.arange(1, R + 1)
        res["mapr"] += (prec * rel).sum() / R
    return {k: float(v / len(y)) for k, v in res.items()}


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
    ap.add_argument("--loss", default="ce", choices=["ce", "multisimilarity", "contrastive"])
    ap.add_argument("--per-class", type=int, default=32)
    ap.add_argument("--epoch-len", type=int, default=0, help="samples an epoch (0: the data size)")
    ap.add_argument("--eval-classes", default=None)
    ap.add_argument("--schedule", default="constant", choices=["constant", "cosine"],
                    help="cosine: CosineAnnealingLR from 1e-3 to 0 over all steps, stepped per batch")
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
    epochs = []
    rng = np.random.default_rng(a.seed)
    metric = a.loss != "ce"
    params = model.features.parameters() if metric else model.parameters()
    opt = torch.optim.Adam(params, lr=1e-3)
    sched = None
    if a.schedule == "cosine":
        if metric:  # mper_class drops the last partial batch
            per_epoch = (a.epoch_len or len(x)) // a.batch
        else:
            per_epoch = (len(x) + a.batch - 1) // a.batch
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs * per_epoch)
    for ep in range(a.epochs):
        model.train()
        if metric:
            perm = torch.from_numpy(mper_class(y.numpy(), a.per_class, a.batch, a.epoch_len or len(x), rng))
        else:
            perm = torch.randperm(len(x))
        t0 = time.perf_counter()
        total = 0.0
        for i in range(0, len(perm), a.batch):
            idx = perm[i:i + a.batch]
            if a.loss == "ce":
                loss = F.cross_entropy(model(x[idx]), y[idx])
            elif a.loss == "multisimilarity":
                loss = ms_loss(model.embed(x[idx]), y[idx])
            else:
                loss = contrastive_loss(model.embed(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched:
                sched.step()
            total += loss.item() * len(idx)
        dt = time.perf_counter() - t0
        rec = {"epoch": ep + 1, "loss": total / len(perm), "seconds": dt, "images_per_sec": len(perm) / dt}
        if a.eval_images and metric:
            ec = [int(c) for c in a.eval_classes.split(",")] if a.eval_classes else classes
            xe, ye = load(a.eval_images, a.eval_labels, ec)
            model.eval()
            with torch.no_grad():
                Ee = torch.cat([model.embed(xe[i:i + 1000]) for i in range(0, len(xe), 1000)])
            rec.update(map_at_r(Ee, ye))
        elif a.eval_images:
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
