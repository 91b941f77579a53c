"""Write Fashion-MNIST images as PNG files in one sub-folder per class (for docs/own-data.md).

    python docs/examples/fashion_png_folder.py FASHION_DIR OUT_DIR [--per-class 100]

FASHION_DIR holds ``train-images-idx3-ubyte.gz`` and ``train-labels-idx1-ubyte.gz``; the
first ``--per-class`` training images of each class are written as
``OUT_DIR/<class name>/<index>.png`` (28 x 28, gray). Needs numpy and Pillow only.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot"]


def read_idx(path: Path, header: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fashion_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--per-class", type=int, default=100)
    a = ap.parse_args()
    images = read_idx(a.fashion_dir / "train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    labels = read_idx(a.fashion_dir / "train-labels-idx1-ubyte.gz", 8)
    for c, name in enumerate(CLASSES):
        folder = a.out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(labels == c)[: a.per_class]:
            Image.fromarray(images[i]).save(folder / f"{i:05d}.png")
    print(f"wrote {a.per_class} images of each of {len(CLASSES)} classes to {a.out_dir}")


if __name__ == "__main__":
    main()
