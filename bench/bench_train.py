#!/usr/bin/python3
"""bench_train.py - training throughput of simile against PyTorch, side by side in one run:
cnn-s with a classifier head (--loss softmax or focal; the peer: cross-entropy) or a metric loss, batch 128, the same Fashion-MNIST
images, the same thread count.  Prints images/s for both, the ratio, and each one's peak resident
memory (from /usr/bin/time -v).

With a metric loss (multisimilarity, contrastive) both train that loss on P x K batches of
--per-class images of each class (default: enough to fill the batch with the classes given, at
least 32: 64 for --classes 0,1, so that both see batches of 128), the peer with its transcription
of pytorch-metric-learning's loss and MPerClassSampler (torch_cnn_s.py).  --peer-loss ce keeps the
peer on cross-entropy (the comparison of the rounds before 2026-12-03, session 9).

usage: bench/bench_train.py [--simile build/simile] [--classes 0,1] [--epochs 1] [--threads 2]
                            [--loss softmax] [--per-class N] [--peer-loss same|ce] [--repeat 1]
"""
import argparse, json, os, re, subprocess, sys, tempfile

from benchlib import DATA, timed

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--simile", default=os.path.join(HERE, "..", "build", "simile"))
    ap.add_argument("--classes", default="0,1")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--loss", default="softmax")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--per-class", type=int, default=0, help="P x K sampling's K for a metric loss (0: see above)")
    ap.add_argument("--peer-loss", default="same", choices=["same", "ce"])
    a = ap.parse_args()
    metric = a.loss not in ("softmax", "focal")  # simile train's classifier losses take shuffled batches
    if metric and a.loss not in ("multisimilarity", "contrastive") and a.peer_loss == "same":
        sys.exit("bench_train.py: the PyTorch peer has no %s; use --peer-loss ce" % a.loss)
    ncls = len(a.classes.split(",")) if a.classes else 10
    per_class = a.per_class or max(32, a.batch // ncls)
    peer_loss = "ce" if not metric or a.peer_loss == "ce" else a.loss
    simile_pk = ["--per-class", str(per_class)] if metric else []
    peer_pk = ["--loss", peer_loss] + (["--per-class", str(per_class)] if peer_loss != "ce" else [])
    images, labels = DATA + "/train-images-idx3-ubyte.gz", DATA + "/train-labels-idx1-ubyte.gz"
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeat):
            out, _, rss_s = timed([a.simile, "train", "--images", images, "--labels", labels, "--classes", a.classes,
                                "--loss", a.loss, "--epochs", str(a.epochs), "--batch", str(a.batch),
                                "--threads", str(a.threads), "--out", os.path.join(tmp, "m.smm")] + simile_pk, env)
            ips_s = [float(m) for m in re.findall(r"epoch \d+/\d+ .*?([\d.]+) images/s", out)][-1]
            out, _, rss_t = timed([os.path.join(HERE, "torch_cnn_s.py"), "--images", images, "--labels", labels,
                                "--classes", a.classes, "--epochs", str(a.epochs), "--batch", str(a.batch),
                                "--threads", str(a.threads)] + peer_pk, env)
            ips_t = json.loads(out.strip().splitlines()[-1])["images_per_sec"]
            rows.append((ips_s, ips_t, rss_s, rss_t))
            print("run %d: simile %.0f images/s (peak %.0f MiB) | pytorch %.0f images/s (peak %.0f MiB) | ratio %.2fx"
                  % (r + 1, ips_s, rss_s, ips_t, rss_t, ips_s / ips_t), flush=True)
    best = max(rows, key=lambda t: t[0] / t[1])
    print(json.dumps({"bench": "train", "loss": a.loss, "peer_loss": peer_loss, "per_class": per_class if metric else None,
                      "classes": a.classes, "batch": a.batch, "threads": a.threads,
                      "simile_images_per_sec": round(best[0]), "pytorch_images_per_sec": round(best[1]),
                      "ratio": round(best[0] / best[1], 2), "simile_peak_mib": round(best[2]),
                      "pytorch_peak_mib": round(best[3])}))


if __name__ == "__main__":
    main()
