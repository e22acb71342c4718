"""Benchmark: the real-data training pipeline at 384x128 from JPEG files, in images per second per worker.

One DataLoader worker is one process with one torch thread, so the pipeline
is timed in this process with ``torch.set_num_threads(1)``: read and decode a
JPEG, flip (with its caption), resize, pad + random crop, to float, normalise,
random erasing (the irra recipe's augmentations), tokenise the caption with
CLIP's tokenizer, then collate batches of 64. The data is an RSTPReid root in
its native layout (JPEG, quality 92) written at 384x128 by the kit's fixture
writer; the CLIP tokenizer is a tiny one in CLIP's format (its speed does not
depend on the vocabulary's size much).

Two decoders are compared on the same files, through the kit's own
:class:`~tireid_lite.data.torch_data.TrainPairsDataset` (``jpeg_decoder``):

* ``pil``: PIL decodes, torchvision's transforms v2 work on the PIL image;
* ``tvio``: ``torchvision.io.decode_jpeg`` to a uint8 tensor and the same v2
  transforms on the tensor: what the kit now does for JPEGs read from disk,
  since it is faster here.

``max_abs_diff`` compares the items of the two for the same seeds: 0 at the
training size (the same decoder library and the same random draws); at other
sizes the resizers differ by rounding (tested in ``tests/test_jpeg_loading.py``).

How many workers one GPU needs follows from a step rate *estimated* for
ViT-B/16 + CLIP text at batch 64 in bf16 (no GPU was available to measure it):
FLOPs per training sample = 3 x forward; forward = 2 x parameters x tokens per
tower plus attention (4 x T^2 x W per layer), IRRA's two text passes, its
cross-modal module and MLM logits; the step rate at a stated utilisation
(MFU) of a GPU's dense bf16 peak. The arithmetic is in the figures.

Budget: none in DESIGN.md ("loading a batch must not be a visible share of a
step"); checked as: the workers one A100 needs at the estimated rate are at
most 8 (IRRA's num_workers).

Run alone: ``python benchmarks/bench_loader.py [--quick]`` prints the result.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from run_all import budget_met
from torch.utils.data import default_collate

from tireid_lite.config import apply_overrides, load_recipe
from tireid_lite.data.build import build_data
from tireid_lite.data.fixtures import write_fixture
from tireid_lite.models.tiny_clip import write_tiny_clip

BATCH = 64
BUDGET_TEXT = ("No budget in DESIGN.md beyond 'loading a batch must not be a visible share of a step'; checked "
               "as: one A100 at the estimated ViT-B/16 + CLIP step rate needs at most 8 loader workers "
               "(IRRA's num_workers).")
LIMITS = {"workers_a100": {"max": 8}}
# Dense bf16 peaks (TFLOP/s) and the share of it such a small model reaches (an assumption, stated).
GPUS = {"a100": 312.0, "h100": 989.0}
MFU = 0.35


def flops_per_sample() -> dict[str, float]:
    """Training FLOPs of one IRRA sample at 384x128 (ViT-B/16 + CLIP text), forward x 3."""
    t_img, w_img, l_img, p_img = 193, 768, 12, 12 * 768 * 768 * 12  # tokens, width, layers, layer weights
    t_txt, w_txt, l_txt, p_txt = 77, 512, 12, 12 * 512 * 512 * 12
    image = 2 * p_img * t_img + 4 * t_img**2 * w_img * l_img
    text = 2 * (2 * p_txt * t_txt + 4 * t_txt**2 * w_txt * l_txt)  # the caption and the masked caption
    cross = 2 * (4 + 4 * 12) * 512 * 512 * t_txt  # cross-attention + 4 layers over 77 masked-caption tokens
    logits = 2 * 512 * 49408 * t_txt
    forward = image + text + cross + logits
    return {"image_gflop": image / 1e9, "text_gflop": text / 1e9, "cross_gflop": cross / 1e9,
            "mlm_logits_gflop": logits / 1e9, "train_gflop_per_sample": 3 * forward / 1e9}


def setup(base: Path, ids: int):
    root = write_fixture("rstpreid", base / "rstp", ids_per_split={"train": ids, "val": 1, "test": 1},
                         images_per_id=4, size=(384, 128))
    clip = write_tiny_clip(base / "clip")
    cfg = apply_overrides(load_recipe("irra"), [f"data.root={root}", "data.dataset=rstpreid",
                                                f"model.pretrained_dir={clip}", "data.num_workers=0"])
    return build_data(cfg).train_set


def images_per_s(get_item, count: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for first in range(0, count - BATCH + 1, BATCH):
            default_collate([get_item(i) for i in range(first, first + BATCH)])
        rates.append((count // BATCH) * BATCH / (time.perf_counter() - start))
    return statistics.median(rates)


def main(quick: bool = False) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one DataLoader worker
    try:
        with tempfile.TemporaryDirectory() as tmp:
            train_set = setup(Path(tmp), 16 if quick else 32)
            count = len(train_set)  # RSTPReid: 2 captions per image
            repeats = 1 if quick else 3
            rates = {}
            for decoder in ("pil", "torchvision"):
                train_set.jpeg_decoder = decoder
                rates[decoder] = images_per_s(train_set.__getitem__, count, repeats)
            figures: dict[str, float | int] = {
                "items": count, "batch": BATCH, "image_size": "384x128", "torch_threads": 1,
                "load_average_1min": round(os.getloadavg()[0], 2),
                "pil_images_per_s": round(rates["pil"], 1), "tvio_images_per_s": round(rates["torchvision"], 1),
                "tvio_speedup": round(rates["torchvision"] / rates["pil"], 2),
            }
            diffs = []
            for index in range(0, count, max(1, count // 16)):
                items = []
                for decoder in ("pil", "torchvision"):
                    train_set.jpeg_decoder = decoder
                    torch.manual_seed(index)
                    items.append(train_set[index]["images"])
                diffs.append(float((items[0] - items[1]).abs().max()))
            figures["max_abs_diff"] = round(max(diffs), 4)
    finally:
        torch.set_num_threads(threads)
    flops = flops_per_sample()
    figures.update({k: round(v, 2) for k, v in flops.items()})
    figures["mfu_assumed"] = MFU
    best = figures["tvio_images_per_s"]  # the kit's path
    for gpu, peak in GPUS.items():
        samples = peak * 1e12 * MFU / (flops["train_gflop_per_sample"] * 1e9)
        figures[f"{gpu}_steps_per_s"] = round(samples / BATCH, 2)
        figures[f"{gpu}_images_per_s"] = round(samples, 0)
        figures[f"workers_{gpu}"] = int(-(-samples // best))  # ceil
    return {
        "name": "loader",
        "description": "real-data training pipeline at 384x128 from JPEG (decode, augment, tokenise, collate), "
                       "per worker; workers per GPU at an estimated ViT-B/16 + CLIP step rate",
        "figures": figures,
        "budget": {"text": BUDGET_TEXT, "limits": LIMITS},
        "met": budget_met(figures, LIMITS),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repetitions")
    print(json.dumps(main(quick=parser.parse_args().quick), indent=2))
