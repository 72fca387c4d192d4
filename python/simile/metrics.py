"""metrics.py - retrieval and verification metrics on NumPy arrays (the C library's
sm_retrieval_metrics, sm_knn_search, sm_nmi, sm_roc, sm_roc_auc, sm_eer, sm_tar_at_far):
    r = simile.metrics.retrieval(emb, labels)            # P@1, R-precision, MAP@R, Recall@K, NMI
    AccuracyCalculator().get_accuracy(emb, labels)       # pytorch-metric-learning's key names
Every sample is a query against all the others (itself excluded), as AccuracyCalculator with
the query set as the reference set."""
import ctypes

import numpy as np

from . import _lib
from ._lib import lib, check


def retrieval(emb, labels, metric="l2"):
    """dict with precision_at_1, r_precision, map_at_r, recall_at_1/2/4/8, nmi, num_queries,
    num_skipped, num_classes for embeddings emb (n, d) and labels (n), neighbours ranked by
    metric ('l2' squared Euclidean, 'ip', 'cosine')."""
    emb = _lib.f32(emb, 2, "emb")
    n, d = emb.shape
    labels = _lib.i32(labels, n)
    r = _lib.RetrievalResult()
    check(lib.sm_retrieval_metrics(_lib.ptr(emb, _lib.F32P), _lib.ptr(labels, _lib.I32P), n, d,
                                   _lib.metric_code(metric), ctypes.byref(r)))
    out = {"precision_at_1": r.precision_at_1, "r_precision": r.r_precision, "map_at_r": r.map_at_r}
    for i, k in enumerate((1, 2, 4, 8)):
        out[f"recall_at_{k}"] = r.recall_at_k[i]
    out.update(nmi=r.nmi, num_queries=int(r.num_queries), num_skipped=int(r.num_skipped),
               num_classes=int(r.num_classes))
    return out


def precision_at_1(emb, labels, metric="l2"):
    return retrieval(emb, labels, metric)["precision_at_1"]


def r_precision(emb, labels, metric="l2"):
    return retrieval(emb, labels, metric)["r_precision"]


def map_at_r(emb, labels, metric="l2"):
    return retrieval(emb, labels, metric)["map_at_r"]


def knn_search(db, queries, k, metric="l2", exclude_self=False):
    """(D, I): the k nearest rows of db (n, d) for each query (nq, d), best first, as FAISS's
    IndexFlat search: D (nq, k) float32 (squared L2, inner product or cosine), I (nq, k) int64
    (-1 where k > n).  exclude_self: query i never matches db row i (queries is db)."""
    db = _lib.f32(db, 2, "db")
    q = _lib.f32(queries, 2, "queries")
    if q.shape[1] != db.shape[1]:
        raise _lib.error(8, f"queries have d={q.shape[1]}, db has d={db.shape[1]}")
    D = np.empty((q.shape[0], k), np.float32)
    I = np.empty((q.shape[0], k), np.int64)
    check(lib.sm_knn_search(_lib.ptr(db, _lib.F32P), db.shape[0], _lib.ptr(q, _lib.F32P), q.shape[0],
                            db.shape[1], int(k), _lib.metric_code(metric), int(bool(exclude_self)),
                            _lib.ptr(D, _lib.F32P), _lib.ptr(I, _lib.I64P)))
    return D, I


def recall_at_k(emb, labels, k, metric="l2"):
    """Fraction of the queries (classes with another sample) with a same-class item among their
    k nearest others."""
    emb = _lib.f32(emb, 2, "emb")
    labels = _lib.i32(labels, emb.shape[0])
    _, I = knn_search(emb, emb, k, metric, exclude_self=True)
    counts = np.bincount(labels - labels.min())
    valid = counts[labels - labels.min()] > 1
    hit = ((labels[np.where(I >= 0, I, 0)] == labels[:, None]) & (I >= 0)).any(1)
    return float(hit[valid].mean()) if valid.any() else 0.0


def nmi(a, b):
    """Normalised mutual information of two labelings (scikit-learn's arithmetic mean)."""
    a = _lib.i32(a, name="a")
    b = _lib.i32(b, a.shape[0], "b")
    out = ctypes.c_double()
    check(lib.sm_nmi(_lib.ptr(a, _lib.I32P), _lib.ptr(b, _lib.I32P), a.shape[0], ctypes.byref(out)))
    return out.value


def _pairs(scores, genuine):
    s = _lib.f32(scores, 1, "scores")
    g = np.asarray(genuine)
    if g.shape != s.shape:
        raise _lib.error(8, f"genuine has shape {g.shape}, scores {s.shape}")
    return s, np.ascontiguousarray(g.astype(np.int8))


def roc(scores, genuine):
    """(far, tar, thresholds) of the ROC curve of pair scores (higher = more similar) with
    genuine flags (1 same, 0 different): scikit-learn's roc_curve(drop_intermediate=False)."""
    s, g = _pairs(scores, genuine)
    cap = s.shape[0] + 1
    far, tar = np.empty(cap), np.empty(cap)
    thr = np.empty(cap, np.float32)
    count = ctypes.c_int64()
    check(lib.sm_roc(_lib.ptr(s, _lib.F32P), _lib.ptr(g, _lib.I8P), s.shape[0], _lib.ptr(far, _lib.F64P),
                     _lib.ptr(tar, _lib.F64P), _lib.ptr(thr, _lib.F32P), cap, ctypes.byref(count)))
    c = count.value
    return far[:c], tar[:c], thr[:c]


