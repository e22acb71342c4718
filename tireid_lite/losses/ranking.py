"""Part-level ranking: part similarities, each part's commonality and the commonality-based margin loss.

Park et al. (ACCV 2024) name a "commonality-based margin ranking loss" that
measures how common each body part is across people and uses it while the
part details are learned, so that similar parts of different people (most
people wear dark trousers) are not pushed apart. Only the abstract is
public; the equations below are **the kit's reading**, not the paper's:

* part similarity, texts as rows and images as columns (queries x gallery)::

      s_k(i, j) = cos(t_i^k, v_j^k)                                  (K, B, B)

* commonality of part k from the mean of s_k over the batch's negative
  pairs (different identities), detached, normalised to [0, 1] across the
  parts (``minmax``, the default): the least common part gets 0, the most
  common 1 (all 0 when the parts are equally common)::

      mu_k = mean_{pid_i != pid_j} s_k(i, j)
      c_k  = (mu_k - min_j mu_j) / (max_j mu_j - min_j mu_j)

  ``absolute`` clips mu_k to [0, 1] instead (a cosine of 0, unrelated, is
  "not common"). It has a shortcut the kit measured: the margins shrink as
  the parts of different people grow alike, so the model can drive every
  c_k to 1 and every margin to 0 by making all part embeddings equal (on
  SynthPEDES c_k passed 0.99 within 20 steps and the loss fell to 0.001).
  Across parts, the least common part always keeps the full margin, so that
  collapse no longer pays;

* margin per part ``m_k = m (1 - c_k)`` (``margin_mode=commonality``) or
  ``m_k = m`` (``fixed``, the ablation);
* ranking loss per part, both directions, the paired item as the positive::

      l_k = 1/2B sum_i [m_k - s_k(i, i) + s_k(i, n_i)]_+  (text anchors, images as candidates)
          + 1/2B sum_j [m_k - s_k(j, j) + s_k(n_j, j)]_+  (image anchors, texts as candidates)

  with ``n`` the semi-hard negative (the highest similarity of another
  identity below the positive; the hardest when none is below it, as
  FaceNet) or the hardest one (highest similarity, another identity).

  The hardest negative has FaceNet's known failure: from a freshly
  initialised decoder at the cpu profile's head learning rate (1e-2) every
  part embedding of every person collapsed to one vector within 20 steps
  (negatives' mean cosine 0.98, loss stuck at the margin), with fixed and
  commonality margins alike; semi-hard negatives kept the negatives' mean
  cosine near 0 in the same test (the towers frozen, 40 steps). The kit's
  default is therefore ``semihard``.

Taught in ``08_partlevel_commonality``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

NEGATIVE_MODES = ("hardest", "semihard")


def part_similarities(text_parts: Tensor, image_parts: Tensor) -> Tensor:
    """Cosine similarity of every caption and image, part by part: (K, Bt, Bi) from (Bt, K, D) and (Bi, K, D)."""
    t = F.normalize(text_parts.float(), dim=-1).transpose(0, 1)  # (K, Bt, D)
    v = F.normalize(image_parts.float(), dim=-1).transpose(0, 1)  # (K, Bi, D)
    return t @ v.transpose(1, 2)  # (K, Bt, Bi)


def negative_mask(pids: Tensor) -> Tensor:
    """``True`` where row and column belong to different identities: (B, B)."""
    return pids.view(-1, 1) != pids.view(1, -1)


COMMONALITY_MODES = ("minmax", "absolute")


def negative_mean(sims: Tensor, pids: Tensor) -> Tensor:
    """mu_k (K,): the mean of ``sims`` (K, B, B) over pairs of different identities, detached (0 without any)."""
    neg = negative_mask(pids).to(sims.dtype)  # (B, B)
    return (sims.detach() * neg).sum(dim=(1, 2)) / neg.sum().clamp_min(1.0)


def commonality(sims: Tensor, pids: Tensor, mode: str = "minmax") -> Tensor:
    """Each part's commonality c_k in [0, 1] (K,) from ``sims`` (K, B, B), detached (see the module
    docstring): ``minmax`` across the parts (all 0 when they are equal within 1e-6) or ``absolute``
    (mu_k clipped to [0, 1]). A batch without negatives gives 0 (full margins)."""
    mean = negative_mean(sims, pids)  # (K,)
    if mode == "absolute":
        return mean.clamp(0.0, 1.0)
    if mode != "minmax":
        raise ValueError(f"commonality mode {mode!r} is unknown; use one of {', '.join(COMMONALITY_MODES)}")
    spread = mean.max() - mean.min()
    if spread <= 1e-6:
        return torch.zeros_like(mean)
    return (mean - mean.min()) / spread


def part_margins(common: Tensor, margin: float, mode: str = "commonality") -> Tensor:
    """The margin of each part (K,): ``margin * (1 - common)`` (commonality) or ``margin`` (fixed)."""
    if mode == "commonality":
        return margin * (1.0 - common)
    if mode == "fixed":
        return torch.full_like(common, float(margin))
    raise ValueError(f"margin mode {mode!r} is unknown; use commonality or fixed")


def _pick_negatives(sims: Tensor, positives: Tensor, neg: Tensor, mode: str) -> tuple[Tensor, Tensor]:
    """The chosen negative's similarity for every anchor (row): (K, B), and whether it has one: (B,).

    ``sims`` (K, B, B) with anchors as rows, ``positives`` (K, B), ``neg`` (B, B) boolean."""
    low = torch.finfo(sims.dtype).min
    candidates = sims.masked_fill(~neg, low)  # (K, B, B)
    hardest = candidates.max(dim=2).values  # (K, B)
    has_negative = neg.any(dim=1)  # (B,)
    if mode == "hardest":
        return hardest, has_negative
    if mode != "semihard":
        raise ValueError(f"negative mode {mode!r} is unknown; use one of {', '.join(NEGATIVE_MODES)}")
    below = candidates.masked_fill(candidates >= positives.unsqueeze(-1), low)  # (K, B, B) easier than the positive
    semi = below.max(dim=2).values  # (K, B)
    return torch.where(semi > low, semi, hardest), has_negative


def part_ranking_loss(sims: Tensor, pids: Tensor, margins: Tensor, negatives: str = "hardest") -> Tensor:
    """The ranking loss of each part (K,) (see the module docstring): ``sims`` (K, B, B) texts x images
    of a batch whose i-th caption and i-th image are a pair, ``pids`` (B,), ``margins`` (K,)."""
    neg = negative_mask(pids)  # (B, B)
    positives = sims.diagonal(dim1=1, dim2=2)  # (K, B)
    m = margins.to(sims.dtype).unsqueeze(-1)  # (K, 1)
    losses = []
    for anchored in (sims, sims.transpose(1, 2)):  # text anchors, then image anchors
        negative, valid = _pick_negatives(anchored, positives, neg, negatives)  # (K, B), (B,)
        hinge = F.relu(m - positives + negative) * valid.to(sims.dtype)  # (K, B)
        losses.append(hinge.sum(dim=1) / sims.shape[1])  # (K,)
    return (losses[0] + losses[1]) / 2
