"""Your own data: image folders, .npz files, Python objects (as_dataset), the memory: registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nasforge.data import ImageDataset, as_dataset, load_image_dataset, register_dataset, registered_datasets, unregister_dataset
from nasforge.data.arrays import holdout
from nasforge.errors import DataError, NasforgeError


def _msg(excinfo) -> str:
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, NasforgeError) and msg and "\n" not in msg
    return msg


def _gray(seed: int, size=(10, 10)) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, (size[1], size[0]), dtype=np.uint8)


def make_folder(root: Path, classes=("cat", "dog", "eel"), per_class=10, size=(10, 10), suffix=".png") -> dict[Path, np.ndarray]:
    """Gray images ``root/<class>/<i>.png``; returns file -> pixels."""
    pixels = {}
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = _gray(100 * c + i, size)
            p = root / name / f"{i:03d}{suffix}"
            Image.fromarray(a).save(p)
            pixels[p] = a
    return pixels


# ---------------------------------------------------------------- image folders


def test_folder_gray_pixels_classes_and_fixed_test_split(tmp_path):
    pixels = make_folder(tmp_path / "f")
    (tmp_path / "f" / "notes.txt").write_text("ignored")
    (tmp_path / "f" / "dog" / "README").write_text("ignored")
    ds = load_image_dataset(tmp_path / "f")
    assert isinstance(ds, ImageDataset)
    assert (ds.num_classes, ds.channels, ds.size, ds.class_names) == (3, 1, 10, ["cat", "dog", "eel"])
    assert ds.name == str((tmp_path / "f").resolve()) and ds.valid is None
    assert (len(ds.train), len(ds.test)) == (24, 6)  # 2 of 10 per class held out
    assert np.bincount(ds.test.y.numpy()).tolist() == [2, 2, 2]
    # normalised with the train statistics; de-normalising gives back the PNG pixels
    assert abs(ds.train.x.mean().item()) < 1e-4 and abs(ds.train.x.std(unbiased=False).item() - 1) < 1e-3
    back = np.round((ds.train.x[:, 0].numpy() * ds.std[0] + ds.mean[0]) * 255).astype(np.uint8)
    stored = {a.tobytes(): int(p.parent.name == "dog") + 2 * int(p.parent.name == "eel") for p, a in pixels.items()}
    for img, label in zip(back, ds.train.y.tolist()):
        assert stored[img.tobytes()] == label
    # the test split does not depend on the seed; valid does
    a = load_image_dataset(tmp_path / "f", seed=1, valid_fraction=0.25)
    b = load_image_dataset(str(tmp_path / "f"), seed=2, valid_fraction=0.25)
    assert torch.equal(a.test.x, ds.test.x) and torch.equal(a.test.x, b.test.x)
    assert len(a.valid) == 6 and len(a.train) == 18 and not torch.equal(a.valid.x, b.valid.x)


def test_folder_limit_keeps_a_mix_of_classes_and_rgb_detection(tmp_path):
    make_folder(tmp_path / "f", per_class=20)
    lim = load_image_dataset(tmp_path / "f", limit=9)
    assert len(lim.train) == 9 and len(lim.test) == 9 and len(set(lim.train.y.tolist())) > 1
    # one colour JPEG among gray PNGs -> 3 channels, gray images repeated
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (10, 10, 3), dtype=np.uint8)).save(tmp_path / "f" / "cat" / "c.JPG")
    ds = load_image_dataset(tmp_path / "f")
    assert ds.channels == 3 and len(ds.mean) == 3 and ds.train.x.shape[1:] == (3, 10, 10)


def test_folder_with_train_and_test_subfolders(tmp_path):
    make_folder(tmp_path / "s" / "train", classes=("a", "b"), per_class=6)
    make_folder(tmp_path / "s" / "test", classes=("b",), per_class=3)
    ds = load_image_dataset(tmp_path / "s")
    assert (len(ds.train), len(ds.test), ds.class_names) == (12, 3, ["a", "b"])
    assert ds.test.y.tolist() == [1, 1, 1]
    make_folder(tmp_path / "s" / "test", classes=("zebra",), per_class=1)
    with pytest.raises(DataError) as e:
        load_image_dataset(tmp_path / "s")
    assert "'zebra'" in _msg(e)


def test_folder_mixed_sizes_need_input_size(tmp_path):
    make_folder(tmp_path / "f", per_class=4)
    Image.fromarray(_gray(7, (14, 14))).save(tmp_path / "f" / "dog" / "big.png")
    with pytest.raises(DataError) as e:
        load_image_dataset(tmp_path / "f")
    msg = _msg(e)
    assert "10x10" in msg and "14x14" in msg and "big.png" in msg and "--input-size" in msg
    ds = load_image_dataset(tmp_path / "f", input_size=12)
    assert ds.size == 12 and ds.train.x.shape[1:] == (1, 12, 12) and ds.test.x.shape[1:] == (1, 12, 12)


def test_folder_non_square_needs_input_size(tmp_path):
    make_folder(tmp_path / "f", per_class=3, size=(12, 8))
    with pytest.raises(DataError) as e:
        load_image_dataset(tmp_path / "f")
    assert "12x8" in _msg(e)
    assert load_image_dataset(tmp_path / "f", input_size=8).size == 8


def test_folder_errors_name_the_folder_or_file(tmp_path):
    make_folder(tmp_path / "f", per_class=3)
    (tmp_path / "f" / "fox").mkdir()
    with pytest.raises(DataError) as e:
        load_image_dataset(tmp_path / "f")
    assert "fox" in _msg(e) and "no PNG or JPEG" in _msg(e)
    (tmp_path / "f" / "fox").rmdir()
    (tmp_path / "f" / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError) as e:
        load_image_dataset(tmp_path / "f")
    assert "broken.png" in _msg(e)
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.fromarray(_gray(0)).save(loose / "x.png")
    with pytest.raises(DataError) as e:
        load_image_dataset(loose)
    assert "no class sub-folders" in _msg(e)
    make_folder(tmp_path / "one", classes=("only",), per_class=5)
    with pytest.raises(DataError) as e:
        load_image_dataset(tmp_path / "one")
    assert "at least 2" in _msg(e)


def test_paths_and_names(tmp_path, monkeypatch):
    with pytest.raises(DataError) as e:
        load_image_dataset(tmp_path / "nope")
    assert "nope" in _msg(e) and "not found" in _msg(e)
    with pytest.raises(DataError) as e:
        load_image_dataset("imagenet-9000")
    assert "digits" in _msg(e) and ".npz" in _msg(e)
    make_folder(tmp_path / "f", per_class=3)
    assert load_image_dataset("f", data_dir=tmp_path).num_classes == 3  # a relative path inside data_dir
    monkeypatch.chdir(tmp_path)
    assert load_image_dataset("f").data_dir == str((tmp_path / "f").resolve())


# ---------------------------------------------------------------- .npz


def test_npz_layouts_and_test_arrays(tmp_path):
    r = np.random.RandomState(0)
    x = r.randint(0, 256, (30, 6, 6, 3)).astype(np.uint8)  # NHWC
    y = np.arange(30) % 3
    np.savez(tmp_path / "a.npz", x_train=x, y_train=y, x_test=x[:5], y_test=y[:5], class_names=np.array(["r", "g", "b"]))
    ds = load_image_dataset(tmp_path / "a.npz")
    assert (len(ds.train), len(ds.test), ds.channels, ds.size, ds.class_names) == (30, 5, 3, 6, ["r", "g", "b"])
    raw = ds.train.x.numpy() * np.array(ds.std).reshape(1, 3, 1, 1) + np.array(ds.mean).reshape(1, 3, 1, 1)
    assert np.allclose(raw, x.transpose(0, 3, 1, 2) / 255.0, atol=1e-5)
    # NCHW floats, gray (N, H, W), no test arrays: 20 % of each class held out
    np.savez(tmp_path / "b.npz", x_train=r.rand(40, 1, 5, 5).astype(np.float32), y_train=np.arange(40) % 4)
    np.savez(tmp_path / "c.npz", x_train=r.rand(40, 5, 5), y_train=(np.arange(40) % 4).astype(np.float64))
    for name in ("b.npz", "c.npz"):
        ds = load_image_dataset(tmp_path / name, valid_fraction=0.25, limit=24)
        assert (ds.channels, ds.size, ds.num_classes) == (1, 5, 4)
        assert (len(ds.train), len(ds.valid), len(ds.test)) == (18, 6, 8)


@pytest.mark.parametrize(
    "arrays, expected",
    [
        (dict(x_train=np.zeros((4, 5, 5)), y_train=np.array([0, 1, -1, 0])), "label -1"),
        (dict(x_train=np.zeros((4, 5, 5)), y_train=np.array([0, 1, 2, 0]), class_names=np.array(["a", "b"])), "label 2"),
        (dict(x_train=np.zeros((4, 5, 5)), y_train=np.array([0, 1, 1, 0]), x_test=np.zeros((2, 5, 5)), y_test=np.array([0, 5])), "y_test has label 5"),
        (dict(x_train=np.zeros((4, 5, 5)), y_train=np.array([0, 1, 1])), "3 labels for 4 images"),
        (dict(x_train=np.zeros((4, 5, 5)), y_train=np.array([0, 1, 1, 0]), x_test=np.zeros((2, 5, 5))), "without y_test"),
        (dict(X=np.zeros((4, 5, 5)), Y=np.zeros(4)), "no 'x_train'"),
        (dict(x_train=np.zeros((4, 5, 5)), y_train=np.array([0, 0.5, 1, 0])), "non-integer"),
        (dict(x_train=np.full((4, 5, 5), 300, dtype=np.int32), y_train=np.array([0, 1, 1, 0])), "0..255"),
        (dict(x_train=np.zeros((4, 5)), y_train=np.array([0, 1, 1, 0])), "shape (4, 5)"),
    ],
)
def test_npz_errors_name_the_key(tmp_path, arrays, expected):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError) as e:
        load_image_dataset(tmp_path / "d.npz")
    msg = _msg(e)
    assert expected in msg and "d.npz" in msg


def test_npz_that_is_not_one(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 garbage" * 5)
    with pytest.raises(DataError) as e:
        load_image_dataset(tmp_path / "bad.npz")
    assert "bad.npz" in _msg(e)
    np.savez(tmp_path / "obj.npz", x_train=np.array([{"a": 1}] * 4, dtype=object), y_train=np.zeros(4))
    with pytest.raises(DataError) as e:
        load_image_dataset(tmp_path / "obj.npz")
    assert "x_train" in _msg(e) and "pickle" in _msg(e)


# ---------------------------------------------------------------- Python objects


def test_as_dataset_from_arrays_and_tensors_agree():
    r = np.random.RandomState(1)
    x = r.randint(0, 256, (50, 8, 8, 3)).astype(np.uint8)
    y = np.arange(50) % 5
    a = as_dataset((x, y), seed=3, valid_fraction=0.2)
    b = as_dataset((torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255, torch.from_numpy(y)), seed=3, valid_fraction=0.2)
    assert (a.channels, a.size, a.num_classes, len(a.train), len(a.valid), len(a.test)) == (3, 8, 5, 32, 8, 10)
    assert torch.allclose(a.train.x, b.train.x, atol=1e-4) and torch.equal(a.valid.y, b.valid.y)
    c = as_dataset((x, y), test=(x[:7], y[:7]), input_size=16, class_names=list("vwxyz"))
    assert (len(c.train), len(c.test), c.size, c.class_names) == (50, 7, 16, list("vwxyz"))
    assert as_dataset(a) is a and as_dataset("digits", limit=20).name == "digits"


class _Items(torch.utils.data.Dataset):
    def __init__(self, images, labels, classes=None):
        self.images, self.labels = images, labels
        if classes:
            self.classes = classes

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


def test_as_dataset_from_a_map_style_dataset():
    r = np.random.RandomState(2)
    arrays = [r.randint(0, 256, (9, 9), dtype=np.uint8) for _ in range(20)]
    labels = [i % 2 for i in range(20)]
    pil = as_dataset(_Items([Image.fromarray(a) for a in arrays], labels, classes=["even", "odd"]))
    ten = as_dataset(_Items([torch.from_numpy(a)[None].float() / 255 for a in arrays], [torch.tensor(v) for v in labels]))
    npy = as_dataset(_Items(arrays, labels))
    assert pil.class_names == ["even", "odd"] and ten.class_names == ["0", "1"]
    for ds in (pil, ten, npy):
        assert (ds.channels, ds.size, len(ds.train), len(ds.test)) == (1, 9, 16, 4)
    assert torch.allclose(pil.train.x, ten.train.x, atol=1e-4) and torch.allclose(pil.train.x, npy.train.x, atol=1e-4)
    # differing sizes: an error naming both, or resized with input_size
    mixed = _Items([torch.rand(3, 9, 9)] * 5 + [torch.rand(3, 11, 11)] * 5, [0, 1] * 5)
    with pytest.raises(DataError) as e:
        as_dataset(mixed)
    assert "9x9" in _msg(e) and "11x11" in _msg(e)
    assert as_dataset(mixed, input_size=10).train.x.shape[1:] == (3, 10, 10)
    with pytest.raises(DataError) as e:
        as_dataset(_Items([torch.rand(1, 4, 4)] * 5, [0, 1, 2, 3, 9]), num_classes=4)
    assert "label 9" in _msg(e)
    with pytest.raises(DataError):
        as_dataset(42)


def test_registry_names_resolve_like_data_set_names():
    x, y = torch.rand(40, 1, 6, 6), torch.arange(40) % 4
    name = register_dataset((x, y))
    assert name.startswith("memory:") and name in registered_datasets()
    ds = load_image_dataset(name, seed=1, valid_fraction=0.25, limit=20, input_size=8)
    assert (ds.name, len(ds.train), len(ds.valid), len(ds.test), ds.size) == (name, 15, 5, 8, 8)
    again = load_image_dataset(name, seed=1, valid_fraction=0.25, limit=20, input_size=8)
    assert torch.equal(ds.valid.x, again.valid.x)
    other = register_dataset(as_dataset((x, y), valid_fraction=0.5))
    assert other != name and len(load_image_dataset(other).valid) == 16
    unregister_dataset(name)
    with pytest.raises(DataError) as e:
        load_image_dataset(name)
    assert name in _msg(e) and "not registered" in _msg(e)


def test_holdout_is_stratified_and_fixed():
    y = np.array([0] * 10 + [1] * 5 + [2] * 1)
    keep, held = holdout(y, 0.2)
    assert np.bincount(y[held], minlength=3).tolist() == [2, 1, 0]
    assert sorted(keep.tolist() + held.tolist()) == list(range(16))
    assert np.array_equal(held, holdout(y, 0.2)[1])


def test_builtin_input_size_resizes(monkeypatch):
    ds = load_image_dataset("digits", limit=10, input_size=16)
    assert ds.size == 16 and ds.train.x.shape == (10, 1, 16, 16)
    with pytest.raises(DataError):
        load_image_dataset("digits", input_size=0)


def test_dataset_name_for_configs(tmp_path, monkeypatch):
    from nasforge.data import dataset_name

    make_folder(tmp_path / "f", per_class=3)
    monkeypatch.chdir(tmp_path)
    assert dataset_name("digits") == "digits" and dataset_name("ptb") == "ptb"
    assert dataset_name("f") == str((tmp_path / "f").resolve())
    name = dataset_name((np.zeros((10, 4, 4), np.uint8), np.arange(10) % 2))
    assert name.startswith("memory:") and load_image_dataset(name).num_classes == 2
