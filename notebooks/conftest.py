"""nbval settings for the course notebooks.

Standard error (library warnings, progress bars) differs between machines and
runs, so it is not compared; standard output, results and errors are.
"""

from __future__ import annotations


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        parent = getattr(item, "parent", None)
        skip = getattr(parent, "skip_compare", None)
        if skip is not None and "stderr" not in skip:
            parent.skip_compare = tuple(skip) + ("stderr",)
