"""Keep freed activation memory in the process (glibc ``mallopt``), so passes stop page-faulting.

PyTorch's CPU tensors come from ``malloc``. With glibc's defaults a freed block at the top
of the heap is handed back to the kernel once more than ``M_TRIM_THRESHOLD`` (dynamically
about twice the largest freed mmapped block, i.e. tens of MB) is free, so every forward
and backward of a search step takes its gigabytes of activations from *fresh* pages: a
page fault and a page zeroing per 4 KiB. A second-order DARTS step at the paper setting
touched ≈ 10 GB of fresh pages this way (2.6 M minor faults for 3 steps); the passes at
``w±`` right after a large pass ran ≈ 1.7× slower than the same pass without it
(``benchmarks/search_step.py``).

:func:`tune_malloc` raises ``M_MMAP_THRESHOLD`` to its maximum (32 MiB on 64-bit: every
activation tensor of the search comes from the heap, not a private ``mmap``),
``M_TRIM_THRESHOLD`` to "never", and sets ``M_MMAP_MAX`` to 0 so that blocks above
32 MiB come from the heap too (final-network training at DARTS's batch 96 has 54 MiB
activations at 32×32; each was a fresh ``mmap``, 13,800 page faults a tensor: a ReLU
of one took 21.8 ms, 8.3 ms from the heap; glibc still maps memory when a thread's
arena cannot grow): the effect for which CPU tuning guides for PyTorch
suggest preloading jemalloc or tcmalloc, without a library to install. Memory freed by one pass is then reused by the next; the
process keeps its peak RSS until it exits (the peak itself does not grow). Setting only
the trim threshold would switch glibc's dynamic mmap threshold off and make things far
worse (70 M faults), hence both.

It is a no-op off glibc, and when ``NASFORGE_MALLOC=default`` (or when glibc malloc
tunables, ``MALLOC_*_`` or ``GLIBC_TUNABLES=glibc.malloc.*``, are set in the environment,
which then win).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
#: glibc's upper limit for M_MMAP_THRESHOLD on 64-bit (4 MiB * sizeof(long))
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
_done: bool | None = None


def tune_malloc() -> bool:
    """Apply the settings above once per process; True when they are in effect."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux") or os.environ.get("NASFORGE_MALLOC", "") == "default":
        return False
    if any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ) or "malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done = (
        bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX))
        and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
        and bool(mallopt(M_MMAP_MAX, 0))
    )
    return _done
