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
    # a pass's worth of 12 MB activations (and, with "big", 48 MB ones: above glibc's
    # largest mmap threshold), all freed at the end (like forward + backward)
    n = 12_000_000 if "big" in sys.argv else 3_000_000
    xs = [torch.ones(n) for _ in range(20)]
    del xs
churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    churn()
print(int(tuned), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(mode: str, *extra: str, **env) -> tuple[bool, int]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    e.update(OMP_NUM_THREADS="1", **env)
    out = subprocess.run([sys.executable, "-c", PROBE, mode, *extra], capture_output=True, text=True, check=True, env=e).stdout.split()
    return bool(int(out[0])), int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tuned_malloc_reuses_freed_memory_instead_of_faulting_it_back():
    tuned, faults = _probe("tune")
    if not tuned:
        pytest.skip("no glibc mallopt here")
    # 10 rounds of 240 MB = 586k pages. glibc's defaults hand freed memory back whenever
    # the heap top is free and fault it in again (measured 61k-586k faults, depending on
    # where small allocations land); tuned, every round after the first reuses the heap
    # (measured 3k-21k).
    pages = 10 * 20 * 3_000_000 * 4 // 4096
    assert faults < 0.05 * pages


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_blocks_above_the_mmap_threshold_are_reused_too():
    # 48 MB blocks (DARTS training at batch 96 has 54 MB activations) are above the largest
    # M_MMAP_THRESHOLD glibc allows (32 MiB); with M_MMAP_MAX = 0 they come from the heap
    # and are reused instead of being mapped and faulted in afresh every time (untuned:
    # 10 rounds x 20 x 11.7k pages = 2.3 M faults)
    tuned, faults = _probe("tune", "big")
    if not tuned:
        pytest.skip("no glibc mallopt here")
    pages = 10 * 20 * 12_000_000 * 4 // 4096
    assert faults < 0.05 * pages


def test_opt_out_by_environment():
    tuned, _ = _probe("tune", NASFORGE_MALLOC="default")
    assert not tuned
    tuned, _ = _probe("tune", MALLOC_TRIM_THRESHOLD_="1000000")  # the user's own glibc tunables win
    assert not tuned
