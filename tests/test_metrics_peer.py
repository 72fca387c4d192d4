#!/usr/bin/python3
"""test_metrics_peer.py - compares simile's search and metrics with peer implementations on
random data: k-NN against FAISS IndexFlatL2 / IndexFlatIP, NMI / ROC / AUC against scikit-learn,
P@1 / R-precision / MAP@R / recall@k against a direct numpy implementation of
pytorch-metric-learning's AccuracyCalculator formulas, intra/inter distances against numpy.

usage: test_metrics_peer.py <simile-cli> <build-dir>   (uses <build-dir>/tests/metrics_tool)
"""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import faiss
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score, roc_auc_score, roc_curve
except ImportError as e:  # never skip silently: the peers are required
    print(f"test_metrics_peer: cannot import a peer library ({e}); install python3-numpy, "
          "python3-sklearn and python3-faiss for /usr/bin/python3", file=sys.stderr)
    sys.exit(1)

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what, file=sys.stderr)


def run_tool(tool, *args):
    res = subprocess.run([tool] + [str(a) for a in args], capture_output=True, text=True,
                         timeout=120)
    if res.returncode != 0:
        print(res.stdout, res.stderr, file=sys.stderr)
        raise SystemExit(f"metrics_tool {args[0]} failed with status {res.returncode}")
    out = {}
    for line in res.stdout.splitlines():
        k, v = line.split()
        out[k] = float(v)
    return out


def raw(tmp, name, arr):
    path = os.path.join(tmp, name)
    arr.tofile(path)
    return path


# ---- k-NN vs FAISS ---------------------------------------------------------------------------
def knn_exact_keys(db, q, metric):
    """float64 similarity (IP, cosine) or squared distance (L2) matrix (nq, n)."""
    db64, q64 = db.astype(np.float64), q.astype(np.float64)
    if metric == "l2":
        return ((q64[:, None, :] - db64[None, :, :]) ** 2).sum(-1)
    if metric == "cosine":
        db64 = db64 / np.linalg.norm(db64, axis=1, keepdims=True)
        q64 = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
    return q64 @ db64.T


