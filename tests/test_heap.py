"""Freed heap memory given back to the system between a run's phases (tireid_lite.heap)."""

from __future__ import annotations

import os
import platform

import numpy as np
import pytest

from tireid_lite.heap import release_freed_memory


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_pages_go_back_to_the_system():
    blocks = [np.ones(8192) for _ in range(4000)]  # 64 KiB each: from the heap, below glibc's mmap threshold
    keeper = np.ones(8192)  # allocated last, kept: the heap cannot shrink from its top
    held = _rss()
    del blocks
    freed_but_kept = _rss()
    assert release_freed_memory() is True
    after = _rss()
    assert held - freed_but_kept < 100 * 2**20  # glibc keeps what is freed below a live block
    assert freed_but_kept - after > 200 * 2**20  # about 250 MiB of freed pages returned
    assert keeper.sum() == 8192  # the live block is intact
