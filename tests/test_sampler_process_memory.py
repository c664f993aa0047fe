"""keep_freed_memory: glibc keeps freed memory for reuse and numpy asks for no huge pages."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

from mummi.sampler.process_memory import keep_freed_memory

REUSE = """
import numpy as np, resource, sys
from mummi.sampler.process_memory import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    a = np.ones(1 << 23)  # 64 MiB: above glibc's largest own mmap threshold
    del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallopt"), reason="needs glibc's mallopt")
def test_arrays_reuse_freed_memory_instead_of_faulting_it_in_again() -> None:
    env = {**os.environ, "NUMPY_MADVISE_HUGEPAGE": "0"}  # count 4 KiB pages in both runs
    run = [sys.executable, "-c", REUSE]
    faults = {how: int(subprocess.run([*run, how], capture_output=True, text=True, check=True, env=env).stdout)
              for how in ("keep", "default")}  # fmt: skip
    pages = 20 * (1 << 26) // 4096
    assert faults["default"] > pages // 2  # each array's pages faulted in afresh
    assert faults["keep"] < pages // 10  # the first array's pages, reused


def test_numpy_asks_for_no_huge_pages_after_it() -> None:
    keep_freed_memory()
    set_hugepage = np._core.multiarray._set_madvise_hugepage
    assert set_hugepage(False) is False  # returns the setting it replaces
