"""Download the official CIFAR-10 python tarball, verify its MD5, extract it safely.

The URL and MD5 are the ones on https://www.cs.toronto.edu/~kriz/cifar.html ("CIFAR-10
python version, 163 MB, c58f30108f718f92721af3b95e74349a"). Every step is atomic: the
tarball is streamed to a temporary file in ``root`` and renamed only after its MD5
matches (a mismatch removes it and raises :class:`~nasforge.errors.DataError`); it is
extracted into a temporary folder that is renamed to ``root/cifar-10-batches-py`` at the
end. Members with absolute paths, ``..``, links or device files are refused.
Code never downloads at test time; this is only run by ``nasforge data download``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from nasforge.data.cifar import BATCH_FOLDER, is_batch_folder
from nasforge.errors import DataError

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
TARBALL = "cifar-10-python.tar.gz"
_CHUNK = 1 << 20


def md5sum(path: str | os.PathLike) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(url: str, dest_dir: Path, progress: bool, timeout: float) -> tuple[Path, str]:
    """Stream ``url`` into a temporary file in ``dest_dir``; return it and its MD5."""
    fd, tmp = tempfile.mkstemp(prefix=f".{TARBALL}.", suffix=".part", dir=dest_dir)
    h = hashlib.md5()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                resp = urllib.request.urlopen(url, timeout=timeout)
            except urllib.error.HTTPError as e:
                raise DataError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
            except (urllib.error.URLError, OSError, ValueError) as e:
                reason = getattr(e, "reason", None) or e
                raise DataError(f"cannot download {url}: {reason}") from None
            with resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                bar = None
                if progress:
                    from tqdm import tqdm

                    bar = tqdm(total=total, unit="B", unit_scale=True, desc="cifar10")
                try:
                    while True:
                        chunk = resp.read(_CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        h.update(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                except OSError as e:
                    raise DataError(f"download of {url} broke off: {e}") from None
                finally:
                    if bar is not None:
                        bar.close()
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp), h.hexdigest()


def _check_member(m: tarfile.TarInfo) -> None:
    p = PurePosixPath(m.name)
    if p.is_absolute() or ".." in p.parts or m.name.startswith(("/", "\\")):
        raise DataError(f"unsafe path in the CIFAR-10 archive: {m.name!r}")
    if not (m.isfile() or m.isdir()):
        raise DataError(f"unsupported member in the CIFAR-10 archive (link or device): {m.name!r}")


def safe_extract(tar_path: Path, dest: Path) -> None:
    """Extract regular files and folders of ``tar_path`` into ``dest``, refusing anything unsafe."""
    try:
        with tarfile.open(tar_path, "r:*") as tf:
            members = tf.getmembers()
            for m in members:
                _check_member(m)
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tf.extractall(dest, members=members, **kwargs)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"cannot extract {tar_path}: {e}") from None


def download_cifar10(
    root: str | os.PathLike,
    url: str = OFFICIAL_URL,
    md5: str | None = OFFICIAL_MD5,
    *,
    progress: bool = True,
    force: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Fetch CIFAR-10 into ``root/cifar-10-batches-py`` and return that folder.

    An existing complete folder is kept unless ``force`` (extract again); a tarball
    already in ``root`` whose MD5 matches is reused instead of downloaded again. ``md5=None`` skips the check
    (not recommended).
    """
    root = Path(os.path.expanduser(str(root)))
    target = root / BATCH_FOLDER
    if is_batch_folder(target) and not force:
        return target
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not os.access(root, os.W_OK):
            raise PermissionError(13, "not writable")
    except OSError as e:
        raise DataError(f"cannot write to {root}: {e.strerror or e}; choose another --root") from None
    tarball = root / TARBALL
    if not (tarball.is_file() and md5 is not None and md5sum(tarball) == md5.lower()):
        try:
            tmp, got = _fetch(url, root, progress, timeout)
            if md5 is not None and got != md5.lower():
                tmp.unlink(missing_ok=True)
                raise DataError(f"MD5 of {url} is {got}, expected {md5}; the download was removed")
        except BaseException:
            if created and not any(root.iterdir()):
                root.rmdir()  # leave no empty folder behind
            raise
        os.replace(tmp, tarball)
    work = Path(tempfile.mkdtemp(prefix=".cifar10-extract.", dir=root))
    try:
        safe_extract(tarball, work)
        extracted = work / BATCH_FOLDER
        if not is_batch_folder(extracted):
            raise DataError(f"{tarball} has no {BATCH_FOLDER}/ folder with data_batch_* and test_batch")
        old = None
        if target.exists():
            old = root / f".{BATCH_FOLDER}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(extracted, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