def faiss_search(db, q, metric, k):
    d = db.shape[1]
    if metric == "l2":
        index = faiss.IndexFlatL2(d)
    else:
        index = faiss.IndexFlatIP(d)
    if metric == "cosine":
        db = db / np.linalg.norm(db, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    index.add(np.ascontiguousarray(db, dtype=np.float32))
    return index.search(np.ascontiguousarray(q, dtype=np.float32), k)


def test_knn(tool, tmp):
    rng = np.random.default_rng(1)
    n, nq, d = 3000, 150, 32
    db = rng.standard_normal((n, d)).astype(np.float32)
    q = rng.standard_normal((nq, d)).astype(np.float32)
    pdb, pq = raw(tmp, "db.f32", db), raw(tmp, "q.f32", q)
    pd_, pi = os.path.join(tmp, "dist.f32"), os.path.join(tmp, "idx.i64")
    for metric in ("l2", "ip", "cosine"):
        exact = knn_exact_keys(db, q, metric)
        for k in (1, 10, 300):
            for self_ex in (0, 1):
                queries, pquery = (db[:nq], pdb) if self_ex else (q, pq)
                run_tool(tool, "knn", pdb, n, pquery, nq, d, k, metric, self_ex, pd_, pi)
                D = np.fromfile(pd_, dtype=np.float32).reshape(nq, k)
                I = np.fromfile(pi, dtype=np.int64).reshape(nq, k)
                FD, FI = faiss_search(db, queries, metric, k + self_ex)
                if self_ex:  # drop the query itself from FAISS's answer
                    keepD, keepI = [], []
                    for i in range(nq):
                        m = FI[i] != i
                        keepD.append(FD[i][m][:k])
                        keepI.append(FI[i][m][:k])
                    FD, FI = np.array(keepD), np.array(keepI)
                ex = knn_exact_keys(db, queries, metric) if self_ex else exact
                tag = f"knn {metric} k={k} exclude_self={self_ex}"
                scale = np.abs(FD).max()
                check(np.allclose(D, FD, rtol=1e-4, atol=1e-4 * scale),
                      f"{tag}: distances differ from FAISS (max {np.abs(D - FD).max():.3g})")
                if self_ex:
                    check(not (I == np.arange(nq)[:, None]).any(), f"{tag}: self match returned")
                # indices equal except near-ties: our item's exact key must match FAISS's rank key
                mism = np.argwhere(I != FI)
                ok = True
                for i, r in mism:
                    if abs(ex[i, I[i, r]] - ex[i, FI[i, r]]) > 1e-4 * max(1.0, abs(ex[i, FI[i, r]])):
                        ok = False
                check(ok, f"{tag}: {len(mism)} index mismatches that are not ties")
                check(len(mism) <= 0.01 * I.size, f"{tag}: too many tie swaps ({len(mism)})")
                check(all(len(set(row)) == k for row in I.tolist()), f"{tag}: duplicate indices")
    print("knn vs faiss: ok" if not FAILURES else "knn vs faiss: FAILED")


# ---- retrieval metrics vs numpy AccuracyCalculator formulas ------------------------------------
def accuracy_calculator_reference(emb, labels, metric):
    """pytorch-metric-learning AccuracyCalculator with query = reference (self excluded)."""
    n = len(labels)
    keys = knn_exact_keys(emb, emb, metric)
    if metric != "l2":
        keys = -keys
    np.fill_diagonal(keys, np.inf)
    _, counts = np.unique(labels, return_counts=True)
    K = min(n - 1, max(counts.max() - 1, 8))
    order = np.argsort(keys, axis=1, kind="stable")[:, :K]  # ties: lower index first
    knn_labels = labels[order]
    label_count = {l: c for l, c in zip(*np.unique(labels, return_counts=True))}
    R = np.array([label_count[l] - 1 for l in labels])
    keep = R > 0  # not_lone_query_mask
    equality = (knn_labels == labels[:, None])[keep]
    R = R[keep]
    p1 = equality[:, 0].mean()
    rel_mask = np.arange(K)[None, :] < R[:, None]
    eq_r = equality * rel_mask
    r_prec = (eq_r.sum(1) / R).mean()
    cum = np.cumsum(eq_r, axis=1)
    prec_at_i = cum * eq_r / np.arange(1, K + 1)[None, :]
    map_r = ((prec_at_i * rel_mask).sum(1) / R).mean()
    rec = [equality[:, :k].any(1).mean() for k in (1, 2, 4, 8)]
    return dict(precision_at_1=p1, r_precision=r_prec, map_at_r=map_r, recall_at_1=rec[0],
                recall_at_2=rec[1], recall_at_4=rec[2], recall_at_8=rec[3],
                num_queries=int(keep.sum()), num_skipped=int((~keep).sum()))


def test_retrieval(tool, tmp):
    rng = np.random.default_rng(2)
    sizes = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 120]  # one lone sample, uneven classes
    labels = np.concatenate([np.full(s, 10 * c - 7, dtype=np.int32) for c, s in enumerate(sizes)])
    perm = rng.permutation(len(labels))
    labels = labels[perm]
    n, d = len(labels), 12
    centers = {l: rng.standard_normal(d) * 1.2 for l in np.unique(labels)}
    emb = np.stack([centers[l] + rng.standard_normal(d) for l in labels]).astype(np.float32)
    pe, pl = raw(tmp, "emb.f32", emb), raw(tmp, "lab.i32", labels)
    for metric in ("l2", "ip", "cosine"):
        got = run_tool(tool, "retrieval", pe, pl, n, d, metric)
        ref = accuracy_calculator_reference(emb, labels, metric)
        tol = 2.5 / ref["num_queries"]  # a float32 near-tie swap moves one query's score
        for key, val in ref.items():
            check(abs(got[key] - val) <= (0 if key.startswith("num") else tol),
                  f"retrieval {metric} {key}: simile {got[key]:.6f} vs reference {val:.6f}")
        check(0.0 <= got["nmi"] <= 1.0, f"retrieval {metric}: nmi {got['nmi']} out of range")
    # NMI of the k-means step against scikit-learn's KMeans on well separated classes
    sep = np.stack([centers[l] * 8 + rng.standard_normal(d) * 0.5 for l in labels]).astype(np.float32)
    pe2 = raw(tmp, "emb2.f32", sep)
    got = run_tool(tool, "retrieval", pe2, pl, n, d, "l2")
    km = KMeans(n_clusters=len(sizes), n_init=10, random_state=0).fit(sep.astype(np.float64))
    ref_nmi = normalized_mutual_info_score(labels, km.labels_)
    check(abs(got["nmi"] - ref_nmi) < 0.05,
          f"retrieval k-means NMI {got['nmi']:.4f} vs sklearn KMeans {ref_nmi:.4f}")
    check(got["num_classes"] == len(sizes), "retrieval num_classes")
    print("retrieval vs AccuracyCalculator formulas: done")


# ---- NMI vs scikit-learn ----------------------------------------------------------------------
def test_nmi(tool, tmp):
    rng = np.random.default_rng(3)
    n = 5000
    a = rng.integers(-3, 20, n).astype(np.int32)
    cases = {
        "random": rng.integers(0, 8, n).astype(np.int32),
        "correlated": np.where(rng.random(n) < 0.7, a * 3 + 1, rng.integers(0, 30, n)).astype(np.int32),
        "identical": a.copy(),
        "single": np.zeros(n, dtype=np.int32),
    }
    pa = raw(tmp, "a.i32", a)
    for name, b in cases.items():
        got = run_tool(tool, "nmi", pa, raw(tmp, "b.i32", b), n)["nmi"]
        ref = normalized_mutual_info_score(a, b)
        check(abs(got - ref) < 1e-10, f"nmi {name}: simile {got!r} vs sklearn {ref!r}")
    print("nmi vs sklearn: done")


