#!/usr/bin/python3
"""bench_embed.py - embedding (inference) throughput of simile against PyTorch, one after the other
in one run: cnn-s (untrained, inference mode), the 10,000 Fashion-MNIST test images normalised the
same way, the same batch and thread count.  simile is timed by bench_tool (sm_model_embed over the
images in batches), PyTorch by torch_cnn_s.py --mode embed; both warm up on one batch first.
Prints images/s for both, the ratio, and each one's peak resident memory (from /usr/bin/time -v).
SIMILE_PROFILE=1 in the environment makes bench_tool print per-layer forward times on stderr.

usage: bench/bench_embed.py [--tool build-bench/bench/bench_tool] [--batch 256] [--threads 2]
                            [--repeat 1] [--model FILE]
"""
import argparse, json, os, re, subprocess, sys

from benchlib import DATA, timed

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", default=os.path.join(HERE, "..", "build-bench", "bench", "bench_tool"))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--model", default=None, help="a simile model file (default: untrained cnn-s)")
    a = ap.parse_args()
    images, labels = DATA + "/t10k-images-idx3-ubyte.gz", DATA + "/t10k-labels-idx1-ubyte.gz"
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    rows = []
    for r in range(a.repeat):
        cmd = [a.tool, "embed", images, labels, str(a.threads), str(a.batch)] + ([a.model] if a.model else [])
        out, err, rss_s = timed(cmd, env)
        if "profile:" in err:
            sys.stderr.write("".join(l + "\n" for l in err.splitlines() if l.startswith("profile:")))
        ips_s = json.loads(out.strip().splitlines()[-1])["images_per_sec"]
        out, _, rss_t = timed([os.path.join(HERE, "torch_cnn_s.py"), "--images", images, "--labels", labels,
                               "--mode", "embed", "--batch", str(a.batch), "--threads", str(a.threads)], env)
        ips_t = json.loads(out.strip().splitlines()[-1])["images_per_sec"]
        rows.append((ips_s, ips_t, rss_s, rss_t))
        print("run %d: simile %.0f images/s (peak %.0f MiB) | pytorch %.0f images/s (peak %.0f MiB) | ratio %.2fx"
              % (r + 1, ips_s, rss_s, ips_t, rss_t, ips_s / ips_t), flush=True)
    best = max(rows, key=lambda t: t[0] / t[1])
    print(json.dumps({"bench": "embed", "images": 10000, "batch": a.batch, "threads": a.threads,
                      "simile_images_per_sec": round(best[0]), "pytorch_images_per_sec": round(best[1]),
                      "ratio": round(best[0] / best[1], 2), "simile_peak_mib": round(best[2]),
                      "pytorch_peak_mib": round(best[3])}))


if __name__ == "__main__":
    main()
