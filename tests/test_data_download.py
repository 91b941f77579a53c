"""CIFAR-10 downloader against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading

import numpy as np
import pytest

from nasforge.cli import main
from nasforge.data import download_cifar10, load_image_dataset
from nasforge.data.cifar import write_batch, write_meta
from nasforge.data.download import OFFICIAL_MD5, OFFICIAL_URL
from nasforge.errors import DataError


def _tarball(tmp_path, name="cifar-10-python.tar.gz", extra=None):
    """A small tarball shaped like the official one: cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}."""
    src = tmp_path / "src" / "cifar-10-batches-py"
    src.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(1, 6):
        write_batch(src / f"data_batch_{k}", rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 4))
    write_batch(src / "test_batch", rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8), [0, 1, 2])
    write_meta(src / "batches.meta")
    serve = tmp_path / "serve"
    serve.mkdir(exist_ok=True)
    path = serve / name
    with tarfile.open(path, "w:gz") as tf:
        tf.add(src, arcname="cifar-10-batches-py")
        if extra is not None:
            extra(tf)
    return path, hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/serve on 127.0.0.1 at a free port; yields the base URL."""
    (tmp_path / "serve").mkdir(exist_ok=True)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path / "serve"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_official_constants():
    assert OFFICIAL_URL == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert OFFICIAL_MD5 == "c58f30108f718f92721af3b95e74349a"


def test_download_verify_extract_and_load(tmp_path, server):
    path, md5 = _tarball(tmp_path)
    root = tmp_path / "root"
    folder = download_cifar10(root, url=f"{server}/{path.name}", md5=md5, progress=False)
    assert folder == root / "cifar-10-batches-py"
    ds = load_image_dataset("cifar10", root)
    assert (len(ds.train), len(ds.test)) == (20, 3) and ds.test.y.tolist() == [0, 1, 2]
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]  # no temp files left
    # a second call finds the folder and does not download again (the server is not needed)
    path.unlink()
    assert download_cifar10(root, url=f"{server}/{path.name}", md5=md5, progress=False) == folder
    # force re-extracts, reusing the verified tarball already in root (still no download)
    (folder / "data_batch_5").unlink()
    assert download_cifar10(root, url=f"{server}/{path.name}", md5=md5, progress=False, force=True) == folder
    assert (folder / "data_batch_5").is_file() and len(load_image_dataset("cifar10", root).train) == 20


def test_download_bad_md5_removes_the_file(tmp_path, server):
    path, md5 = _tarball(tmp_path)
    root = tmp_path / "root"
    with pytest.raises(DataError, match=f"MD5 of .* is {md5}, expected 0+; the download was removed") as e:
        download_cifar10(root, url=f"{server}/{path.name}", md5="0" * 32, progress=False)
    assert "\n" not in str(e.value)
    assert not root.exists()  # no partial or unverified file (nor the folder it made) left
    root.mkdir()
    with pytest.raises(DataError, match="MD5"):
        download_cifar10(root, url=f"{server}/{path.name}", md5="0" * 32, progress=False)
    assert list(root.iterdir()) == []  # a folder that was there stays, empty


def test_download_unreachable_and_404(tmp_path, server):
    with pytest.raises(DataError, match="cannot download"):
        download_cifar10(tmp_path / "r", url=f"{server}/missing.tar.gz", md5="0" * 32, progress=False)
    assert not (tmp_path / "r").exists()


def test_download_refuses_path_traversal(tmp_path, server):
    def evil(tf):
        data = b"owned"
        info = tarfile.TarInfo("../evil.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))

    path, md5 = _tarball(tmp_path, extra=evil)
    root = tmp_path / "root"
    with pytest.raises(DataError, match="unsafe path in the CIFAR-10 archive: '../evil.txt'"):
        download_cifar10(root, url=f"{server}/{path.name}", md5=md5, progress=False)
    assert not (tmp_path / "evil.txt").exists()
    assert not (root / "cifar-10-batches-py").exists()


def test_download_refuses_links(tmp_path, server):
    def link(tf):
        info = tarfile.TarInfo("cifar-10-batches-py/passwd")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)

    path, md5 = _tarball(tmp_path, extra=link)
    with pytest.raises(DataError, match="link or device"):
        download_cifar10(tmp_path / "root", url=f"{server}/{path.name}", md5=md5, progress=False)


def test_cli_download_and_info(tmp_path, server, capsys):
    path, md5 = _tarball(tmp_path)
    root = tmp_path / "root"
    url = f"{server}/{path.name}"
    assert main(["data", "download", "cifar10", "--root", str(root), "--url", url, "--md5", "1" * 32, "--no-progress"]) == 2
    assert "MD5" in capsys.readouterr().err
    assert main(["data", "download", "cifar10", "--root", str(root), "--url", url]) == 2  # URL without MD5
    assert main(["data", "download", "cifar10", "--root", str(root), "--url", url, "--md5", md5, "--no-progress"]) == 0
    assert "cifar-10-batches-py" in capsys.readouterr().out
    assert main(["data", "info", "cifar10", "--data-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "cifar10: train 20, test 3; 3x32x32, 10 classes" in out and "airplane" in out
    assert main(["data", "info", "digits"]) == 0
    assert "digits: train 1437, test 360" in capsys.readouterr().out
    assert main(["data", "info", "cifar10", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith("nasforge: error: data folder for cifar10 does not exist")
