"""Benchmark: two ``tireid train --profile cpu`` runs at once, the towers' warm start included.

Each run is the ``tireid`` command in its own process, on its own cold tower
cache (so each one makes its attribute pretraining; the SynthPEDES draws are
made once beforehand and shared, since drawing them is not what is measured).
One run alone is timed first, then two started together; the figure that
matters is ``pair_over_alone``: the wall time of the pair over the time of one
run alone. Two runs' work on the same cores should take about twice one run's
(at most 2.2 here); before the kit made OpenMP's idle threads sleep early
(:mod:`tireid_lite.threads`) it was 7-18 times.

``--quick`` uses 40 pretraining steps and a tenth of an epoch; the full size is
the issue's setting: 150 pretraining steps and the cpu profile's epoch.
Run alone: ``python benchmarks/bench_concurrent_runs.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run_all import budget_met

ROOT = Path(__file__).resolve().parent.parent
BUDGET_TEXT = (
    "No budget in DESIGN.md; the kit must stay fast with several runs at once: two cpu-profile runs "
    "started together (warm start included) take at most about twice one run's time (read as <= 2.2x)."
)


def _overrides(quick: bool) -> list[str]:
    steps, fraction = (40, 0.1) if quick else (150, 0.5)
    return [f"model.warm_start_steps={steps}", f"train.epoch_fraction={fraction}", "model.method=baseline"]


LIBGOMP_DEFAULT_SPIN = "300000"  # libgomp's spin count when nothing is set: what the kit did before


def _environment(cache: Path, spin: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env.update(TIREID_CACHE=str(cache), TIREID_PROGRESS="0", PYTHONPATH=str(ROOT))
    if spin is not None:
        env["GOMP_SPINCOUNT"] = spin
    return env


def _start(work: Path, name: str, shared_synth: Path, overrides: list[str], spin: str | None = None
           ) -> subprocess.Popen:
    cache = work / f"cache-{name}"
    cache.mkdir()
    (cache / "synth").symlink_to(shared_synth, target_is_directory=True)
    command = [sys.executable, "-m", "tireid_lite.cli", "train", "--profile", "cpu", "--out", str(work / name)]
    for item in overrides:
        command += ["--set", item]
    return subprocess.Popen(command, env=_environment(cache, spin), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _wait(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        output, _ = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"a run failed (exit {process.returncode}):\n{output[-2000:]}")


def _draws(work: Path, overrides: list[str]) -> Path:
    """Make the training and pretraining SynthPEDES draws once, in a shared cache; return its synth folder."""
    shared = work / "shared-cache"
    code = ("from tireid_lite.config import apply_overrides, get_profile\n"
            "from tireid_lite.train.build import dataset_root\n"
            "from tireid_lite.train.warm_start import pretrain_config\n"
            f"cfg = apply_overrides(get_profile('cpu'), {overrides!r})\n"
            "dataset_root(cfg); dataset_root(pretrain_config(cfg))\n")
    subprocess.run([sys.executable, "-c", code], env=_environment(shared), check=True, capture_output=True)
    return shared / "synth"


def _alone_and_pair(work: Path, synth: Path, overrides: list[str], spin: str | None, tag: str) -> tuple[float, float]:
    start = time.perf_counter()
    _wait([_start(work, f"alone{tag}", synth, overrides, spin)])
    alone = time.perf_counter() - start
    start = time.perf_counter()
    _wait([_start(work, f"first{tag}", synth, overrides, spin), _start(work, f"second{tag}", synth, overrides, spin)])
    return alone, time.perf_counter() - start


def main(quick: bool = False, compare: bool = False) -> dict:
    """``compare`` also times the pair with libgomp's default spinning (as before the fix): slow."""
    overrides = _overrides(quick)
    with tempfile.TemporaryDirectory(prefix="tireid-bench-concurrent-") as folder:
        work = Path(folder)
        synth = _draws(work, overrides)
        alone, pair = _alone_and_pair(work, synth, overrides, None, "")
        before = _alone_and_pair(work, synth, overrides, LIBGOMP_DEFAULT_SPIN, "-default") if compare else None
    figures = {
        "warm_start_steps": int(overrides[0].split("=")[1]),
        "epoch_fraction": float(overrides[1].split("=")[1]),
        "cores": os.cpu_count() or 0,
        "alone_s": round(alone, 1),
        "pair_s": round(pair, 1),
        "pair_over_alone": round(pair / alone, 2),
    }
    if before is not None:
        figures.update(default_spin_alone_s=round(before[0], 1), default_spin_pair_s=round(before[1], 1),
                       default_spin_pair_over_alone=round(before[1] / before[0], 2))
    limits = {"pair_over_alone": {"max": 2.2}}
    return {
        "name": "concurrent_runs",
        "description": "one cpu-profile run (warm start on a cold cache included) alone, then two at once",
        "figures": figures,
        "budget": {"text": BUDGET_TEXT, "limits": limits},
        "met": budget_met(figures, limits),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 pretraining steps, a tenth of an epoch")
    parser.add_argument("--compare", action="store_true", help="also time libgomp's default spinning (slow)")
    args = parser.parse_args()
    print(json.dumps(main(quick=args.quick, compare=args.compare), indent=2))
