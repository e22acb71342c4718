"""A trained model read back from a Trainer checkpoint (``best.pt``, ``last.pt``, ``epoch<e>.pt``).

The checkpoint carries the config and the tokenizer it was trained with, so
the model is rebuilt exactly (:func:`~tireid_lite.models.tireid.build_model`)
before its weights are loaded. Taught in ``02_baseline_irra``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from tireid_lite.checkpoint import load_checkpoint, require_keys
from tireid_lite.config import Config, config_from_dict
from tireid_lite.errors import ConfigError
from tireid_lite.models.tireid import build_model
from tireid_lite.text.tokenizers import Tokenizer, tokenizer_from_files


@dataclass
class TrainedModel:
    """A model restored from a Trainer checkpoint, with the config and tokenizer it was trained with."""

    cfg: Config
    tokenizer: Tokenizer
    model: nn.Module
    epoch: int  # epochs completed when the checkpoint was written
    num_classes: int


def load_trained(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> TrainedModel:
    """Rebuild the model stored in ``best.pt`` / ``last.pt`` (eval mode, on ``device``)."""
    state = load_checkpoint(path)
    require_keys(state, ("model", "config", "tokenizer", "num_classes", "epoch"), path)
    try:
        cfg = config_from_dict(state["config"])
    except ConfigError as err:
        raise ConfigError(f"checkpoint {path} holds a config this version cannot read: {err}") from None
    tokenizer = tokenizer_from_files(state["tokenizer"])
    model = build_model(cfg, tokenizer, int(state["num_classes"]))
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return TrainedModel(cfg=cfg, tokenizer=tokenizer, model=model, epoch=int(state["epoch"]),
                        num_classes=int(state["num_classes"]))
