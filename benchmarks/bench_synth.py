"""Benchmark: SynthPEDES generation speed, PNG encoding and file writing included.

Times :func:`tireid_lite.data.synth.generate_synth` writing the default dataset
(800 identities x 4 images at 96x32, 3,200 images, 6,400 captions) into a
temporary directory beside the cached datasets (``$TIREID_CACHE/synth``; choose
another folder with ``--dir``), the same dataset with every detail knob on (the
``detail`` preset: rich vocabulary, train hard negatives, colour swaps, rare
colours, full clutter, distractor people, smaller people, dark and occluded
identities), and, to explain the figure, its stages alone: sampling and drawing
the images, writing the captions, and encoding the PNGs.

Run alone: ``python benchmarks/bench_synth.py [--quick]`` prints the images/s
and the result, and writes ``benchmarks/results/synth.json`` as ``run_all.py``
does (``run_all.py synth`` also refreshes ``RESULTS.md``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from run_all import RESULTS_DIR, budget_met, machine_info, write_atomically
from tireid_lite.data.synth import (
    VIEWS,
    caption_for,
    generate_synth,
    render_scenes,
    sample_identity,
    sample_scene,
)
from tireid_lite.cache import cache_dir
from tireid_lite.data.synth.generate import PNG_LEVEL, WRITER_THREADS
from tireid_lite.data.synth.knobs import preset_knobs
from tireid_lite.data.synth.png import encode_png

FULL = dict(ids_train=500, ids_val=100, ids_test=200, images_per_id=4)  # generate_synth's defaults
QUICK = dict(ids_train=150, ids_val=25, ids_test=25, images_per_id=4)
SIZE = (96, 32)
STAGE_IMAGES = 1024

BUDGET_TEXT = ("SynthPEDES: >= 1,000 images/s generated (PNG encoding and writing included), "
               "with the default knobs and with every detail knob on.")
LIMITS = {"images_per_s": {"min": 1000.0}, "detail_images_per_s": {"min": 1000.0}}
DETAIL = preset_knobs("detail")


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_generation(params: dict, repeats: int, where: Path, knobs: dict | None = None) -> dict[str, float]:
    """Median wall and CPU seconds (all threads of this process) of whole ``generate_synth`` runs into fresh
    directories under ``where``: with the default knobs and with ``knobs``, run alternately so both see the
    same load. CPU seconds depend less on what else the machine runs than wall seconds do."""
    where.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".bench-synth-", dir=where) as tmp:
        runs = iter(range(2 * repeats + 2))  # a fresh output folder for every run
        times: dict[str, list[float]] = {}
        for k in range(repeats + 1):
            for name, extra in (("default", {}), ("knobs", knobs or {})):
                start, cpu = time.perf_counter(), time.process_time()
                generate_synth(Path(tmp) / f"run{next(runs)}", size=SIZE, **params, **extra)
                if k:  # the first round warms up
                    times.setdefault(f"{name}_wall", []).append(time.perf_counter() - start)
                    times.setdefault(f"{name}_cpu", []).append(time.process_time() - cpu)
        return {name: statistics.median(values) for name, values in times.items()}


def time_stages(repeats: int) -> dict[str, float]:
    """Images per second of each stage alone, on ``STAGE_IMAGES`` images."""
    rng = np.random.default_rng(0)
    people = [sample_identity(rng) for _ in range(STAGE_IMAGES)]
    views = [VIEWS[k % len(VIEWS)] for k in range(STAGE_IMAGES)]
    draws = random.Random(0)

    def draw() -> object:
        scenes = [sample_scene(p, v, draws) for p, v in zip(people, views)]
        return [render_scenes(scenes[i : i + 256], SIZE) for i in range(0, STAGE_IMAGES, 256)]

    drawn = draw()
    visible = [v for batch in drawn for v in batch.visible]
    images = np.concatenate([batch.images for batch in drawn])
    parts = np.concatenate([batch.parts for batch in drawn])
    caption_s = median_seconds(
        lambda: [caption_for(p, v, draws, visible=s) for p, v, s in zip(people, views, visible)], repeats
    )
    encode_s = median_seconds(
        lambda: [(encode_png(i, PNG_LEVEL), encode_png(p, PNG_LEVEL)) for i, p in zip(images, parts)], repeats
    )
    return {
        "draw_images_per_s": round(STAGE_IMAGES / median_seconds(draw, repeats)),
        "captions_per_s": round(STAGE_IMAGES / caption_s),
        "encode_images_per_s": round(STAGE_IMAGES / encode_s),
    }


def main(quick: bool = False, where: Path | None = None) -> dict:
    """Time a full generation and its stages.

    The dataset is written where :func:`ensure_synth` keeps it (``$TIREID_CACHE/synth``)
    unless ``where`` says otherwise: creating thousands of small files costs very
    different amounts on different disks, so the figure is taken where it matters.
    """
    params = QUICK if quick else FULL
    repeats = 1 if quick else 3
    images = (params["ids_train"] + params["ids_val"] + params["ids_test"]) * params["images_per_id"]
    target = where or cache_dir() / "synth"
    label = "$TIREID_CACHE/synth" if where is None else str(target)
    timed = time_generation(params, repeats, target, DETAIL)
    seconds, detail_seconds = timed["default_wall"], timed["knobs_wall"]
    figures = {
        "images": images,
        "captions": 2 * images,
        "height": SIZE[0],
        "width": SIZE[1],
        "writer_threads": WRITER_THREADS,
        "generate_median_s": round(seconds, 3),
        "images_per_s": round(images / seconds, 1),
        "detail_generate_median_s": round(detail_seconds, 3),
        "detail_images_per_s": round(images / detail_seconds, 1),
        "images_per_cpu_s": round(images / timed["default_cpu"], 1),
        "detail_images_per_cpu_s": round(images / timed["knobs_cpu"], 1),
        **time_stages(repeats),
        "load_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    return {
        "name": "synth",
        "description": (f"generate_synth into a temporary folder under {label}, with the default knobs and with "
                        "the detail preset (alternate runs), and its stages alone"),
        "figures": figures,
        "budget": {"text": BUDGET_TEXT, "limits": LIMITS},
        "met": budget_met(figures, LIMITS),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller dataset and one repetition")
    parser.add_argument("--dir", type=Path, help="write under this folder (default $TIREID_CACHE/synth)")
    args = parser.parse_args()
    quick = args.quick
    started = time.perf_counter()
    result = main(quick=quick, where=args.dir)
    print(f"SynthPEDES: {result['figures']['images_per_s']:.0f} images/s "
          f"({result['figures']['images']} images in {result['figures']['generate_median_s']} s); "
          f"detail knobs on: {result['figures']['detail_images_per_s']:.0f} images/s")
    print(json.dumps(result, indent=2))
    record = {
        **result,
        "elapsed_s": round(time.perf_counter() - started, 2),
        "quick": quick,
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
    }
    write_atomically(RESULTS_DIR / "synth.json", json.dumps(record, indent=2) + "\n")
