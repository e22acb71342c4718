"""The small files of a run folder, each written so that a crash never leaves half of one.

``log.csv`` grows a row every ``train.log_every`` steps (:func:`append_log`)
and is cut back to the restored step on resume (:func:`trim_log`);
``metrics.json`` and ``test_metrics.json`` are replaced whole
(:func:`write_json`). Taught in ``02_baseline_irra``.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any


def copy_file(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` through a temporary file (``target`` appears whole or not at all)."""
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    tmp.write_bytes(source.read_bytes())
    os.replace(tmp, target)


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as indented JSON, replacing ``path`` whole."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def append_log(path: Path, row: dict[str, Any], columns: list[str] | None) -> list[str]:
    """Append ``row`` to the CSV log at ``path`` (the header first when the file is new or empty).

    ``columns`` are the log's columns so far (``None``: take the row's); a
    value whose column is not among them is left out. Returns the columns.
    """
    if columns is None:
        columns = list(row)
    write_header = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        if write_header:
            writer.writeheader()
        writer.writerow(row)
    return columns


def trim_log(path: Path, step: int) -> list[str] | None:
    """Drop the rows of the CSV log at ``path`` past ``step`` (written before a crash); returns its
    columns, or ``None`` when there is no log (an empty one is removed)."""
    if not path.exists():
        return None
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames
        rows = [row for row in reader if row.get("step", "").isdigit() and int(row["step"]) <= step]
    if not columns:
        path.unlink()
        return None
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return list(columns)


TENSORBOARD_DIR = "tensorboard"  # beside log.csv in the run folder


class TensorBoardScalars:
    """TensorBoard scalars in ``<run>/tensorboard/`` beside log.csv, when the ``tensorboard`` package is
    installed (an optional dependency: without it nothing is written and nothing is said).

    ``purge_step`` drops events at or past it that a crashed run wrote, as :func:`trim_log` does for
    the CSV. The writer opens on the first scalar, so a run that logs nothing leaves no folder.
    """

    def __init__(self, run_dir: Path, purge_step: int | None = None) -> None:
        self.log_dir = Path(run_dir) / TENSORBOARD_DIR
        self.purge_step = purge_step
        self._writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed
            self._writer_class = None
        else:
            self._writer_class = SummaryWriter

    @property
    def available(self) -> bool:
        return self._writer_class is not None

    def add(self, prefix: str, values: dict[str, Any], step: int) -> None:
        """Write each number of ``values`` as the scalar ``<prefix>/<name>`` at ``step``."""
        if self._writer_class is None:
            return
        if self._writer is None:
            self._writer = self._writer_class(str(self.log_dir), purge_step=self.purge_step)
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(f"{prefix}/{name}", float(value), step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
