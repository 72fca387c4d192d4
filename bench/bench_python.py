#!/usr/bin/python3
"""bench_python.py - the Python package against the Python tools people use, side by side in one
run on identical data and threads:

  eval    simile.metrics.AccuracyCalculator().get_accuracy(emb, labels) against the
          pytorch-metric-learning AccuracyCalculator path of bench/bench_eval.py (its line-for-line
          transcription: PML itself is not installable here), each in its own process (so that
          each one's peak memory is its own, /usr/bin/time -v), on bench_eval.py's data (class
          centres + 1.5 x noise, L2-normalised, seed 0).  The seconds are those of the call.
  search  simile.Gallery(metric="ip").search(q, k) against FAISS's Python API
          (faiss.IndexFlatIP.search), in this process, alternating, after one warm-up query each,
          on bench_search.py's data (unit vectors, seeds 0 and 1); also add() against index.add().

The package is found on PYTHONPATH / SIMILE_LIBRARY as usual (docs/python.md); run from the
source tree with a Release build:
    SIMILE_LIBRARY=build/libsimile.so.0 PYTHONPATH=python bench/bench_python.py eval --n 100000 --d 128 --classes 100
    SIMILE_LIBRARY=build/libsimile.so.0 PYTHONPATH=python bench/bench_python.py search --n 200000 --d 128 --nq 4096

usage: bench_python.py eval [--n 100000] [--d 128] [--classes 100] [--threads 2] [--peer-timeout 600]
       bench_python.py search [--n 200000] [--d 128] [--nq 4096] [--k 10] [--threads 2] [--repeat 2]
       bench_python.py --simile-eval EMB.npy LABELS.npy THREADS      (the simile side alone)
"""
import argparse, json, os, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchlib import peak_mib  # noqa: E402


def simile_eval(ep, lp, threads):
    import numpy as np
    import simile
    simile.set_num_threads(threads)
    emb, labels = np.load(ep), np.load(lp)
    t0 = time.perf_counter()
    r = simile.metrics.AccuracyCalculator().get_accuracy(emb, labels)
    dt = time.perf_counter() - t0
    print(json.dumps({"mode": "simile", "seconds": round(dt, 4), "precision_at_1": r["precision_at_1"],
                      "r_precision": r["r_precision"], "map_at_r": r["mean_average_precision_at_r"]}))


def timed(cmd, env, timeout):
    try:
        p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "did not finish in %d s" % timeout
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-1500:])
        return None, "failed (exit %d)" % p.returncode
    return json.loads(p.stdout.strip().splitlines()[-1]), peak_mib(p.stderr)


def bench_eval(a):
    import numpy as np
    from bench_eval import make_data
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    with tempfile.TemporaryDirectory() as tmp:
        x, y = make_data(a.n, a.d, a.classes)
        ep, lp = os.path.join(tmp, "emb.npy"), os.path.join(tmp, "labels.npy")
        np.save(ep, x)
        np.save(lp, y)
        del x, y
        rs, ms = timed([sys.executable, os.path.abspath(__file__), "--simile-eval", ep, lp, str(a.threads)], env, a.peer_timeout)
        if rs is None:
            sys.exit("simile " + ms)
        rt, mt = timed([sys.executable, os.path.join(HERE, "bench_eval.py"), "--peer", ep, lp, str(a.threads)], env,
                       a.peer_timeout)
    print("simile.metrics  %.2f s, peak %.0f MiB: P@1 %.4f R-prec %.4f MAP@R %.4f"
          % (rs["seconds"], ms, rs["precision_at_1"], rs["r_precision"], rs["map_at_r"]))
    if rt:
        print("PML path        %.2f s, peak %.0f MiB: P@1 %.4f R-prec %.4f MAP@R %.4f"
              % (rt["seconds"], mt, rt["precision_at_1"], rt["r_precision"], rt["map_at_r"]))
        for key in ("precision_at_1", "r_precision", "map_at_r"):
            if abs(rs[key] - rt[key]) > 1e-3:
                print("WARNING: %s differs: simile %.6f, peer %.6f" % (key, rs[key], rt[key]))
        print("ratio %.2fx (peer seconds / simile seconds)" % (rt["seconds"] / rs["seconds"]))
    else:
        print("PML path        " + mt)
    print(json.dumps({"bench": "python-eval", "n": a.n, "d": a.d, "classes": a.classes, "threads": a.threads,
                      "simile_seconds": rs["seconds"], "simile_peak_mib": round(ms),
                      "peer_seconds": rt["seconds"] if rt else None, "peer_peak_mib": round(mt) if rt else None,
                      "peer_status": "ok" if rt else mt,
                      "ratio": round(rt["seconds"] / rs["seconds"], 2) if rt else None}))


def bench_search(a):
    import numpy as np
    import faiss
    import simile
    from bench_search import unit
    faiss.omp_set_num_threads(a.threads)
    simile.set_num_threads(a.threads)
    db, q = unit(np.random.default_rng(0), a.n, a.d), unit(np.random.default_rng(1), a.nq, a.d)
    rows = []
    for r in range(a.repeat):
        t0 = time.perf_counter()
        g = simile.Gallery(dim=a.d, metric="ip")
        g.add(db, "all")
        sa = time.perf_counter() - t0
        t0 = time.perf_counter()
        index = faiss.IndexFlatIP(a.d)
        index.add(db)
        fa = time.perf_counter() - t0
        g.search(q[:1], a.k)
        index.search(q[:1], a.k)  # warm-up
        t0 = time.perf_counter()
        Ds, Is = g.search(q, a.k)
        sb = time.perf_counter() - t0
        t0 = time.perf_counter()
        Df, If = index.search(q, a.k)
        fb = time.perf_counter() - t0
        diff = Is != If
        qi, ri = np.nonzero(diff)
        near = np.abs(-Ds[qi, ri] - Df[qi, ri]) <= 1e-5 if len(qi) else np.zeros(0, bool)
        rows.append((a.nq / sb, a.nq / fb, sa, fa, int(diff.sum()), int((~near).sum())))
        print("run %d: search simile.Gallery %.0f q/s | faiss %.0f q/s | ratio %.2fx ;  add simile %.2f s | faiss "
              "%.2f s ;  index differences %d (%d not near ties)" % (r + 1, rows[-1][0], rows[-1][1],
                                                                    rows[-1][0] / rows[-1][1], sa, fa, rows[-1][4],
                                                                    rows[-1][5]), flush=True)
        del g, index
    b = max(rows, key=lambda t: t[0] / t[1])
    print(json.dumps({"bench": "python-search", "n": a.n, "d": a.d, "nq": a.nq, "k": a.k, "threads": a.threads,
                      "simile_qps": round(b[0]), "faiss_qps": round(b[1]), "ratio": round(b[0] / b[1], 2),
                      "simile_add_s": round(b[2], 3), "faiss_add_s": round(b[3], 3), "not_near_ties": b[5]}))


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--simile-eval":
        simile_eval(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["eval", "search"])
    ap.add_argument("--n", type=int)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--nq", type=int, default=4096)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--peer-timeout", type=int, default=600)
    a = ap.parse_args()
    if a.what == "eval":
        a.n = a.n or 100000
        bench_eval(a)
    else:
        a.n = a.n or 200000
        bench_search(a)


if __name__ == "__main__":
    main()
