#!/usr/bin/python3
"""bench_eval.py - retrieval evaluation (precision@1, R-precision, MAP@R, every sample a query
against all others) of simile against pytorch-metric-learning's AccuracyCalculator path, one after
the other in one run on identical data, with the same thread count.  Prints seconds for both, the
ratio, the three metrics of each (they must agree), and each one's peak resident memory (from
/usr/bin/time -v).

Data (docs/benchmarks.md, "Evaluation at scale"): C class centres from a standard normal (D dims), labels
uniform over the C classes, each point = its centre + 1.5 x standard normal noise, L2-normalised;
numpy default_rng(seed 0), float32.  Written as .npy; both sides read the same files.

simile: bench_tool eval (sm_retrieval_metrics, L2; it computes Recall@K and a k-means NMI too, and
that time is included).  The peer: pytorch-metric-learning is not installed here (not packaged in
Debian, no PyPI), so --peer runs a line-for-line transcription of AccuracyCalculator.get_accuracy
(query = reference, k = "max_bin_count", FaissKNN with IndexFlatL2, then its precision_at_k,
r_precision and mean_average_precision_at_r in torch with float64 averages).  The peer runs under a
timeout (--peer-timeout, default 300 s) and is reported as "did not finish" past it.

usage: bench/bench_eval.py [--n 5000] [--d 64] [--classes 5] [--threads 2] [--repeat 1]
                           [--tool build-bench/bench/bench_tool] [--peer-timeout 300]
       bench/bench_eval.py --peer EMB.npy LABELS.npy THREADS        (the peer alone)
"""
import argparse, json, os, re, subprocess, sys, tempfile, time

from benchlib import peak_mib

HERE = os.path.dirname(os.path.abspath(__file__))


