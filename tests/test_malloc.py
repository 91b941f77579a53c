"""``nasforge.utils.malloc``: freed tensor memory is reused instead of page-faulted back in."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = r"""
import resource, sys, torch
from nasforge.utils.malloc import tune_malloc
tuned = tune_malloc() if sys.argv[1] == "tune" else False
def churn():
    # a pass's worth of 12 MB activations, all freed at the end (like forward + backward)
    xs = [torch.ones(3_000_000) for _ in range(20)]
    del xs
churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    churn()
print(int(tuned), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(mode: str, **env) -> tuple[bool, int]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    e.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env=e).stdout.split()
    return bool(int(out[0])), int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tuned_malloc_reuses_freed_memory_instead_of_faulting_it_back():
    tuned, faults = _probe("tune")
    if not tuned:
        pytest.skip("no glibc mallopt here")
    _, faults_default = _probe("default")
    # 5 rounds of 240 MB: glibc's defaults give the pages back and fault ~58k of them in
    # again per round; tuned, the second and later rounds reuse the heap
    assert faults_default > 50_000
    assert faults < faults_default / 10


def test_opt_out_by_environment():
    tuned, _ = _probe("tune", NASFORGE_MALLOC="default")
    assert not tuned
    tuned, _ = _probe("tune", MALLOC_TRIM_THRESHOLD_="1000000")  # the user's own glibc tunables win
    assert not tuned
