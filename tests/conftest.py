import os
from pathlib import Path

import pytest

# Under pytest-xdist (`make test` runs 2 workers on CI's 2 cores) every worker, and every
# CLI subprocess a test starts, uses one thread: two workers with two threads each
# oversubscribe the cores and run several times slower.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"

import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
else:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture
def shared_data() -> Path:
    """The real data sets (``NASFORGE_DATA``); tests using it skip where it is unset."""
    root = os.environ.get("NASFORGE_DATA")
    if not root:
        pytest.skip("NASFORGE_DATA is not set")
    p = Path(root)
    if not p.is_dir():
        pytest.fail(f"NASFORGE_DATA={root} is not a directory")
    return p