def make_data(n, d, c, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((c, d))
    labels = rng.integers(0, c, size=n)
    x = centres[labels] + 1.5 * rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels.astype(np.int32)


# ---- the peer: pytorch-metric-learning 2.x AccuracyCalculator, query = reference ---------------
def peer(emb_path, labels_path, threads):
    import numpy as np
    import torch
    import faiss
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    query = torch.from_numpy(np.load(emb_path))
    query_labels = torch.from_numpy(np.load(labels_path)).long()
    t0 = time.perf_counter()  # get_accuracy(query, query_labels) starts here
    reference, reference_labels, ref_includes_query = query, query_labels, True
    label_comparison_fn = torch.eq

    # get_label_match_counts + determine_k(k="max_bin_count")
    unique_labels, counts = torch.unique(reference_labels, dim=0, return_counts=True)
    label_counts = (unique_labels, counts)
    num_k = int(torch.max(counts).item()) - int(ref_includes_query)

    # FaissKNN(index_init_fn=faiss.IndexFlatL2): k + 1 for the query itself, then drop column 0
    k = num_k + 1
    index = faiss.IndexFlatL2(query.shape[1])
    index.add(reference.float().cpu().numpy())
    D, I = index.search(query.float().cpu().numpy(), k)
    knn_distances, knn_indices = torch.from_numpy(D)[:, 1:], torch.from_numpy(I)[:, 1:]
    knn_labels = reference_labels[knn_indices]

    # get_lone_query_labels / not_lone_query_mask (ref_includes_query: classes of one sample)
    lone_query_labels = unique_labels[counts <= 1]
    not_lone_query_mask = ~torch.isin(query_labels, lone_query_labels)
    knn_labels = knn_labels[not_lone_query_mask]
    gt_labels = query_labels[not_lone_query_mask][:, None]

    def relevance_mask_of(shape):
        mask = torch.zeros(size=shape, dtype=torch.bool)
        for label, count in zip(*label_counts):
            matching_rows = torch.where(torch.all(gt_labels == label, dim=1))[0]
            max_column = count - 1  # embeddings_come_from_same_source
            mask[matching_rows, :max_column] = True
        return mask

    # precision_at_k(knn_labels, query_labels[:, None], 1)
    same_label = label_comparison_fn(gt_labels, knn_labels[:, :1])
    p1 = torch.mean(torch.sum(same_label, dim=1).type(torch.float64) / 1).item()

    # r_precision
    relevance_mask = relevance_mask_of(knn_labels.shape)
    is_same_label = label_comparison_fn(gt_labels, knn_labels)
    matches_per_row = torch.sum(is_same_label * relevance_mask, dim=1)
    max_possible = torch.sum(relevance_mask, dim=1)
    rprec = torch.mean(matches_per_row.type(torch.float64) / max_possible).item()

    # mean_average_precision_at_r (mean_average_precision with at_r=True)
    relevance_mask = relevance_mask_of(knn_labels.shape)
    num_samples, num_k = knn_labels.shape[:2]
    is_same_label = label_comparison_fn(gt_labels, knn_labels)
    equality = is_same_label * relevance_mask
    cumulative_correct = torch.cumsum(equality, dim=1)
    k_idx = torch.arange(1, num_k + 1).repeat(num_samples, 1)
    precision_at_ks = (cumulative_correct * equality).type(torch.float64) / k_idx
    summed_precision_per_row = torch.sum(precision_at_ks * relevance_mask, dim=1)
    max_possible = torch.sum(relevance_mask, dim=1)
    mapr = torch.mean(summed_precision_per_row / max_possible).item()
    dt = time.perf_counter() - t0
    print(json.dumps({"mode": "peer", "n": len(query), "k": num_k, "seconds": round(dt, 4),
                      "precision_at_1": p1, "r_precision": rprec, "map_at_r": mapr}))


def timed(cmd, env=None, timeout=None):
    """Run cmd under /usr/bin/time -v; return (stdout, peak RSS in MiB), or (None, why) if it failed
    or ran past the timeout."""
    try:
        p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "did not finish in %d s" % timeout
    rss = peak_mib(p.stderr)
    if p.returncode != 0:
        why = "failed (exit %d%s)" % (p.returncode, ", peak %.0f MiB" % rss if rss is not None else "")
        sys.stderr.write(p.stderr[-1500:])
        return None, why
    return p.stdout, rss


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--peer":
        peer(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", default=os.path.join(HERE, "..", "build-bench", "bench", "bench_tool"))
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--peer-timeout", type=int, default=300)
    ap.add_argument("--no-peer", action="store_true", help="time simile only")
    a = ap.parse_args()
    import numpy as np
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    with tempfile.TemporaryDirectory() as tmp:
        x, y = make_data(a.n, a.d, a.classes)
        ep, lp = os.path.join(tmp, "emb.npy"), os.path.join(tmp, "labels.npy")
        np.save(ep, x)
        np.save(lp, y)
        del x, y
        rows = []
        for r in range(a.repeat):
            out, rss_s = timed([a.tool, "eval", ep, lp, str(a.threads)], env)
            if out is None:
                sys.exit("simile " + rss_s)
            rs = json.loads(out.strip().splitlines()[-1])
            rt, rss_t = None, None
            if not a.no_peer:
                out, rss_t = timed([sys.executable, os.path.abspath(__file__), "--peer", ep, lp, str(a.threads)],
                                   env, a.peer_timeout)
                rt = json.loads(out.strip().splitlines()[-1]) if out else None
            if rt:
                for key in ("precision_at_1", "r_precision", "map_at_r"):
                    if abs(rs[key] - rt[key]) > 1e-3:
                        print("WARNING: %s differs: simile %.6f, peer %.6f" % (key, rs[key], rt[key]))
                print("run %d: simile %.3f s (peak %.0f MiB) | peer %.3f s (peak %.0f MiB) | ratio %.1fx faster"
                      % (r + 1, rs["seconds"], rss_s, rt["seconds"], rss_t, rt["seconds"] / rs["seconds"]))
                print("  simile P@1 %.4f R-prec %.4f MAP@R %.4f | peer P@1 %.4f R-prec %.4f MAP@R %.4f"
                      % (rs["precision_at_1"], rs["r_precision"], rs["map_at_r"], rt["precision_at_1"],
                         rt["r_precision"], rt["map_at_r"]), flush=True)
            else:
                print("run %d: simile %.3f s (peak %.0f MiB) | peer %s" % (r + 1, rs["seconds"], rss_s,
                                                                          "not run" if a.no_peer else rss_t))
                print("  simile P@1 %.4f R-prec %.4f MAP@R %.4f" % (rs["precision_at_1"], rs["r_precision"],
                                                                    rs["map_at_r"]), flush=True)
            rows.append((rs, rss_s, rt, rss_t))
    rs, rss_s, rt, rss_t = min(rows, key=lambda t: t[0]["seconds"])
    print(json.dumps({"bench": "eval", "n": a.n, "d": a.d, "classes": a.classes, "threads": a.threads,
                      "simile_seconds": rs["seconds"], "simile_peak_mib": round(rss_s),
                      "peer_seconds": rt["seconds"] if rt else None,
                      "peer_peak_mib": round(rss_t) if rt else None,
                      "peer_status": "ok" if rt else ("not run" if a.no_peer else rss_t),
                      "ratio": round(rt["seconds"] / rs["seconds"], 2) if rt else None}))


if __name__ == "__main__":
    main()
