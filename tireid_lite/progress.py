"""Progress bars that stay quiet in logs.

Every long loop in the library goes through :func:`progress`. Bars are shown
only when standard error is a terminal and ``TIREID_PROGRESS`` is not ``0``, so
CI logs, papermill runs and nbval comparisons stay readable. ``TIREID_PROGRESS=1``
forces bars on (for example inside JupyterLab, where stderr is not a terminal).
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm import tqdm  # the text bar: works in terminals and notebooks without ipywidgets

T = TypeVar("T")


def progress_enabled() -> bool:
    """True when progress bars should be drawn (see the module docstring)."""
    flag = os.environ.get("TIREID_PROGRESS", "").strip()
    if flag == "0":
        return False
    if flag == "1":
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress(iterable: Iterable[T] | None = None, **kwargs) -> "tqdm[T]":
    """``tqdm(iterable, **kwargs)``, disabled unless :func:`progress_enabled`."""
    kwargs.setdefault("disable", not progress_enabled())
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)
