"""Noise partitioners: split the training pairs into clean, noisy and uncertain.

Taught in ``05_kpdm_trusted_consensus``, which injects noisy correspondences
(:mod:`tireid_lite.data.noise`), runs both partitioners after every warm-up
epoch and scores them against the injected ground truth with
:func:`detection_scores`.

Both partitioners look at two views of every pair (RDE's global embedding and
its token-selection embedding) and keep a pair's verdict only when the views
agree:

* :func:`~tireid_lite.train.ccd.ccd_partition`, RDE's confident consensus division (CVPR 2024): one
  2-component Gaussian mixture per view over the per-pair losses of the whole
  training set; a pair is clean in a view when the low-loss component claims it.
* :func:`~tireid_lite.train.tcp.tcp_partition`, KPDM's trusted consensus partitioning, in the kit's
  reading (KPDM publishes no training code): each identity's pairs are judged
  against the identity's own similarity distribution, so a pair is untrusted
  when it is a low outlier among the pairs of its own person. The two
  ingredients are :func:`~tireid_lite.train.tcp.identity_robust_z` (median/MAD) and
  :func:`~tireid_lite.train.tcp.fit_identity_mixture` (a two-level mixture per identity).

This module holds what both share: a :class:`Partition` holds one label per pair (1 clean, 0 noisy, -1 uncertain)
and the weight a loss such as :func:`~tireid_lite.losses.tal.tal_loss` gives
the pair. Everything is numpy and works on the whole training set at once: per
identity statistics are group operations over sorted arrays, not Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from tireid_lite.errors import ConfigError

TRUSTED, UNTRUSTED, UNCERTAIN = 1, 0, -1
LABEL_NAMES = {TRUSTED: "clean", UNTRUSTED: "noisy", UNCERTAIN: "uncertain"}


Disagreement = Literal["uncertain", "random"]
TcpMethod = Literal["mad", "gmm"]


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True, eq=False)
class Partition:
    """The verdict on every training pair, and the weight the matching loss gives it."""

    labels: np.ndarray  # (N,) int8: 1 clean (trusted), 0 noisy (untrusted), -1 uncertain
    weights: np.ndarray  # (N,) float32: 1 clean, 0 noisy, uncertain_weight uncertain
    view_trusted: np.ndarray  # (2, N) bool: each view's own verdict before the consensus

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def clean(self) -> np.ndarray:
        """(N,) bool: both views trust the pair."""
        return self.labels == TRUSTED

    @property
    def noisy(self) -> np.ndarray:
        """(N,) bool: both views distrust the pair; what :func:`detection_scores` counts as flagged."""
        return self.labels == UNTRUSTED

    @property
    def uncertain(self) -> np.ndarray:
        """(N,) bool: the views disagree."""
        return self.labels == UNCERTAIN

    def counts(self) -> dict[str, int]:
        """Number of pairs per label: ``{"clean": ..., "noisy": ..., "uncertain": ...}``."""
        return {name: int((self.labels == label).sum()) for label, name in LABEL_NAMES.items()}


def _check_uncertain_weight(uncertain_weight: float) -> float:
    weight = float(uncertain_weight)
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(
            f"uncertain_weight={uncertain_weight!r} is outside [0, 1]; use 0 to drop uncertain pairs, "
            "1 to keep them fully, or a fraction such as 0.5"
        )
    return weight


def _consensus(trusted_a: np.ndarray, trusted_b: np.ndarray, uncertain_weight: float) -> Partition:
    """Both views trust: clean; both distrust: noisy; otherwise uncertain."""
    labels = np.full(len(trusted_a), UNCERTAIN, dtype=np.int8)
    labels[trusted_a & trusted_b] = TRUSTED
    labels[~trusted_a & ~trusted_b] = UNTRUSTED
    weights = np.where(labels == TRUSTED, 1.0, np.where(labels == UNTRUSTED, 0.0, uncertain_weight))
    return Partition(labels, weights.astype(np.float32), np.stack([trusted_a, trusted_b]))


def _as_vector(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array with one value per training pair, got shape {array.shape}"
        )
    bad = int((~np.isfinite(array)).sum())
    if bad:
        raise ValueError(
            f"{name} holds {bad} non-finite values (NaN or inf); "
            "check the model's outputs before partitioning"
        )
    return array


def _check_same_length(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if len(a) != len(b):
        raise ValueError(
            f"{name_a} has {len(a)} pairs but {name_b} has {len(b)}; "
            "pass values for the same training pairs, in the same order"
        )

# --------------------------------------------------------------------------- scoring


def _as_flags(name: str, values) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array with one flag per training pair, got shape {array.shape}"
        )
    if array.dtype != bool:
        if array.size and not np.isin(array, (0, 1)).all():
            raise ValueError(
                f"{name} must hold booleans (True = noisy), got values other than 0 and 1; "
                "for a Partition's labels pass partition.noisy (labels == 0)"
            )
        array = array.astype(bool)
    return array


def detection_scores(pred_noisy, true_noisy) -> dict[str, float]:
    """Precision, recall and F1 of noise detection, with noisy as the positive class.

    ``pred_noisy`` is a (N,) bool array (True = flagged noisy) or a
    :class:`Partition`, whose uncertain pairs count as not flagged: only pairs
    both views distrust are dropped from the matching loss. ``true_noisy`` is the
    injected ground truth, :attr:`~tireid_lite.data.noise.NoiseInjection.noisy`.
    With tp, fp, fn, tn the confusion counts::

        precision = tp / (tp + fp)      1.0 when nothing is flagged (no flag was wrong)
        recall    = tp / (tp + fn)      1.0 when nothing is noisy (nothing was missed)
        f1        = 2 tp / (2 tp + fp + fn)     1.0 when both are empty

    (scikit-learn's ``zero_division=1.0``). Returns ``precision``, ``recall``,
    ``f1``, ``accuracy`` and the counts ``tp``, ``fp``, ``fn``, ``tn``,
    ``flagged``, ``noisy``. Taught in ``05_kpdm_trusted_consensus``.
    """
    pred = pred_noisy.noisy if isinstance(pred_noisy, Partition) else _as_flags("pred_noisy", pred_noisy)
    true = _as_flags("true_noisy", true_noisy)
    _check_same_length("pred_noisy", pred, "true_noisy", true)
    tp = int((pred & true).sum())
    fp = int((pred & ~true).sum())
    fn = int((~pred & true).sum())
    tn = int((~pred & ~true).sum())
    return {
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "accuracy": (tp + tn) / len(true) if len(true) else 1.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "flagged": tp + fp,
        "noisy": tp + fn,
    }
