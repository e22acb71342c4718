"""``tireid eval``: evaluate a checkpoint on a split and print its metrics as JSON.

    tireid eval --checkpoint runs/baseline/best.pt
    tireid eval --checkpoint runs/irra/best.pt --data-root /data/CUHK-PEDES --split val

The checkpoint carries its config and tokenizer, so only the data may need a
new root (``--data-root``) when it moved. The output is one JSON object with
``R1``, ``R5``, ``R10``, ``mAP`` and ``mINP`` in percent. A root that holds another
dataset than the checkpoint was trained on (e.g. SynthPEDES for a CUHK-PEDES
model) is evaluated with a warning saying so. Taught in ``02_baseline_irra``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from tireid_lite.data.readers import detect_dataset
from tireid_lite.data.records import SPLITS
from tireid_lite.errors import ConfigError, DatasetError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="a best.pt or last.pt written by `tireid train`")
    parser.add_argument("--data-root", default=None, help="the dataset's root, when it differs from the training run's")
    parser.add_argument("--split", choices=SPLITS[1:], default="test", help="the split to evaluate (default: test)")
    parser.add_argument("--batch-size", type=int, default=128, help="images or captions encoded at once")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")


def check_device(device: str | None) -> None:
    """Refuse ``--device cuda`` where torch sees no GPU, in one sentence."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was given but torch sees no CUDA GPU here (torch.cuda.is_available() is False); "
            "use --device cpu, or leave --device out to use a GPU when there is one"
        )


def run(args: argparse.Namespace) -> int:
    from tireid_lite.eval.retrieval import evaluate
    from tireid_lite.train.build import build_data
    from tireid_lite.train.trainer import load_trained, resolve_amp

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size} must be at least 1")
    check_device(args.device)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    trained = load_trained(args.checkpoint, device=device)
    cfg = trained.cfg
    if args.data_root is not None:
        cfg.data.root = str(Path(args.data_root).expanduser().resolve())
    data = build_data(cfg, trained.tokenizer, train=False)
    found = detect_dataset(Path(data.dataset.root))
    if found is not None and found != cfg.data.dataset:
        print(f"tireid eval: warning: {args.checkpoint} was trained on {cfg.data.dataset} but {data.dataset.root} "
              f"holds {found}; the metrics below compare unlike data (give --data-root a {cfg.data.dataset} root "
              "to evaluate it on what it was trained for)", file=sys.stderr, flush=True)
    if not data.has_split(args.split):
        present = [s for s in SPLITS if data.has_split(s)]
        raise DatasetError(
            f"{data.dataset.name} at {data.dataset.root} has no {args.split!r} split; use --split {present[-1]}"
        )
    metrics = evaluate(
        trained.model, data, args.split, batch_size=args.batch_size, device=device,
        amp_dtype=resolve_amp(cfg.train.amp, device),
    )
    print(json.dumps(metrics, indent=1))
    return 0
