"""Benchmark: what KPDM's patch selection saves in the cross-modal module.

Masked captions query the image tokens in IRRA's cross-modal module; KPDM keeps
the class token and the top ``select_ratio`` of the patches only (0.5), so the
keys and values shrink from 1 + N to 1 + K tokens. Times, with the kit's
:class:`~tireid_lite.models.cross_modal.CrossModalEncoder` on random tokens
(forward and backward, batch 64, captions of 64 tokens), the cross-attention
alone and the whole module (cross-attention, then ``depth`` transformer layers
over the caption tokens, which selection does not shrink), at two sizes:

* ``cpu``: the cpu profile (48 patches, width 64, 4 heads, depth 1);
* ``clip``: IRRA's module at 384x128 with ViT-B/16 (192 patches, width 512,
  8 heads, depth 4), at batch 16 to keep the run short on a CPU.

The selection's own cost (scoring and gathering) is included in the kept timing.
There is no budget in ``DESIGN.md`` for this; the only limit checked is that
selection is not slower than no selection in the cross-attention.

Run alone: ``python benchmarks/bench_patch_selection.py [--quick]`` prints the result.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from run_all import budget_met
from tireid_lite.models.cross_modal import CrossModalEncoder
from tireid_lite.models.patch_importance import gather_tokens, num_kept, select_patches

SIZES = {  # name: (batch, patches, width, heads, depth)
    "cpu": (64, 48, 64, 4, 1),
    "clip": (16, 192, 512, 8, 4),
}
CAPTION_TOKENS = 64
RATIO = 0.5
BUDGET_TEXT = "No budget in DESIGN.md; selection must not make the cross-attention slower (ratio >= 1)."
LIMITS = {"cpu_attention_speedup": {"min": 1.0}, "clip_attention_speedup": {"min": 1.0}}


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_size(batch: int, patches: int, width: int, heads: int, depth: int, repeats: int) -> dict[str, float]:
    """Median forward + backward seconds with all and with the kept image tokens."""
    torch.manual_seed(0)
    module = CrossModalEncoder(width, heads, depth)
    queries = torch.randn(batch, CAPTION_TOKENS, width, requires_grad=True)
    image = torch.randn(batch, 1 + patches, width, requires_grad=True)
    scores = torch.rand(batch, patches)

    def attention(context: torch.Tensor) -> torch.Tensor:
        ctx = module.norm_context(context)
        return module.cross_attn(module.norm_query(queries), ctx, ctx, need_weights=False)[0]

    def run(part, keep: bool) -> None:
        context = gather_tokens(image, select_patches(scores, RATIO)) if keep else image
        part(context).sum().backward()

    whole = lambda context: module(queries, context)  # noqa: E731
    figures = {}
    for name, part in (("attention", attention), ("module", whole)):
        full_s = median_seconds(lambda: run(part, keep=False), repeats)
        kept_s = median_seconds(lambda: run(part, keep=True), repeats)
        figures[f"{name}_all_ms"] = round(1000 * full_s, 3)
        figures[f"{name}_kept_ms"] = round(1000 * kept_s, 3)
        figures[f"{name}_speedup"] = round(full_s / kept_s, 3)
    return figures


def main(quick: bool = False) -> dict:
    repeats = 5 if quick else 20
    figures: dict[str, float | int] = {"ratio": RATIO, "caption_tokens": CAPTION_TOKENS,
                                       "torch_threads": torch.get_num_threads()}
    for size, (batch, patches, width, heads, depth) in SIZES.items():
        figures[f"{size}_kept_tokens"] = 1 + num_kept(patches, RATIO)
        figures[f"{size}_all_tokens"] = 1 + patches
        for key, value in time_size(batch, patches, width, heads, depth, repeats).items():
            figures[f"{size}_{key}"] = value
    return {
        "name": "patch_selection",
        "description": "cross-modal module with all vs the kept half of the image tokens (forward + backward)",
        "figures": figures,
        "budget": {"text": BUDGET_TEXT, "limits": LIMITS},
        "met": budget_met(figures, LIMITS),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    print(json.dumps(main(quick=parser.parse_args().quick), indent=2))
