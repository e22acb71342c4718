"""Losses: each a small pure function of tensors whose docstring states the paper's equation."""

from tireid_lite.losses.identity import id_loss
from tireid_lite.losses.matching import infonce_loss, matching_distribution, sdm_loss
from tireid_lite.losses.mlm import masked_accuracy, mlm_loss

__all__ = [
    "id_loss",
    "infonce_loss",
    "masked_accuracy",
    "matching_distribution",
    "mlm_loss",
    "sdm_loss",
]
