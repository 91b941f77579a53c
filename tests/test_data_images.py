"""Image data sets: digits (embedded), CIFAR-10 pickles, Fashion-MNIST idx; lookup and errors."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torch

from nasforge.data import TensorPair, load_image_dataset, split
from nasforge.data.cifar import write_batch, write_meta
from nasforge.data.idx import write_idx
from nasforge.errors import DataError, NasforgeError


@pytest.fixture
def no_default_data(monkeypatch, tmp_path):
    """No $NASFORGE_DATA and an empty home, so nothing is found by default."""
    monkeypatch.delenv("NASFORGE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def _one_line_data_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, NasforgeError)
    assert "\n" not in msg and msg
    return msg


# ---------------------------------------------------------------- digits


def test_digits_default_split_matches_sklearn():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    ds = load_image_dataset("digits")
    assert (ds.name, ds.num_classes, ds.channels, ds.size) == ("digits", 10, 1, 8)
    assert len(ds.train) == 1437 and len(ds.test) == 360 and ds.valid is None
    assert ds.train.x.shape == (1437, 1, 8, 8) and ds.train.x.dtype == torch.float32
    assert ds.train.y.dtype == torch.int64
    d = load_digits()
    xtr, xte, ytr, yte = train_test_split(d.images / 16.0, d.target, test_size=0.2, random_state=0)
    assert np.array_equal(ds.train.y.numpy(), ytr) and np.array_equal(ds.test.y.numpy(), yte)
    raw = ds.train.x.numpy()[:, 0] * ds.std[0] + ds.mean[0]
    assert np.allclose(raw, xtr, atol=1e-5)
    # normalised with the train statistics
    assert abs(ds.train.x.mean().item()) < 1e-4 and abs(ds.train.x.std().item() - 1) < 1e-3
    assert abs(ds.mean[0] - xtr.mean()) < 1e-6


def test_digits_valid_fraction_and_limit():
    a = load_image_dataset("digits", seed=3, valid_fraction=0.25)
    b = load_image_dataset("digits", seed=3, valid_fraction=0.25)
    c = load_image_dataset("digits", seed=4, valid_fraction=0.25)
    assert len(a.valid) == round(0.25 * 1437) and len(a.train) + len(a.valid) == 1437
    assert torch.equal(a.valid.x, b.valid.x) and torch.equal(a.train.y, b.train.y)
    assert not torch.equal(a.valid.y, c.valid.y)
    assert torch.equal(a.test.x, c.test.x)  # the test split never depends on the seed
    lim = load_image_dataset("digits", limit=50, valid_fraction=0.2)
    assert (len(lim.train), len(lim.valid), len(lim.test)) == (40, 10, 50)


def test_split_reproducible_disjoint_and_complete():
    pair = TensorPair(torch.arange(100, dtype=torch.float32).view(100, 1), torch.arange(100))
    a1, b1 = split(pair, 0.3, seed=7)
    a2, b2 = split(pair, 0.3, seed=7)
    _, b3 = split(pair, 0.3, seed=8)
    assert len(b1) == 30 and len(a1) == 70
    assert torch.equal(b1.y, b2.y) and torch.equal(a1.y, a2.y)
    assert not torch.equal(b1.y, b3.y)
    assert set(a1.y.tolist()).isdisjoint(b1.y.tolist())
    assert sorted(a1.y.tolist() + b1.y.tolist()) == list(range(100))
    assert torch.equal(a1.x[:, 0].long(), a1.y)  # x and y stay paired
    half_a, half_b = split(pair, 0.5, seed=0)  # the DARTS 50/50 split
    assert len(half_a) == len(half_b) == 50
    with pytest.raises(DataError):
        split(pair, 1.5, 0)


def test_bad_arguments():
    with pytest.raises(DataError, match="unknown image dataset 'mnist'"):
        load_image_dataset("mnist")
    with pytest.raises(DataError, match="limit"):
        load_image_dataset("digits", limit=0)
    with pytest.raises(DataError, match="valid_fraction"):
        load_image_dataset("digits", valid_fraction=1.0)


# ---------------------------------------------------------------- CIFAR-10 (synthetic files)


def _make_cifar(folder, sizes=(7, 5, 3), n_test=4, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for k, n in enumerate(sizes, 1):
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, 10, n)
        write_batch(folder / f"data_batch_{k}", x, y)
        xs.append(x)
        ys.append(y)
    xt = rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8)
    yt = rng.integers(0, 10, n_test)
    write_batch(folder / "test_batch", xt, yt)
    write_meta(folder / "batches.meta")
    return np.concatenate(xs), np.concatenate(ys), xt, yt


def test_cifar_any_number_of_batches_and_images(tmp_path):
    x, y, xt, yt = _make_cifar(tmp_path / "c", sizes=(7, 5, 3))
    ds = load_image_dataset("cifar10", tmp_path / "c")
    assert len(ds.train) == 15 and len(ds.test) == 4 and ds.train.x.shape[1:] == (3, 32, 32)
    assert np.array_equal(ds.train.y.numpy(), y) and np.array_equal(ds.test.y.numpy(), yt)
    mean = torch.tensor(ds.mean).view(1, 3, 1, 1)
    std = torch.tensor(ds.std).view(1, 3, 1, 1)
    raw = (ds.train.x * std + mean) * 255
    assert torch.allclose(raw, torch.from_numpy(x).float(), atol=1e-3)
    assert ds.class_names[0] == "airplane" and ds.class_names[9] == "truck"
    lim = load_image_dataset("cifar10", tmp_path / "c", limit=9)
    assert len(lim.train) == 9 and len(lim.test) == 4
    assert np.array_equal(lim.train.y.numpy(), y[:9])


def test_cifar_batch_folder_or_parent_and_env(tmp_path, monkeypatch):
    _make_cifar(tmp_path / "root" / "cifar-10-batches-py", sizes=(2,))
    assert len(load_image_dataset("cifar10", tmp_path / "root").train) == 2
    monkeypatch.setenv("NASFORGE_DATA", str(tmp_path / "env"))
    _make_cifar(tmp_path / "env" / "cifar-10-subset", sizes=(3, 3))
    assert len(load_image_dataset("cifar10").train) == 6
    monkeypatch.setenv("NASFORGE_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _make_cifar(tmp_path / "home" / ".nasforge" / "data" / "cifar10" / "cifar-10-batches-py", sizes=(1,))
    assert len(load_image_dataset("cifar10").train) == 1


def test_cifar_missing_names_dataset_places_and_download(no_default_data):
    with pytest.raises(DataError) as e:
        load_image_dataset("cifar10")
    msg = _one_line_data_error(e)
    assert "cifar10" in msg and ".nasforge/data/cifar10" in msg and "nasforge data download cifar10" in msg
    with pytest.raises(DataError, match="does not exist"):
        load_image_dataset("cifar10", no_default_data / "nope")
    (no_default_data / "empty").mkdir()
    with pytest.raises(DataError, match="cifar10 data not found"):
        load_image_dataset("cifar10", no_default_data / "empty")


@pytest.mark.parametrize(
    "damage, pattern",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:500]), "not a valid CIFAR-10 python pickle"),
        (lambda p: p.write_bytes(b"garbage" * 10), "not a valid CIFAR-10 python pickle"),
        (lambda p: p.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})), r"shape \(N, 3072\)"),
        (lambda p: p.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]})), "1 labels for 2 images"),
        (lambda p: p.write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [12]})), "0..9"),
        (lambda p: p.write_bytes(pickle.dumps([1, 2])), "not a CIFAR-10 batch"),
        (lambda p: p.write_bytes(pickle.dumps({b"x": __import__("os").getcwd})), "not a valid CIFAR-10 python pickle"),
    ],
)
def test_cifar_malformed_batch(tmp_path, damage, pattern):
    _make_cifar(tmp_path / "c", sizes=(3, 3))
    damage(tmp_path / "c" / "data_batch_2")
    with pytest.raises(DataError, match=pattern) as e:
        load_image_dataset("cifar10", tmp_path / "c")
    assert "data_batch_2" in _one_line_data_error(e)


# ---------------------------------------------------------------- Fashion-MNIST (synthetic files)


def _make_fashion(folder, n_train=12, n_test=5, gz=True):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for stem, a in arrays.items():
        write_idx(folder / (stem + ext), a)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_synthetic_idx(tmp_path, gz):
    arrays = _make_fashion(tmp_path / "f", gz=gz)
    ds = load_image_dataset("fashion-mnist", tmp_path / "f")
    assert ds.train.x.shape == (12, 1, 28, 28) and ds.test.x.shape == (5, 1, 28, 28)
    assert np.array_equal(ds.train.y.numpy(), arrays["train-labels-idx1-ubyte"])
    raw = (ds.test.x[:, 0] * ds.std[0] + ds.mean[0]) * 255
    assert torch.allclose(raw, torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float(), atol=1e-3)
    assert ds.class_names[9] == "Ankle boot"


def test_fashion_malformed(tmp_path):
    _make_fashion(tmp_path / "f")
    p = tmp_path / "f" / "train-labels-idx1-ubyte.gz"
    write_idx(p, np.zeros((12, 28, 28), np.uint8))  # an image file where labels belong
    with pytest.raises(DataError, match="magic number 2051, expected 2049") as e:
        load_image_dataset("fashion-mnist", tmp_path / "f")
    _one_line_data_error(e)
    write_idx(p, np.zeros(11, np.uint8))
    with pytest.raises(DataError, match="12 images but 11 labels"):
        load_image_dataset("fashion-mnist", tmp_path / "f")
    write_idx(p, np.zeros(12, np.uint8))
    img = tmp_path / "f" / "t10k-images-idx3-ubyte.gz"
    data = gzip.decompress(img.read_bytes())
    img.write_bytes(gzip.compress(data[:-100]))
    with pytest.raises(DataError, match="truncated"):
        load_image_dataset("fashion-mnist", tmp_path / "f")
    img.write_bytes(gzip.compress(data)[:-50])  # damaged gzip stream
    with pytest.raises(DataError, match="t10k-images"):
        load_image_dataset("fashion-mnist", tmp_path / "f")


def test_fashion_missing(no_default_data):
    (no_default_data / "f").mkdir()
    with pytest.raises(DataError, match="fashion-mnist data not found") as e:
        load_image_dataset("fashion-mnist", no_default_data / "f")
    assert "train-images-idx3-ubyte" in _one_line_data_error(e)


# ---------------------------------------------------------------- the shared real data


def test_cifar10_shared_subset(shared_data):
    ds = load_image_dataset("cifar10", shared_data / "cifar-10-subset")
    assert (len(ds.train), len(ds.test)) == (5170, 1017)
    assert ds.train.x.shape == (5170, 3, 32, 32) and ds.test.x.shape == (1017, 3, 32, 32)
    assert ds.train.y.min() >= 0 and ds.train.y.max() <= 9 and ds.test.y.unique().numel() == 10
    assert ds.train.y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]  # the official order
    assert ds.test.y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    # the usual CIFAR-10 constants normalise the real images to about mean 0, std 1
    assert ds.train.x.mean((0, 2, 3)).abs().max() < 0.05
    assert (ds.train.x.std((0, 2, 3)) - 1).abs().max() < 0.05
    # found by name through $NASFORGE_DATA
    assert len(load_image_dataset("cifar10", limit=10).train) == 10


def test_fashion_mnist_shared(shared_data):
    ds = load_image_dataset("fashion-mnist", shared_data / "fashion-mnist")
    assert (len(ds.train), len(ds.test)) == (60000, 10000)
    assert ds.train.x.shape[1:] == (1, 28, 28) and ds.size == 28
    assert torch.bincount(ds.train.y).tolist() == [6000] * 10
    assert abs(ds.train.x.mean().item()) < 1e-3 and abs(ds.train.x.std().item() - 1) < 1e-3
    lim = load_image_dataset("fashion-mnist", limit=100, valid_fraction=0.1, seed=1)
    assert (len(lim.train), len(lim.valid), len(lim.test)) == (90, 10, 100)
    assert torch.equal(lim.test.y, ds.test.y[:100])
