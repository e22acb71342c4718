"""nbval settings for the course notebooks.

Standard error (library warnings, progress bars) differs between machines and
runs, so it is not compared; standard output, results and errors are.

The instructors' solutions (``notebooks/solutions/``) are not collected: their
committed outputs come from trainings that take minutes each, too long for
nbval's re-execution in ``make test``; ``tests/test_solutions.py`` runs every
one of them with ``quick=True`` instead.
"""

from __future__ import annotations

collect_ignore_glob = ["solutions/*"]


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        parent = getattr(item, "parent", None)
        skip = getattr(parent, "skip_compare", None)
        if skip is not None and "stderr" not in skip:
            parent.skip_compare = tuple(skip) + ("stderr",)
