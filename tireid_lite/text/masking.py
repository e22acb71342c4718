"""Random token masking for masked language modelling (BERT's 80/10/10 rule, as in IRRA).

Taught in ``02_baseline_irra``. A masking strategy is a ``caption_hook`` of
the training dataset: called as ``hook(caption, ids, rng)`` each time an item
is drawn, so every epoch sees a freshly drawn mask. It returns ``mlm_ids`` (the
masked caption fed to the text tower) and ``mlm_labels`` (the original id at
the chosen positions, -100 elsewhere, as :func:`tireid_lite.losses.mlm.mlm_loss`
expects). Other strategies (key-phrase, attribute) must mask the same expected
number of tokens, :func:`expected_masked_tokens`, so ablations compare like
with like.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

from tireid_lite.errors import ConfigError

IGNORE_INDEX = -100
MASK_SHARE = 0.8  # chosen tokens replaced by the mask token
RANDOM_SHARE = 0.1  # chosen tokens replaced by a random ordinary token; the rest stay unchanged


def _check_prob(prob: float) -> None:
    if not 0.0 <= prob <= 1.0:
        raise ConfigError(f"masking prob={prob} is not a probability; use a value in [0, 1] (IRRA uses 0.15)")


def expected_masked_tokens(num_ordinary_tokens: int, prob: float) -> float:
    """Expected number of tokens :class:`RandomTokenMasking` chooses in a caption.

    Each of the n ordinary tokens is chosen with probability p, and when none
    is (probability (1-p)^n) exactly one is chosen instead::

        E[chosen] = p * n + (1 - p)^n     (0 when n = 0)

    This is the budget other masking strategies match. Taught in ``02_baseline_irra``.
    """
    if num_ordinary_tokens < 0:
        raise ValueError(f"num_ordinary_tokens must be >= 0, got {num_ordinary_tokens}")
    _check_prob(prob)
    if num_ordinary_tokens == 0:
        return 0.0
    return prob * num_ordinary_tokens + (1.0 - prob) ** num_ordinary_tokens


class RandomTokenMasking:
    """IRRA's random masking: each ordinary token chosen with ``prob``; 80% mask, 10% random, 10% kept.

    ``mask_token_id`` is the tokenizer's mask token; ``vocab_size`` the size
    of its vocabulary; ``special_ids`` every id that is not an ordinary word
    piece: start/end-of-text, padding, the mask token itself (it is added if
    missing), class/separator tokens. Special positions are never chosen, and
    random replacements are drawn uniformly from the ordinary ids only.

    If no token of a caption is chosen and it has at least one ordinary token,
    one ordinary position, drawn uniformly, is chosen and replaced by the mask
    token (IRRA's "mask at least one" rule). Where the kit differs from IRRA's
    code: IRRA always forces the first token after start-of-text, and draws
    random replacements from a fixed id range rather than from the non-special
    ids. Taught in ``02_baseline_irra``.
    """

    def __init__(
        self,
        mask_token_id: int,
        vocab_size: int,
        special_ids: Iterable[int],
        prob: float = 0.15,
    ) -> None:
        _check_prob(prob)
        if not 0 <= mask_token_id < vocab_size:
            raise ConfigError(
                f"mask_token_id={mask_token_id} is outside the vocabulary 0..{vocab_size - 1}; "
                "pass the tokenizer's mask token id and its full vocabulary size"
            )
        special = sorted({int(i) for i in special_ids} | {int(mask_token_id)})
        outside = [i for i in special if not 0 <= i < vocab_size]
        if outside:
            raise ConfigError(
                f"special_ids {outside} are outside the vocabulary 0..{vocab_size - 1}; "
                "pass the tokenizer's own special token ids"
            )
        ordinary = np.setdiff1d(np.arange(vocab_size, dtype=np.int64), np.asarray(special, dtype=np.int64))
        if ordinary.size == 0:
            raise ConfigError(
                f"every id of the vocabulary of {vocab_size} is listed in special_ids; "
                "list only the special tokens"
            )
        self.mask_token_id = int(mask_token_id)
        self.vocab_size = int(vocab_size)
        self.special_ids = np.asarray(special, dtype=np.int64)
        self.ordinary_ids = ordinary
        self.prob = float(prob)

    def __repr__(self) -> str:
        return (
            f"RandomTokenMasking(mask_token_id={self.mask_token_id}, vocab_size={self.vocab_size}, "
            f"special_ids={self.special_ids.tolist()}, prob={self.prob})"
        )

    def __call__(self, caption: str, ids: Tensor, rng: np.random.Generator) -> dict[str, Tensor]:
        """Mask one tokenised caption ``ids`` (L,); ``caption`` is unused by this strategy."""
        if ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise ValueError(
                f"ids must be a (L,) integer tensor of token ids, got shape {tuple(ids.shape)} "
                f"and dtype {ids.dtype}"
            )
        original = ids.detach().cpu().numpy().astype(np.int64)  # (L,)
        if original.size and (original.min() < 0 or original.max() >= self.vocab_size):
            raise ValueError(
                f"ids range from {original.min()} to {original.max()}, outside the vocabulary "
                f"0..{self.vocab_size - 1}; tokenise with the tokenizer this masking was built for"
            )
        masked_ids = original.copy()  # (L,)
        labels = np.full_like(original, IGNORE_INDEX)  # (L,)

        ordinary_pos = np.flatnonzero(~np.isin(original, self.special_ids))  # (N,)
        chosen = ordinary_pos[rng.random(ordinary_pos.size) < self.prob]  # (K,)
        if chosen.size == 0 and ordinary_pos.size > 0:
            forced = rng.choice(ordinary_pos, size=1)  # (1,)
            masked_ids[forced] = self.mask_token_id
            labels[forced] = original[forced]
        else:
            action = rng.random(chosen.size)  # (K,) uniform: which of the three replacements
            to_mask = chosen[action < MASK_SHARE]
            to_random = chosen[(action >= MASK_SHARE) & (action < MASK_SHARE + RANDOM_SHARE)]
            masked_ids[to_mask] = self.mask_token_id
            masked_ids[to_random] = rng.choice(self.ordinary_ids, size=to_random.size)
            labels[chosen] = original[chosen]
        return {
            "mlm_ids": torch.from_numpy(masked_ids).to(ids.device),
            "mlm_labels": torch.from_numpy(labels).to(ids.device),
        }
