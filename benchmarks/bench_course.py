"""Benchmark: the course (every notebook, cpu profile) on a cold cache, then again on the warm one.

DESIGN.md's budgets: ``make course`` (all eleven notebooks, cold cache) within
20 minutes of wall time, each notebook within 4 minutes with a warm cache, and
the course's peak memory within 4 GiB. This runs the course the way ``make
course`` does (:func:`tireid_lite.course.run_course`, papermill, the default
parameters) twice on one fresh ``TIREID_CACHE``: the first run builds every
SynthPEDES draw, warm start and trained model it needs; the second finds them
cached; both with ``--jobs 2`` as ``make course`` runs it (two kernels at a
time after the shared dataset and warm start are built). Memory: the summed
resident size of the kernels running at once, sampled every half second
(``peak_course_rss_mib``, the budget's figure), and the largest single kernel
(``peak_kernel_rss_mib``); ``peak_rss_raised_by`` names the notebooks whose
kernel raised that single-kernel peak as the course went. The load average at the start and the
end is recorded: timings on a shared machine are upper bounds.

``--quick`` runs only ``00_welcome`` and ``01_data``. Run alone:
``python benchmarks/bench_course.py [--quick]`` (about half an hour in full).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from run_all import budget_met

ROOT = Path(__file__).resolve().parent.parent
BUDGET_TEXT = (
    "make course (all eleven notebooks, cold cache) <= 20 min wall; each notebook <= 4 min with a warm cache; "
    "peak memory of the course <= 4 GiB."
)
QUICK_NOTEBOOKS = ("00_welcome", "01_data")


def _children_peak_mib() -> float:
    """The largest resident size of any finished child process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


JOBS = 2  # as make course runs it


class TreeMemory:
    """The summed resident memory of this process's descendants (the notebook kernels running side by side
    and what they start), sampled every ``every`` seconds on a thread; ``peak_mib`` the largest sum seen."""

    def __init__(self, every: float = 0.5) -> None:
        import threading

        self.every, self.peak_mib = every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(self.every):
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:  # a process that ended meanwhile
                    pass
            self.peak_mib = max(self.peak_mib, total / 2**20)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _course(notebooks: list[Path], runs_dir: Path, peaks: dict[str, float]) -> tuple[float, dict[str, float]]:
    """Run the course once; ``peaks`` gets, for each notebook whose kernel raised the children's peak
    resident size, the new peak in MiB (a kernel ends with its notebook, so it is counted then)."""
    from tireid_lite.course import run_course

    def echo(message: str, **_: object) -> None:
        print(message, flush=True)
        words = message.split()
        if len(words) >= 3 and words[0].endswith(":") and words[1] in ("ok", "failed"):  # "  NN_slug: ok in ..."
            peak = _children_peak_mib()
            if peak > max(peaks.values(), default=0.0):
                peaks[words[0].removesuffix(":")] = peak

    start = time.perf_counter()
    _, runs = run_course(runs_dir, notebooks, echo=echo, jobs=JOBS)
    total = time.perf_counter() - start
    failed = [f"{run.name}: {run.error}" for run in runs if run.status != "ok"]
    if failed:
        raise RuntimeError("the course failed, so its times mean nothing:\n" + "\n".join(failed))
    return total, {run.name: run.seconds for run in runs}


def main(quick: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="tireid-bench-course-") as folder:
        os.environ["TIREID_CACHE"] = str(Path(folder) / "cache")  # cold: nothing drawn or trained yet
        os.environ["TIREID_PROGRESS"] = "0"
        from tireid_lite.course import list_notebooks

        notebooks = list_notebooks()
        if quick:
            notebooks = [nb for nb in notebooks if nb.stem in QUICK_NOTEBOOKS]
        load_start = round(os.getloadavg()[0], 2)
        peaks: dict[str, float] = {}
        with TreeMemory() as memory:
            cold_total, cold = _course(notebooks, Path(folder) / "cold", peaks)
            warm_total, warm = _course(notebooks, Path(folder) / "warm", peaks)
        load_end = round(os.getloadavg()[0], 2)
    peak_mib = _children_peak_mib()
    figures: dict[str, float | int | str] = {
        "notebooks": len(notebooks),
        "jobs": JOBS,
        "load_avg_1min_start": load_start,
        "cold_total_min": round(cold_total / 60, 2),
        "warm_total_min": round(warm_total / 60, 2),
        "warm_slowest_notebook": max(warm, key=warm.get),
        "warm_max_s": round(max(warm.values()), 1),
        "peak_kernel_rss_mib": round(peak_mib),
        "peak_course_rss_mib": round(memory.peak_mib),  # the kernels running side by side, summed
        # the notebooks (cold run first) whose kernel raised the peak, with the peak they reached
        "peak_rss_raised_by": ", ".join(f"{name[:2]} {round(mib):,}" for name, mib in peaks.items()) or "-",
    }
    for name in cold:
        figures[f"{name[:2]}_cold_s"] = round(cold[name], 1)
        figures[f"{name[:2]}_warm_s"] = round(warm[name], 1)
    figures["load_avg_1min_end"] = load_end
    limits = {"warm_max_s": {"max": 240}, "peak_course_rss_mib": {"max": 4096}}
    if not quick:
        limits["cold_total_min"] = {"max": 20}
    return {
        "name": "course",
        "description": "every course notebook through papermill on a fresh cache (cold), then again (warm)",
        "figures": figures,
        "budget": {"text": BUDGET_TEXT, "limits": limits},
        "met": budget_met(figures, limits),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only " + " and ".join(QUICK_NOTEBOOKS))
    args = parser.parse_args()
    print(json.dumps(main(quick=args.quick), indent=2))
