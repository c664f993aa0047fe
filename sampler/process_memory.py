"""Keep the memory the sampler frees in the process, for its next arrays of the same size.

The sampler allocates and frees arrays of megabytes at every step (each batch's
k-NN lists, the candidate pool when it is laid out again). glibc hands freed
blocks above its mmap threshold (128 KiB, rising to at most 32 MiB) back to the
kernel, so the next such array is faulted in again page by page; and numpy asks
for transparent huge pages for arrays of 4 MiB and more, which on a node whose
memory is fragmented makes the kernel compact memory inside the page fault.
Measured on the 2-core VM these benchmarks run on: a fresh array costs 0.45 ms per
MiB in page faults against 0.03 ms per MiB to rewrite one, and a fresh 64 MiB
array with huge pages asked for took 0.16-0.9 s. :func:`keep_freed_memory` makes
glibc serve large arrays from its heap and keep what is freed, and stops numpy's
huge-page requests. It is called once by the processes that run the sampler (the
coordinator, ``mummi-bench``); the price is that the process keeps its peak heap.
"""

from __future__ import annotations

import ctypes
import logging

import numpy as np

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)
_KEEP_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Keep freed heap memory for reuse and ask for no huge pages; False where glibc's ``mallopt`` is missing."""
    core = getattr(np, "_core", None) or getattr(np, "core", None)  # numpy 2 and 1
    set_hugepage = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    if set_hugepage is not None:
        set_hugepage(False)
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # the C library the process runs on
    if mallopt is None:
        log.debug("no mallopt in the C library: freed memory goes back to the system")
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
