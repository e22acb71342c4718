"""``tireid eval``: evaluate a checkpoint on a split and print its metrics as JSON.

    tireid eval --checkpoint runs/baseline/best.pt
    tireid eval --checkpoint runs/irra/best.pt --data-root /data/CUHK-PEDES --split val
    tireid eval --checkpoint runs/cada/best.pt --rerank-k 32     # a method with a second stage

The checkpoint carries its config and tokenizer, so only the data may need a
new root (``--data-root``) when it moved. The output is one JSON object with
``R1``, ``R5``, ``R10``, ``mAP`` and ``mINP`` in percent, computed on the final
order (after re-ranking when ``--rerank-k`` is given). A root that holds another
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
    parser.add_argument("--rerank-k", type=int, default=0, metavar="K",
                        help="re-rank each query's top K images with the method's second stage (default 0: off)")


def check_device(device: str | None) -> None:
    """Refuse ``--device cuda`` where torch sees no GPU, in one sentence."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was given but torch sees no CUDA GPU here (torch.cuda.is_available() is False); "
            "use --device cpu, or leave --device out to use a GPU when there is one"
        )


def run(args: argparse.Namespace) -> int:
    from tireid_lite.data.build import build_data
    from tireid_lite.distributed import resolve_amp
    from tireid_lite.eval.retrieval import evaluate
    from tireid_lite.models.trained import load_trained

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size} must be at least 1")
    if args.rerank_k < 0:
        raise ConfigError(f"--rerank-k {args.rerank_k} must be 0 (no re-ranking) or a positive number of images")
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
    if args.rerank_k and getattr(trained.model, "reranker", None) is None:
        raise ConfigError(
            f"--rerank-k {args.rerank_k}: model.method {cfg.model.method!r} of {args.checkpoint} has no second "
            "retrieval stage; drop --rerank-k"
        )
    metrics = evaluate(
        trained.model, data, args.split, batch_size=args.batch_size, device=device,
        amp_dtype=resolve_amp(cfg.train.amp, device), rerank_k=args.rerank_k,
    )
    print(json.dumps(metrics, indent=1))
    return 0
