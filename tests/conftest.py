import os
from pathlib import Path

import pytest
import torch

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
