"""test_gallery.py - simile.Gallery answers as the CLI does: a gallery enrolled by `simile gallery
enrol --npy` and opened in Python identifies queries (nearest, vote, centroid; open set after
calibration) with the same decisions and distances as `simile identify --json`, and a gallery
made and saved in Python is read by the CLI with the same answers; search() has FAISS's shapes
and is exact; add / remove / verify / calibrate / save behave as documented."""
import json
import subprocess

import numpy as np
import pytest

import simile


def run(cli, *args):
    res = subprocess.run([cli] + [str(a) for a in args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, (args, res.stdout, res.stderr)
    return res.stdout


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(4)
    centres = rng.standard_normal((5, 8)) * 2
    y = np.repeat(np.arange(5), 6).astype(np.int32)
    emb = (centres[y] + rng.standard_normal((30, 8))).astype(np.float32)
    qy = rng.integers(0, 5, 25).astype(np.int32)
    q = (centres[qy] + rng.standard_normal((25, 8))).astype(np.float32)
    np.save(tmp_path / "e.npy", emb)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "q.npy", q)
    np.save(tmp_path / "qy.npy", qy)
    return emb, y, q, qy


def cli_identify(cli, gpath, qpath, *extra):
    out = json.loads(run(cli, "identify", "--gallery", gpath, "--npy", qpath, "--raw", "--json",
                         "--show", "1000", *extra))
    return [q["decision"] for q in out["queries"]], np.array([q["distance"] for q in out["queries"]], np.float32), out


def test_identify_as_cli(cli, tmp_path, data):
    emb, y, q, qy = data
    g = tmp_path / "g.smg"
    run(cli, "gallery", "create", "--out", g, "--dim", 8)
    run(cli, "gallery", "enrol", "--gallery", g, "--npy", tmp_path / "e.npy", "--npy-labels", tmp_path / "y.npy", "--raw")
    gal = simile.Gallery.open(g)
    assert len(gal) == 30 and gal.dim == 8 and gal.classes == {str(k): 6 for k in range(5)}
    for rule, extra in (("nearest", []), ("vote", ["--k", "5"]), ("centroid", [])):
        names, dist, out = cli_identify(cli, g, tmp_path / "q.npy", "--rule", rule, *extra)
        pn, pd = gal.identify(q, rule=rule, k=5)
        assert pn == names, rule
        assert np.allclose(pd, dist, rtol=1e-6), rule
        # the CLI's top matches are the search's
        if rule == "nearest":
            D, I = gal.search(q, 3)
            top = [[m["item_id"] for m in qq["top"]] for qq in out["queries"]]
            assert np.array_equal(I, np.array(top))
    # open set: calibrated in Python, saved, and the CLI then rejects the same queries
    cal = gal.calibrate(q, [str(v) for v in qy], far=0.0)
    assert cal["genuine"] == 25 and cal["impostor"] == 100 and cal["far"] == 0 and 0 < cal["tar"] < 1
    assert gal.threshold == cal["threshold"]
    gal.save()
    names, dist, _ = cli_identify(cli, g, tmp_path / "q.npy")
    pn, pd = simile.Gallery.open(g).identify(q)
    assert pn == names and None in pn and "unknown" not in pn
    assert all((n is None) == (d > cal["threshold"]) for n, d in zip(pn, pd))


def test_python_gallery_read_by_cli(cli, tmp_path, data):
    emb, y, q, qy = data
    gal = simile.Gallery(dim=8)
    ids = gal.add(emb, [f"c{v}" for v in y], names=[f"item{i}" for i in range(30)])
    assert np.array_equal(ids, np.arange(30)) and gal.ntotal == 30
    gal.save(tmp_path / "p.smg")
    names, dist, _ = cli_identify(cli, tmp_path / "p.smg", tmp_path / "q.npy")
    pn, pd = gal.identify(q)
    assert pn == names and np.allclose(pd, dist, rtol=1e-6)
    listing = run(cli, "gallery", "list", "--gallery", tmp_path / "p.smg", "--items")
    assert "item7" in listing and "c4" in listing


def test_search_shapes_and_exactness(data):
    emb, y, q, _ = data
    gal = simile.Gallery(dim=8)
    gal.add(emb, y)
    D, I = gal.search(q, 4)
    assert D.shape == (25, 4) and I.shape == (25, 4) and D.dtype == np.float32 and I.dtype == np.int64
    full = np.sqrt(((q[:, None, :].astype(np.float64) - emb[None]) ** 2).sum(-1))  # Euclidean
    assert np.array_equal(I, np.argsort(full, axis=1, kind="stable")[:, :4])
    assert np.allclose(D, np.sort(full, axis=1)[:, :4], rtol=1e-4, atol=1e-4)
    D, I, C = gal.search(q[:2], 40, return_classes=True)  # more than the gallery holds
    assert np.all(I[:, 30:] == -1) and np.all(np.isinf(D[:, 30:])) and C[0, 30] is None
    assert C[0, 0] == str(y[I[0, 0]])


def test_changes_verify_and_errors(tmp_path, data):
    emb, y, q, qy = data
    gal = simile.Gallery(dim=8, metric="cosine")
    gal.add(emb, y)
    assert gal.remove(class_name="3") == 6 and "3" not in gal.classes and len(gal) == 24
    assert gal.remove(item_id=0) == 1 and len(gal) == 23
    names, _ = gal.identify(q)
    assert "3" not in names
    ok, d = gal.verify(q, "1")
    assert ok is None  # not calibrated: no threshold applies
    gal.set_threshold(0.3, "centroid")
    assert gal.verify(q, "1")[0] is None  # calibrated for another rule
    ok, d = gal.verify(q, "1", rule="centroid")
    assert np.array_equal(ok, d <= np.float32(0.3))
    ok, d = gal.verify(q, "1", threshold=0.5)
    dist, slots = gal.class_distances(q)
    assert np.array_equal(d, dist[:, slots.index("1")]) and np.array_equal(ok, d <= 0.5)
    ids, classes, e, src = gal.items()
    assert len(ids) == 23 and 0 not in ids and e.shape == (23, 8)
    gal.save(tmp_path / "c.smg")
    back = simile.Gallery.open(tmp_path / "c.smg")
    assert back.metric == "cosine" and len(back) == 23
    with pytest.raises(simile.Error) as e:
        gal.add(emb[:, :4], "x")
    assert e.value.status == 8 and e.value.message
    with pytest.raises(simile.Error) as e:
        gal.verify(q, "nope")
    assert e.value.status == 9
    with pytest.raises(simile.Error) as e:
        simile.Gallery.open(tmp_path / "missing.smg")
    assert e.value.status == 3 and "missing.smg" in e.value.message
    (tmp_path / "bad.smg").write_bytes(b"SMILEGAL" + b"\0" * 40)
    with pytest.raises(simile.Error) as e:
        simile.Gallery.open(tmp_path / "bad.smg")
    assert e.value.status == 4
    with pytest.raises(simile.Error):
        simile.Gallery(dim=0)
