"""``tireid train``: train a model from a profile, a config file and overrides.

    tireid train --profile cpu --out runs/baseline
    tireid train --profile gpu --data-root /data/CUHK-PEDES --set model.pretrained_dir=/models/clip --out runs/irra
    tireid train --recipe rde --data-root /data/CUHK-PEDES --set model.pretrained_dir=/models/clip --out runs/rde
    tireid train --out runs/baseline --resume          # continue an interrupted run with its saved config
    torchrun --nproc_per_node=4 -m tireid_lite.cli train --profile gpu ... --out runs/irra_ddp

The config is built in this order: the ``--config`` file or a paper's ``--recipe``
(``tireid_lite/recipes/<name>.yaml``), or else the ``--profile`` defaults, then ``--method``, ``--data-root``, ``--seed``, then each ``--set
section.key=value``. With ``--resume`` the run's own ``config.yaml`` is the
starting point instead. The test metrics of the best checkpoint are printed as
JSON at the end. Taught in ``02_baseline_irra``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tireid_lite.config import (
    PROFILES,
    Config,
    apply_overrides,
    get_profile,
    load_config,
    recipe_names,
    recipe_path,
    validate,
)
from tireid_lite.errors import ConfigError
from tireid_lite.models.methods import METHODS


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=PROFILES, default=None, help="named defaults (default: cpu)")
    parser.add_argument("--config", type=Path, default=None, help="a YAML config (as written to a run's config.yaml)")
    parser.add_argument("--recipe", default=None, metavar="NAME",
                        help=f"a paper's recipe shipped with the kit: {', '.join(recipe_names())} (gpu profile)")
    parser.add_argument("--method", choices=list(METHODS), default=None, help="model.method")
    parser.add_argument("--data-root", default=None, help="data.root: the dataset's root folder")
    parser.add_argument("--out", type=Path, required=True, help="the run's folder (new or empty, unless --resume)")
    parser.add_argument("--seed", type=int, default=None, help="train.seed")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one config key, e.g. --set train.num_epochs=3 (repeatable)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")


def build_config(args: argparse.Namespace) -> Config:
    """The run's config from the command line (see the module docstring)."""
    saved = args.out / "config.yaml"
    if args.resume and saved.is_file():
        if args.config is not None or args.profile is not None or args.recipe is not None:
            raise ConfigError(
                f"--resume continues the run in {args.out} with its own {saved}; drop --config/--recipe/--profile "
                "(use --set only to change what a resumed run may change, such as train.threads)"
            )
        cfg = load_config(saved)
    elif args.config is not None or args.recipe is not None:
        if args.config is not None and args.recipe is not None:
            raise ConfigError("--config and --recipe both give the starting config; keep one of them")
        source = args.config if args.config is not None else recipe_path(args.recipe)
        cfg = load_config(source)
        if args.profile is not None and args.profile != cfg.profile:
            raise ConfigError(
                f"--profile {args.profile} disagrees with profile {cfg.profile!r} in {source}; drop one of them"
            )
    else:
        cfg = get_profile(args.profile or "cpu")
    if args.method is not None:
        cfg.model.method = args.method
    if args.data_root is not None:
        cfg.data.root = str(Path(args.data_root).expanduser().resolve())
    if args.seed is not None:
        cfg.train.seed = args.seed
    if args.data_root is not None and not args.resume:
        _check_root_kind(cfg, args.overrides)
    return apply_overrides(validate(cfg), args.overrides)


def _check_root_kind(cfg: Config, overrides: list[str]) -> None:
    """A ``--data-root`` holding another dataset than ``data.dataset``: one error naming the keys to set."""
    from tireid_lite.data.readers import detect_dataset

    found = detect_dataset(cfg.data.root)
    if found is None or found == cfg.data.dataset or any(o.startswith("data.dataset=") for o in overrides):
        return
    if (found, cfg.data.dataset) == ("synth", "cuhk-pedes"):
        return  # SynthPEDES is written in CUHK-PEDES's layout: read that way, it is a CUHK-PEDES
    keys = f"--set data.dataset={found}"
    if found != "synth" and cfg.model.warm_start == "attributes":
        keys += " --set model.warm_start=none"  # the attribute pretraining reads SynthPEDES's attributes.json
    raise ConfigError(
        f"--data-root {cfg.data.root} holds {found} but data.dataset is {cfg.data.dataset}; add {keys}"
        + (" (the attribute warm start needs SynthPEDES; model.pretrained_dir=DIR loads CLIP instead)"
           if "warm_start" in keys else "")
    )


def run(args: argparse.Namespace) -> int:
    from tireid_lite import distributed
    from tireid_lite.train.trainer import Trainer

    from tireid_lite.eval.cli import check_device

    check_device(args.device)
    cfg = build_config(args)
    try:
        trainer = Trainer(cfg, args.out, resume=args.resume, device=args.device)
        metrics = trainer.fit()
        if trainer.is_main:
            print(json.dumps(metrics, indent=1))
    finally:
        distributed.cleanup()
    return 0