def roc_auc(scores, genuine):
    s, g = _pairs(scores, genuine)
    out = ctypes.c_double()
    check(lib.sm_roc_auc(_lib.ptr(s, _lib.F32P), _lib.ptr(g, _lib.I8P), s.shape[0], ctypes.byref(out)))
    return out.value


def eer(scores, genuine):
    """(equal error rate, threshold)."""
    s, g = _pairs(scores, genuine)
    out, thr = ctypes.c_double(), ctypes.c_float()
    check(lib.sm_eer(_lib.ptr(s, _lib.F32P), _lib.ptr(g, _lib.I8P), s.shape[0], ctypes.byref(out),
                     ctypes.byref(thr)))
    return out.value, thr.value


def tar_at_far(scores, genuine, far):
    """(TAR, threshold) at the false-accept rate far."""
    s, g = _pairs(scores, genuine)
    out, thr = ctypes.c_double(), ctypes.c_float()
    check(lib.sm_tar_at_far(_lib.ptr(s, _lib.F32P), _lib.ptr(g, _lib.I8P), s.shape[0], float(far),
                            ctypes.byref(out), ctypes.byref(thr)))
    return out.value, thr.value


def _vs_reference(query, query_labels, reference, reference_labels, ref_includes_query, metric):
    """P@1, R-precision, MAP@R, Recall@1/2/4/8 of queries against a separate reference set, with
    PML's definitions: R = the reference items of the query's class (less one when the reference
    includes the query, whose own match, the first neighbour, is dropped); queries with R = 0
    are left out."""
    q = _lib.f32(query, 2, "query")
    ref = _lib.f32(reference, 2, "reference")
    ql = _lib.i32(query_labels, q.shape[0], "query_labels")
    rl = _lib.i32(reference_labels, ref.shape[0], "reference_labels")
    uniq, counts = np.unique(rl, return_counts=True)
    pos = np.searchsorted(uniq, ql)
    found = (pos < len(uniq)) & (uniq[np.minimum(pos, len(uniq) - 1)] == ql)
    R = np.where(found, counts[np.minimum(pos, len(uniq) - 1)], 0) - int(bool(ref_includes_query))
    valid = R > 0
    if not valid.any():
        return dict(precision_at_1=0.0, r_precision=0.0, map_at_r=0.0,
                    **{f"recall_at_{k}": 0.0 for k in (1, 2, 4, 8)})
    k = int(max(R.max(), 8))
    skip = int(bool(ref_includes_query))
    _, I = knn_search(ref, q[valid], min(k + skip, ref.shape[0]), metric)
    I = I[:, skip:]
    Rv = R[valid]
    hit = (rl[np.where(I >= 0, I, 0)] == ql[valid][:, None]) & (I >= 0)
    in_r = np.arange(hit.shape[1])[None, :] < Rv[:, None]
    rel = hit & in_r
    prec = np.cumsum(rel, axis=1) / np.arange(1, hit.shape[1] + 1)[None, :]
    out = {"precision_at_1": float(hit[:, 0].mean()),
           "r_precision": float((rel.sum(1) / Rv).mean()),
           "map_at_r": float(((prec * rel).sum(1) / Rv).mean())}
    for kk in (1, 2, 4, 8):
        out[f"recall_at_{kk}"] = float(hit[:, :kk].any(1).mean())
    return out


class AccuracyCalculator:
    """pytorch-metric-learning's AccuracyCalculator: get_accuracy(query, query_labels,
    reference=None, reference_labels=None, ref_includes_query=False) returns a dict with its key
    names (precision_at_1, r_precision, mean_average_precision_at_r, NMI) and simile's
    recall_at_1/2/4/8.  Without a reference the query set is its own, each query excluded
    (sm_retrieval_metrics, the fast path); with one, the queries are searched in it
    (sm_knn_search) and scored with PML's definitions.  NMI clusters the query embeddings
    (k-means, k = the number of classes), as PML's does.  include / exclude choose keys as
    PML's do; metric 'l2' (PML's default FaissKNN on IndexFlatL2), 'ip' or 'cosine'."""
    KEYS = ("precision_at_1", "r_precision", "mean_average_precision_at_r", "NMI",
            "recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8")

    def __init__(self, include=(), exclude=(), metric="l2"):
        unknown = [k for k in list(include) + list(exclude) if k not in self.KEYS]
        if unknown:
            raise _lib.error(1, f"unknown metric names {unknown} (known: {', '.join(self.KEYS)})")
        self.include, self.exclude, self.metric = tuple(include), tuple(exclude), metric

    def get_accuracy(self, query, query_labels, reference=None, reference_labels=None,
                     ref_includes_query=False):
        keys = [k for k in (self.include or self.KEYS) if k not in self.exclude]
        if reference is None or reference is query:
            r = retrieval(query, query_labels, self.metric)
        else:
            if reference_labels is None:
                raise _lib.error(1, "get_accuracy: reference without reference_labels")
            r = _vs_reference(query, query_labels, reference, reference_labels, ref_includes_query,
                              self.metric)
            if "NMI" in keys:
                r["nmi"] = retrieval(query, query_labels, self.metric)["nmi"]
        out = {"precision_at_1": r["precision_at_1"], "r_precision": r["r_precision"],
               "mean_average_precision_at_r": r["map_at_r"], "NMI": r.get("nmi")}
        for k in (1, 2, 4, 8):
            out[f"recall_at_{k}"] = r[f"recall_at_{k}"]
        return {k: out[k] for k in keys}
