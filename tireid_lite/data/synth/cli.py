"""``tireid synth``: generate SynthPEDES into a directory and print a one-line summary.

Example: ``tireid synth --out data/synth --ids-train 500 --size 96x32 --seed 0``.
Every difficulty knob of :class:`SynthKnobs` is a flag too (``--occlusion-prob 0.3``), and
``--preset detail`` switches every detail knob on.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import time

from tireid_lite.data.synth.generate import CAPTIONS_PER_IMAGE, generate_synth
from tireid_lite.data.synth.knobs import PRESETS, SynthKnobs, preset_knobs
from tireid_lite.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_size_text(text: str) -> tuple[int, int]:
    """``"96x32"`` -> ``(96, 32)`` (height x width); anything else is a :class:`ConfigError`."""
    match = _SIZE.match(text)
    if match is None:
        raise ConfigError(
            f"--size {text!r} is not HxW; give the height and width in pixels joined by x, e.g. 96x32"
        )
    return int(match.group(1)), int(match.group(2))


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``tireid synth``: sizes, seed, output, and one flag per difficulty knob."""
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (empty or new, unless --overwrite)")
    for flag, default, metavar, what in (
        ("--ids-train", 500, "N", "training identities"),
        ("--ids-val", 100, "N", "validation identities"),
        ("--ids-test", 200, "N", "test identities"),
        ("--images-per-id", 4, "K", "images per identity"),
    ):
        parser.add_argument(flag, type=int, default=default, metavar=metavar,
                            help=f"{what} (default {default})")
    parser.add_argument("--size", default="96x32", metavar="HxW",
                        help="image size, about 3:1, from 48x16 to 384x128 (default 96x32)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    knobs = parser.add_argument_group("difficulty knobs")
    for f in dataclasses.fields(SynthKnobs):
        flag = "--" + f.name.replace("_", "-")
        if "choices" in f.metadata:
            knobs.add_argument(flag, choices=f.metadata["choices"], default=None,
                               help=f"{f.metadata['help']} (default {f.default})")
            continue
        low, high = f.metadata["range"]
        knobs.add_argument(
            flag,
            type=int if f.metadata["integer"] else float,
            default=None,
            metavar="N" if f.metadata["integer"] else "X",
            help=f"{f.metadata['help']} (default {f.default}, range {low}-{high})",
        )
    parser.add_argument("--preset", choices=tuple(PRESETS), default="none",
                        help="a named set of knobs (detail: every detail knob on); flags given win over it")


def run(args: argparse.Namespace) -> int:
    """Generate the dataset and print one summary line; errors are :class:`TIReIDError`."""
    size = parse_size_text(args.size)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(SynthKnobs)}
    knobs = {**preset_knobs(args.preset), **{name: value for name, value in given.items() if value is not None}}
    start = time.perf_counter()
    path = generate_synth(
        args.out,
        ids_train=args.ids_train,
        ids_val=args.ids_val,
        ids_test=args.ids_test,
        images_per_id=args.images_per_id,
        size=size,
        seed=args.seed,
        overwrite=args.overwrite,
        **knobs,
    )
    seconds = time.perf_counter() - start
    images = (args.ids_train + args.ids_val + args.ids_test) * args.images_per_id
    print(
        f"SynthPEDES written to {path}: {images} images, {images * CAPTIONS_PER_IMAGE} captions "
        f"in {seconds:.1f} s ({images / max(seconds, 1e-9):.0f} images/s)"
    )
    return 0
