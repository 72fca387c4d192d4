#!/usr/bin/python3
"""bench_search.py - exact top-k inner-product search of simile against FAISS IndexFlatIP, one after
the other in one run on identical data with the same thread count: N random unit vectors of
dimension D (float32, numpy default_rng seed 0) as the database, Q random unit queries (seed 1).
Batched: all Q queries in one call.  Single: the first --single queries one call each.  simile
is timed by bench_tool (sm_knn_search, SM_METRIC_IP), FAISS in this process (faiss 1.7.3,
faiss.omp_set_num_threads); both warm up on one query first.  Prints queries/s for both and the
ratios, the peak resident memory of simile's process (/usr/bin/time -v) and of this one (the
FAISS side; it also holds the data), and checks that both return the same neighbours: a
differing index counts as a mismatch only if its score is not within 1e-5 of FAISS's score at that
rank (a near tie).

usage: bench/bench_search.py [--n 200000] [--d 128] [--nq 4096] [--k 10] [--single 500]
                             [--threads 2] [--repeat 1] [--tool build-bench/bench/bench_tool]
"""
import argparse, json, os, re, resource, subprocess, sys, tempfile, time

import numpy as np

from benchlib import timed

HERE = os.path.dirname(os.path.abspath(__file__))


def unit(rng, n, d):
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", default=os.path.join(HERE, "..", "build-bench", "bench", "bench_tool"))
    ap.add_argument("--n", type=int, default=200000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--nq", type=int, default=4096)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--single", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    import faiss
    faiss.omp_set_num_threads(a.threads)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    db, q = unit(np.random.default_rng(0), a.n, a.d), unit(np.random.default_rng(1), a.nq, a.d)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dbp, qp, ip = (os.path.join(tmp, f) for f in ("db.npy", "q.npy", "idx.npy"))
        np.save(dbp, db)
        np.save(qp, q)
        for r in range(a.repeat):
            out, _, rss_s = timed([a.tool, "search", dbp, qp, str(a.k), str(a.threads), str(a.single), ip], env)
            rs = json.loads(out.strip().splitlines()[-1])
            idx_s = np.load(ip)

            index = faiss.IndexFlatIP(a.d)
            index.add(db)
            index.search(q[:1], a.k)  # warm-up
            t0 = time.perf_counter()
            D, I = index.search(q, a.k)
            fb = time.perf_counter() - t0
            ns = min(a.single, a.nq)
            t0 = time.perf_counter()
            for i in range(ns):
                index.search(q[i:i + 1], a.k)
            fs = time.perf_counter() - t0
            rss_f = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

            # agreement: same index, or a near tie (simile's item scores within 1e-5 of FAISS's)
            diff = idx_s != I
            qi, ri = np.nonzero(diff)
            s_scores = np.einsum("ij,ij->i", q[qi], db[idx_s[qi, ri]]) if len(qi) else np.zeros(0)
            real = int(np.sum(np.abs(s_scores - D[qi, ri]) > 1e-5))
            fq_b, fq_s = a.nq / fb, ns / fs
            rows.append((rs["batch_qps"], fq_b, rs["single_qps"], fq_s, rss_s, rss_f, int(diff.sum()), real,
                         rs["single_vs_batch_mismatch"]))
            print("run %d: batch simile %.0f q/s | faiss %.0f q/s | ratio %.2fx ;  single simile %.1f q/s | "
                  "faiss %.1f q/s | ratio %.2fx ;  peak simile %.0f MiB, faiss process %.0f MiB ;  "
                  "index differences %d (%d not near ties)" % (r + 1, rs["batch_qps"], fq_b, rs["batch_qps"] / fq_b,
                                                               rs["single_qps"], fq_s, rs["single_qps"] / fq_s,
                                                               rss_s, rss_f, diff.sum(), real), flush=True)
    b = max(rows, key=lambda t: t[0] / t[1])
    s = max(rows, key=lambda t: t[2] / t[3])
    print(json.dumps({"bench": "search", "n": a.n, "d": a.d, "nq": a.nq, "k": a.k, "single": min(a.single, a.nq),
                      "threads": a.threads, "simile_batch_qps": round(b[0]), "faiss_batch_qps": round(b[1]),
                      "batch_ratio": round(b[0] / b[1], 2), "simile_single_qps": round(s[2], 1),
                      "faiss_single_qps": round(s[3], 1), "single_ratio": round(s[2] / s[3], 2),
                      "simile_peak_mib": round(b[4]), "faiss_process_peak_mib": round(b[5]),
                      "index_differences": b[6], "not_near_ties": b[7], "single_vs_batch_mismatch": b[8]}))


if __name__ == "__main__":
    main()
