"""One process fills a cache entry while the others wait, then read what it made.

The kit's caches (SynthPEDES draws, pretrained towers, key phrases, zoo
models) are filled on first use and written atomically, so a reader never sees
half a file. Atomic writes alone still let two processes that start together
both do the (minutes of) work. :func:`fill_lock` adds a lock file beside the
entry (``<entry>.lock``, via the ``filelock`` library): the caller checks for
the entry, and when it is missing takes the lock, checks again (another process
may have filled it meanwhile) and only then fills it::

    if not ready(path):
        with fill_lock(path, "the pretrained towers"):
            if not ready(path):
                fill(path)
    return load(path)

A process that dies holding the lock releases it (the operating system drops
its file lock), so a crash never blocks the next run.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from tireid_lite.errors import TIReIDError

NOTICE_AFTER_S = 0.5  # wait this long in silence before saying that another process is filling the entry


@contextlib.contextmanager
def fill_lock(entry: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Hold ``<entry>.lock`` for the block; say once on stderr when another process holds it."""
    entry = Path(entry)
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(entry) + ".lock")
        try:
            lock.acquire(timeout=NOTICE_AFTER_S)
        except Timeout:
            print(f"waiting for another process to finish {what} in {entry}", file=sys.stderr, flush=True)
            lock.acquire()
    except OSError as err:
        raise TIReIDError(
            f"cannot lock {entry}.lock to fill the cache ({err.strerror or err}); check that {entry.parent} "
            "is writable, or set TIREID_CACHE to another folder"
        ) from None
    try:
        yield
    finally:
        lock.release()
