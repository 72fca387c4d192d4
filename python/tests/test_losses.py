"""test_losses.py - every registered loss through Python gives the value and gradients that the
C library gives on its own (tests/loss_tool.c on .npy files), bit for bit; options reach the C
loss; errors are simile.Error with the status and the library's message."""
import subprocess

import numpy as np
import pytest

import simile

# name -> option sets: every loss, with its defaults and with some options changed
CASES = {
    "softmax": [{"classes": 4}, {"classes": 4, "smoothing": 0.1}],
    "focal": [{"classes": 4}, {"classes": 4, "alpha": 0.5, "gamma": 1}],
    "contrastive": [{}, {"pos_margin": 0.1, "neg_margin": 0.8, "miner": "pairmargin"}],
    "triplet": [{}, {"margin": 0.2, "miner": "semihard"}, {"miner": "hard", "reducer": "mean"}],
    "npair": [{}],
    "multisimilarity": [{}, {"alpha": 1.5, "beta": 40, "miner": "none"}],
    "arcface": [{"classes": 4}, {"classes": 4, "margin": 20, "scale": 32}],
    "cosface": [{"classes": 4}],
    "proxyanchor": [{"classes": 4}, {"classes": 4, "alpha": 16, "margin": 0.2}],
    "supcon": [{}, {"temperature": 0.2}],
}


def test_every_registered_loss_is_tested():
    assert sorted(simile.losses.names()) == sorted(CASES)
    for name, help_ in simile.losses.describe().items():
        assert help_, name


def c_loss(tool, tmp_path, name, opts, emb, labels):
    np.save(tmp_path / "e.npy", emb)
    np.save(tmp_path / "y.npy", labels)
    g, pg = tmp_path / "g.npy", tmp_path / "pg.npy"
    if pg.exists():
        pg.unlink()
    res = subprocess.run([tool, name, simile._lib.options_text(opts), str(tmp_path / "e.npy"),
                          str(tmp_path / "y.npy"), str(g), str(pg)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    return (float.fromhex(res.stdout.strip()), np.load(g), np.load(pg) if pg.exists() else None)


@pytest.mark.parametrize("name,opts", [(n, o) for n, os_ in CASES.items() for o in os_])
def test_loss_equals_c(loss_tool, tmp_path, batch, name, opts):
    emb, labels = batch
    value, grad, pgrad = c_loss(loss_tool, tmp_path, name, opts, emb, labels)
    loss = simile.losses.Loss(name, **opts)
    v, g = loss(emb, labels)
    assert v == np.float32(value) and np.isfinite(v)
    assert g.shape == emb.shape and g.dtype == np.float32
    assert np.array_equal(g, grad)
    assert np.abs(g).sum() > 0, "a zero gradient would compare equal without testing anything"
    if pgrad is None:
        assert loss.params is None
    else:
        assert np.array_equal(loss.param_grads, pgrad)
    # the one-call form and a non-contiguous float64 input (converted) give the same
    v2, g2 = getattr(simile.losses, name)(np.asfortranarray(emb.astype(np.float64)), labels.astype(np.int64), **opts)
    assert v2 == v and np.array_equal(g2, g)


def test_options_reach_the_loss(batch):
    emb, labels = batch
    a, _ = simile.losses.triplet(emb, labels, margin=0.05)
    b, _ = simile.losses.triplet(emb, labels, margin=0.5)
    assert b > a


def test_params_are_views_and_accumulate(batch):
    emb, labels = batch
    loss = simile.losses.Loss("softmax", classes=4)
    assert loss.params is None  # made at the first call, which gives the dimension
    loss = simile.losses.Loss("softmax", dim=16, classes=4)
    assert loss.params.shape == loss.param_grads.shape and loss.params.size == 4 * 16 + 4
    loss.zero_param_grads()
    loss(emb, labels)
    once = loss.param_grads.copy()
    loss(emb, labels)
    assert np.allclose(loss.param_grads, 2 * once)
    loss.params[:] = 0  # a view: the C loss computes with the new values
    v, _ = loss(emb, labels)
    assert abs(v - np.log(4)) < 1e-5


def test_errors(batch):
    emb, labels = batch
    with pytest.raises(simile.Error) as e:
        simile.losses.Loss("nope")(emb, labels)
    assert e.value.status == 9 and "nope" in e.value.message
    with pytest.raises(simile.Error) as e:
        simile.losses.Loss("triplet", margin="abc")(emb, labels)
    assert e.value.status == 1 and "abc" in e.value.message
    with pytest.raises(simile.Error) as e:
        simile.losses.Loss("softmax", classes=2)(emb, labels)  # label 3 outside the head
    assert e.value.status == 5 and e.value.message
    bad = emb.copy()
    bad[3, 2] = np.nan
    with pytest.raises(simile.Error) as e:
        simile.losses.triplet(bad, labels)
    assert e.value.status == 7
    loss = simile.losses.Loss("triplet")
    loss(emb, labels)
    with pytest.raises(simile.Error) as e:
        loss(emb[:, :8], labels)  # the dimension differs from the loss's
    assert e.value.status == 8
    with pytest.raises(simile.Error) as e:
        simile.losses.triplet(emb, labels[:5])
    assert e.value.status == 8