# ---- ROC / AUC / EER / TAR@FAR vs scikit-learn ------------------------------------------------
def test_roc(tool, tmp):
    rng = np.random.default_rng(4)
    n = 20000
    genuine = (rng.random(n) < 0.3).astype(np.int8)
    scores = (rng.standard_normal(n) + 1.5 * genuine).astype(np.float32)
    scores[: n // 4] = np.round(scores[: n // 4], 1)  # plenty of ties
    ps, pg = raw(tmp, "s.f32", scores), raw(tmp, "g.i8", genuine)
    pf, pt, pth = (os.path.join(tmp, x) for x in ("far.f64", "tar.f64", "thr.f32"))
    got = run_tool(tool, "roc", ps, pg, n, pf, pt, pth)
    far, tar = np.fromfile(pf, np.float64), np.fromfile(pt, np.float64)
    thr = np.fromfile(pth, np.float32)
    fpr, tpr, sk_thr = roc_curve(genuine, scores, drop_intermediate=False)
    check(len(far) == len(fpr) == int(got["count"]), f"roc: {len(far)} points vs sklearn {len(fpr)}")
    if len(far) == len(fpr):
        check(np.allclose(far, fpr, atol=1e-12) and np.allclose(tar, tpr, atol=1e-12),
              "roc: FAR/TAR points differ from sklearn roc_curve")
        # sklearn's first threshold is a sentinel (max + 1 or inf); simile uses +inf
        check(np.isinf(thr[0]) and np.array_equal(thr[1:], sk_thr[1:].astype(np.float32)),
              "roc: thresholds differ from sklearn roc_curve")
    auc = roc_auc_score(genuine, scores)
    check(abs(got["auc"] - auc) < 1e-10, f"auc: simile {got['auc']!r} vs sklearn {auc!r}")
    # EER: where FAR = FRR, interpolated linearly between the ROC points around the crossing
    frr = 1 - tpr
    p = int(np.argmax(fpr >= frr))
    d0, d1 = fpr[p - 1] - frr[p - 1], fpr[p] - frr[p]
    eer = fpr[p - 1] + (-d0 / (d1 - d0)) * (fpr[p] - fpr[p - 1])
    check(abs(got["eer"] - eer) < 1e-10, f"eer: simile {got['eer']} vs reference {eer}")
    check(0.0 < got["eer"] < 0.5, "eer out of range")
    for tgt, key in ((1e-2, "tar_at_far_1e-2"), (1e-3, "tar_at_far_1e-3"), (1e-4, "tar_at_far_1e-4")):
        ref = tpr[fpr <= tgt].max()
        check(abs(got[key] - ref) < 1e-12, f"{key}: simile {got[key]} vs reference {ref}")
    print("roc vs sklearn: done")


# ---- intra / inter class distances vs numpy ----------------------------------------------------
def test_dist(tool, tmp):
    rng = np.random.default_rng(5)
    n, d = 1100, 10
    labels = rng.integers(0, 6, n).astype(np.int32)
    emb = (rng.standard_normal((n, d)) + labels[:, None] * 0.3).astype(np.float32)
    got = run_tool(tool, "dist", raw(tmp, "e.f32", emb), raw(tmp, "l.i32", labels), n, d)
    e64 = emb.astype(np.float64)
    D = np.sqrt(((e64[:, None, :] - e64[None, :, :]) ** 2).sum(-1))
    iu = np.triu_indices(n, 1)
    same = (labels[:, None] == labels[None, :])[iu]
    dd = D[iu]
    intra, inter = dd[same].mean(), dd[~same].mean()
    check(abs(got["mean_intra"] - intra) < 1e-4 * intra, f"mean_intra {got['mean_intra']} vs {intra}")
    check(abs(got["mean_inter"] - inter) < 1e-4 * inter, f"mean_inter {got['mean_inter']} vs {inter}")
    print("intra/inter distances vs numpy: done")


def main():
    if len(sys.argv) < 3:
        print("usage: test_metrics_peer.py <simile-cli> <build-dir>", file=sys.stderr)
        return 1
    tool = os.path.join(sys.argv[2], "tests", "metrics_tool")
    if not os.access(tool, os.X_OK):
        print(f"test_metrics_peer: {tool} not found: build the metrics_tool target",
              file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        test_knn(tool, tmp)
        test_nmi(tool, tmp)
        test_roc(tool, tmp)
        test_dist(tool, tmp)
        test_retrieval(tool, tmp)
    print(f"test_metrics_peer: {len(FAILURES)} failures")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
