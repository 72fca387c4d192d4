"""test_model.py - simile.Model: trained on arrays and on an image folder, the embeddings it
gives equal `simile embed --raw` of the saved model on the same images (to the last bits of the pixel scaling); training options reach
the C trainer (the progress callback sees the epochs asked for and can stop it); errors."""
import struct
import subprocess

import numpy as np
import pytest

import simile


def quadrants(n_per, seed):
    """8x8 grey images of 4 classes (class k lights quadrant k), pixel values in [0, 1]."""
    rng = np.random.default_rng(seed)
    y = np.tile(np.arange(4), n_per).astype(np.int32)
    x = rng.uniform(0, 0.15, (len(y), 8, 8)).astype(np.float32)
    for i, k in enumerate(y):
        r, c = (k // 2) * 4, (k % 2) * 4
        x[i, r:r + 4, c:c + 4] = rng.uniform(0.7, 1.0, (4, 4))
    return x, y


def write_idx(path_img, path_lab, x, y):
    u8 = np.round(x * 255).astype(np.uint8)
    with open(path_img, "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(y), 8, 8) + u8.tobytes())
    with open(path_lab, "wb") as f:
        f.write(struct.pack(">II", 0x801, len(y)) + y.astype(np.uint8).tobytes())
    return u8.astype(np.float32) / 255


def test_train_embed_save_as_cli(cli, tmp_path):
    x, y = quadrants(32, 1)
    x = write_idx(tmp_path / "img", tmp_path / "lab", x, y)  # the CLI reads the same pixels
    xi, yi = simile.load_idx(tmp_path / "img", tmp_path / "lab")
    assert xi.shape == (128, 8, 8, 1) and np.array_equal(yi, y) and np.allclose(xi[..., 0], x, atol=1e-7)
    m = simile.Model("conv 8 k=3 p=1 ; relu ; maxpool k=2 ; gap ; fc 16 ; l2norm", (8, 8, 1), seed=3)
    assert m.input_shape == (8, 8, 1) and m.dim == 16
    seen = []
    m.train(x, y, loss="triplet", loss_options={"margin": 0.2}, epochs=3, batch_size=32, per_class=8,
            lr=0.01, progress=lambda p: seen.append((p["epoch"], p["epochs"])) and False)
    assert seen[-1] == (3, 3) and m.loss_name == "triplet"
    r = simile.metrics.retrieval(m.embed(x), y)
    assert r["precision_at_1"] > 0.9  # the quadrants separate after a few epochs
    m.save(tmp_path / "m.smm")
    subprocess.run([cli, "embed", "--model", tmp_path / "m.smm", "--images", tmp_path / "img", "--labels",
                    tmp_path / "lab", "--no-normalize", "--raw", "--out", tmp_path / "e.npy"], check=True,
                   capture_output=True, timeout=120)
    back = simile.Model.load(tmp_path / "m.smm")
    assert back.fingerprint == m.fingerprint
    # (the CLI scales the pixels itself: the inputs may differ from x in the last bit)
    assert np.allclose(back.embed(x), np.load(tmp_path / "e.npy"), rtol=1e-5, atol=1e-6)
    assert np.array_equal(back.embed(x[..., None]), m.embed(x))


def test_progress_stops_and_folder(tmp_path):
    x, y = quadrants(8, 2)
    calls = []
    m = simile.Model("mlp", (8, 8, 1))
    m.train(x, y, loss="softmax", loss_options={"classes": 4}, epochs=50, batch_size=8,
            progress=lambda p: calls.append(p["step"]) or len(calls) >= 3)
    assert len(calls) == 3 and m.num_classes == 4 and m.logits(x).shape == (32, 4)
    # an image folder (PGM files, one sub-folder per class)
    for i, (img, k) in enumerate(zip(x, y)):
        d = tmp_path / "folder" / f"class{k}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i}.pgm").write_bytes(b"P5 8 8 255\n" + np.round(img * 255).astype(np.uint8).tobytes())
    names = simile.Model("mlp", (8, 8, 1)).train(folder=tmp_path / "folder", loss="multisimilarity", epochs=1,
                                                 batch_size=16, per_class=4)
    assert names == ["class0", "class1", "class2", "class3"]
    xf, yf, fnames = simile.load_folder(tmp_path / "folder", 8, 8)
    assert fnames == names and xf.shape == (32, 8, 8, 1) and sorted(yf.tolist()) == sorted(y.tolist())


def test_errors(tmp_path):
    with pytest.raises(simile.Error) as e:
        simile.Model("conv 8 k=99", (8, 8, 1))
    assert e.value.status == 6 and e.value.message
    with pytest.raises(simile.Error) as e:
        simile.Model.load(tmp_path / "none.smm")
    assert e.value.status == 3 and "none.smm" in e.value.message
    m = simile.Model("mlp", (8, 8, 1))
    with pytest.raises(simile.Error) as e:
        m.embed(np.zeros((2, 9, 9, 1), np.float32))
    assert e.value.status == 8
    x, y = quadrants(4, 3)
    with pytest.raises(simile.Error) as e:
        m.train(x, y, loss="nope")
    assert e.value.status == 9
    with pytest.raises(simile.Error) as e:
        m.train(x, y, optimizer="lbfgs")
    assert "lbfgs" in e.value.message
    with pytest.raises(simile.Error) as e:
        m.train(x, y, epochz=1)
    assert "epochz" in e.value.message
