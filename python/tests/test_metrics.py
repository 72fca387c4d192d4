"""test_metrics.py - simile.metrics equals a direct NumPy transcription of
pytorch-metric-learning's AccuracyCalculator formulas (P@1, R-precision, MAP@R with the query
excluded), scikit-learn's NMI / ROC / AUC where it is installed, and its own definitions
(Recall@K, EER, TAR@FAR); errors are simile.Error."""
import numpy as np
import pytest

import simile
from simile import metrics


def pml(E, y):
    E = E.astype(np.float64)
    D = ((E[:, None, :] - E[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(D, np.inf)
    order = np.argsort(D, axis=1, kind="stable")
    p1 = rp = mapr = 0.0
    for i in range(len(y)):
        R = int((y == y[i]).sum()) - 1
        rel = y[order[i, :R]] == y[i]
        p1 += y[order[i, 0]] == y[i]
        rp += rel.sum() / R
        mapr += (np.cumsum(rel) / np.arange(1, R + 1) * rel).sum() / R
    n = len(y)
    return p1 / n, rp / n, mapr / n, order


@pytest.fixture
def data():
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(6), 20).astype(np.int32)
    E = (rng.standard_normal((120, 12)) + 1.5 * rng.standard_normal((6, 12))[y]).astype(np.float32)
    return E, y


def test_retrieval_equals_pml_formulas(data):
    E, y = data
    p1, rp, mapr, order = pml(E, y)
    r = metrics.retrieval(E, y)
    assert abs(r["precision_at_1"] - p1) < 1e-9
    assert abs(r["r_precision"] - rp) < 1e-9
    assert abs(r["map_at_r"] - mapr) < 1e-9
    assert 0 < mapr < 1 and r["num_queries"] == 120 and r["num_classes"] == 6
    for k in (1, 2, 4, 8):
        want = np.mean([(y[order[i, :k]] == y[i]).any() for i in range(len(y))])
        assert abs(r[f"recall_at_{k}"] - want) < 1e-9
        assert abs(metrics.recall_at_k(E, y, k) - want) < 1e-9
    assert abs(metrics.recall_at_k(E, y, 3) - np.mean([(y[order[i, :3]] == y[i]).any() for i in range(120)])) < 1e-9
    acc = metrics.AccuracyCalculator().get_accuracy(E, y)
    assert acc["mean_average_precision_at_r"] == r["map_at_r"] and acc["NMI"] == r["nmi"]
    assert set(metrics.AccuracyCalculator(include=("precision_at_1",)).get_accuracy(E, y)) == {"precision_at_1"}
    assert metrics.precision_at_1(E, y) == r["precision_at_1"]


def test_knn_search_is_exact(data):
    E, _ = data
    D, I = metrics.knn_search(E, E[:7], 5)
    full = ((E[:7, None, :].astype(np.float64) - E[None, :, :]) ** 2).sum(-1)
    assert np.array_equal(I, np.argsort(full, axis=1, kind="stable")[:, :5])
    assert np.allclose(D, np.sort(full, axis=1)[:, :5], rtol=1e-4, atol=1e-4)
    assert np.all(I[:, 0] == np.arange(7))
    _, I2 = metrics.knn_search(E, E, 1, exclude_self=True)
    assert not np.any(I2[:, 0] == np.arange(120))


def test_verification_metrics():
    rng = np.random.default_rng(3)
    genuine = (np.arange(400) % 4 == 0).astype(np.int8)
    scores = (rng.standard_normal(400) + 2.0 * genuine).astype(np.float32)
    far, tar, thr = metrics.roc(scores, genuine)
    assert far[0] == 0 and tar[0] == 0 and far[-1] == 1 and tar[-1] == 1
    assert np.all(np.diff(far) >= 0) and np.all(np.diff(tar) >= 0)
    # AUC: the fraction of (genuine, impostor) pairs ranked right
    g, i = scores[genuine == 1], scores[genuine == 0]
    want = ((g[:, None] > i[None, :]).sum() + 0.5 * (g[:, None] == i[None, :]).sum()) / (g.size * i.size)
    assert abs(metrics.roc_auc(scores, genuine) - want) < 1e-9
    e, t = metrics.eer(scores, genuine)
    fa = (i >= t).mean()
    fr = (g < t).mean()
    assert 0 < e < 0.5 and abs(e - (fa + fr) / 2) < 0.05
    tar1, t1 = metrics.tar_at_far(scores, genuine, 0.01)
    assert (i >= t1).mean() <= 0.01 and abs((g >= t1).mean() - tar1) < 1e-12
    try:
        from sklearn.metrics import roc_curve, roc_auc_score, normalized_mutual_info_score
    except ImportError:
        return  # the formulas above are the check; scikit-learn's test is test_metrics_peer.py
    f2, t2, _ = roc_curve(genuine, scores, drop_intermediate=False)
    assert np.allclose(far, f2) and np.allclose(tar, t2)
    assert abs(metrics.roc_auc(scores, genuine) - roc_auc_score(genuine, scores)) < 1e-9
    a, b = rng.integers(0, 5, 300), rng.integers(0, 4, 300)
    assert abs(metrics.nmi(a, b) - normalized_mutual_info_score(a, b)) < 1e-9


def test_errors(data):
    E, y = data
    with pytest.raises(simile.Error) as e:
        metrics.retrieval(E, y, metric="hamming")
    assert e.value.status == 1 and "hamming" in e.value.message
    bad = E.copy()
    bad[0, 0] = np.inf
    with pytest.raises(simile.Error) as e:
        metrics.retrieval(bad, y)
    assert e.value.status == 7
    with pytest.raises(simile.Error) as e:
        metrics.roc(np.zeros(4, np.float32), np.ones(4))  # no impostor pair
    assert e.value.status == 1 and e.value.message
    with pytest.raises(simile.Error):
        metrics.AccuracyCalculator(include=("AMI",))
    with pytest.raises(simile.Error):
        metrics.AccuracyCalculator().get_accuracy(E, y, E[:10])  # reference without labels


def test_accuracy_against_a_reference_set(data):
    """queries searched in a separate reference set: PML's definitions by brute force"""
    E, y = data
    q, qy, ref, ry = E[::3], y[::3], np.delete(E, np.s_[::3], 0), np.delete(y, np.s_[::3])
    ry = ry.copy()
    ry[ry == 5] = 4  # class 5 has no reference item: its queries are left out
    D = ((q[:, None, :].astype(np.float64) - ref[None]) ** 2).sum(-1)
    order = np.argsort(D, axis=1, kind="stable")
    p1, rp, mapr, recall2, n = 0.0, 0.0, 0.0, 0.0, 0
    for i in range(len(qy)):
        R = int((ry == qy[i]).sum())
        if R == 0:
            continue
        n += 1
        rel = ry[order[i, :R]] == qy[i]
        p1 += ry[order[i, 0]] == qy[i]
        rp += rel.sum() / R
        mapr += (np.cumsum(rel) / np.arange(1, R + 1) * rel).sum() / R
        recall2 += (ry[order[i, :2]] == qy[i]).any()
    acc = metrics.AccuracyCalculator().get_accuracy(q, qy, ref, ry)
    assert n < len(qy)
    assert abs(acc["precision_at_1"] - p1 / n) < 1e-9
    assert abs(acc["r_precision"] - rp / n) < 1e-9
    assert abs(acc["mean_average_precision_at_r"] - mapr / n) < 1e-9
    assert abs(acc["recall_at_2"] - recall2 / n) < 1e-9
    assert acc["NMI"] == metrics.retrieval(q, qy)["nmi"]
    # the reference set holding the queries, with ref_includes_query, is the query set alone
    # (up to ties in the ranking)
    same = metrics.AccuracyCalculator().get_accuracy(E, y, E.copy(), y, ref_includes_query=True)
    own = metrics.AccuracyCalculator().get_accuracy(E, y)
    for k in ("precision_at_1", "r_precision", "mean_average_precision_at_r"):
        assert abs(same[k] - own[k]) < 1e-9, k
