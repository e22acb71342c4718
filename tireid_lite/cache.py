"""Where the kit keeps what it makes once and reuses: ``$TIREID_CACHE`` (default ``~/.cache/tireid-lite``).

Its folders: ``synth/`` (SynthPEDES draws), ``towers/`` (the cpu profile's
pretrained towers), ``key_phrases/`` (parsed captions) and ``models/`` (the
model zoo). Taught in ``00_welcome``.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$TIREID_CACHE`` or ``~/.cache/tireid-lite``."""
    return Path(os.environ.get("TIREID_CACHE") or Path.home() / ".cache" / "tireid-lite").expanduser()
