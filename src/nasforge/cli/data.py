"""``nasforge data download cifar10 [--root DIR]`` and ``nasforge data info NAME [--data-dir DIR]``."""

from __future__ import annotations

import argparse
from collections import Counter

from nasforge.errors import DataError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="download data sets and show what a data set holds")
    acts = p.add_subparsers(dest="data_command", metavar="ACTION")

    d = acts.add_parser("download", help="download CIFAR-10 (python version), verify its MD5 and extract it")
    d.add_argument("name", choices=["cifar10"], help="data set to download")
    d.add_argument("--root", default=None, help="folder to put cifar-10-batches-py/ in (default ~/.nasforge/data/cifar10)")
    d.add_argument("--url", default=None, help="tarball URL (default: the official one)")
    d.add_argument("--md5", default=None, help="expected MD5 of the tarball (default: the official one)")
    d.add_argument("--force", action="store_true", help="extract again even if the folder is there (a verified tarball in ROOT is reused)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.set_defaults(func=run_download)

    i = acts.add_parser("info", help="print splits, shapes and classes of a data set")
    i.add_argument("name", help="digits, fashion-mnist, cifar10, ptb, a word corpus folder, an image folder or an .npz file")
    i.add_argument("--data-dir", default=None, help="folder holding the files (default: $NASFORGE_DATA/<dataset>)")
    i.set_defaults(func=run_info)

    p.set_defaults(func=lambda args: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def run_download(args: argparse.Namespace) -> int:
    from nasforge.data.download import OFFICIAL_MD5, OFFICIAL_URL, download_cifar10
    from nasforge.data.paths import user_data_root

    root = args.root or str(user_data_root() / "cifar10")
    url = args.url or OFFICIAL_URL
    md5 = args.md5 or (OFFICIAL_MD5 if args.url is None else None)
    if md5 is None:
        raise DataError("--url given without --md5: pass the MD5 of that tarball so the download can be verified")
    folder = download_cifar10(root, url=url, md5=md5, progress=not args.no_progress, force=args.force)
    print(f"cifar10 is in {folder}")
    print(f"use it with --data cifar10 --data-dir {folder} (or set NASFORGE_DATA to a folder holding cifar10/)")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from nasforge.data.images import ALIASES, IMAGE_DATASETS, load_image_dataset

    from pathlib import Path

    from nasforge.data.folder import is_image_folder

    key = ALIASES.get(args.name.lower(), args.name.lower())
    own = Path(args.name).suffix.lower() == ".npz" or (Path(args.name).is_dir() and is_image_folder(Path(args.name)))
    if key in IMAGE_DATASETS or own:
        ds = load_image_dataset(args.name if own else key, args.data_dir)
        print(ds.summary())
        print(f"files: {ds.data_dir or '(embedded in scikit-learn)'}")
        print(f"normalisation: mean {_fmt(ds.mean)}, std {_fmt(ds.std)}")
        for split_name in ("train", "test"):
            pair = getattr(ds, split_name)
            counts = Counter(pair.y.tolist())
            per = ", ".join(f"{ds.class_names[c]}={counts.get(c, 0)}" for c in range(ds.num_classes))
            print(f"{split_name}: {len(pair)} images of shape {tuple(pair.x.shape[1:])}; {per}")
        return 0
    from nasforge.data.text import load_corpus

    c = load_corpus(args.name, args.data_dir)
    print(c.summary())
    print(f"files: {c.path}")
    print(f"first words: {' '.join(c.dictionary.idx2word[:10])}")
    return 0


def _fmt(v) -> str:
    return "(" + ", ".join(f"{x:.4f}" for x in v) + ")"
