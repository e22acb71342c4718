"""Unit tests for tireid_lite.text.masking: random token masking and its budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tireid_lite.errors import ConfigError
from tireid_lite.text.masking import RandomTokenMasking, expected_masked_tokens

PAD, SEP, MASK, SOT, EOT = 0, 1, 497, 498, 499
VOCAB = 500
SPECIAL = (PAD, SEP, MASK, SOT, EOT)


def _caption_ids(rng: np.random.Generator, num_ordinary: int, num_pad: int = 0) -> torch.Tensor:
    """[SOT] words [SEP] words [EOT] [PAD]...: num_ordinary ordinary ids in 2..496."""
    words = rng.integers(2, MASK, size=num_ordinary)
    half = num_ordinary // 2
    ids = [SOT, *words[:half], SEP, *words[half:], EOT] + [PAD] * num_pad
    return torch.tensor(ids, dtype=torch.long)


def _draw_many(masking: RandomTokenMasking, ids: torch.Tensor, draws: int, seed: int):
    """(draws, L) arrays of masked ids and labels for one caption masked `draws` times."""
    rng = np.random.default_rng(seed)
    outputs = [masking("a caption", ids, rng) for _ in range(draws)]
    masked_ids = np.stack([out["mlm_ids"].numpy() for out in outputs])
    labels = np.stack([out["mlm_labels"].numpy() for out in outputs])
    return masked_ids, labels


@pytest.fixture(scope="module")
def many_draws():
    """20,000 maskings of a caption with 30 ordinary tokens, 3 special tokens and 5 pads."""
    ids = _caption_ids(np.random.default_rng(0), num_ordinary=30, num_pad=5)
    masking = RandomTokenMasking(MASK, VOCAB, SPECIAL, prob=0.15)
    masked_ids, labels = _draw_many(masking, ids, draws=20_000, seed=1)
    return ids.numpy(), masked_ids, labels


def test_output_format():
    ids = _caption_ids(np.random.default_rng(0), num_ordinary=6, num_pad=2)
    before = ids.clone()
    out = RandomTokenMasking(MASK, VOCAB, SPECIAL)("a caption", ids, np.random.default_rng(0))
    assert set(out) == {"mlm_ids", "mlm_labels"}
    for value in out.values():
        assert value.shape == ids.shape and value.dtype == torch.long
    assert torch.equal(ids, before)  # the input is not modified


def test_same_seed_same_mask():
    ids = _caption_ids(np.random.default_rng(0), num_ordinary=20)
    masking = RandomTokenMasking(MASK, VOCAB, SPECIAL)
    first = masking("", ids, np.random.default_rng(7))
    second = masking("", ids, np.random.default_rng(7))
    assert torch.equal(first["mlm_ids"], second["mlm_ids"])
    assert torch.equal(first["mlm_labels"], second["mlm_labels"])


def test_selection_rate(many_draws):
    ids, _, labels = many_draws
    chosen = labels != -100
    ordinary = ~np.isin(ids, SPECIAL)
    rate = chosen[:, ordinary].mean()
    assert abs(rate - 0.15) < 0.005


def test_labels_hold_original_ids_at_chosen_positions(many_draws):
    ids, _, labels = many_draws
    chosen = labels != -100
    assert (labels == np.where(chosen, ids[None, :], -100)).all()


def test_eighty_ten_ten_split(many_draws):
    ids, masked_ids, labels = many_draws
    chosen = labels != -100
    original = np.broadcast_to(ids, masked_ids.shape)[chosen]
    replaced = masked_ids[chosen]
    to_mask = (replaced == MASK).mean()
    unchanged = (replaced == original).mean()
    to_random = ((replaced != MASK) & (replaced != original)).mean()
    assert abs(to_mask - 0.8) < 0.015
    assert abs(unchanged - 0.1) < 0.015
    assert abs(to_random - 0.1) < 0.015


def test_special_tokens_never_chosen_or_changed(many_draws):
    ids, masked_ids, labels = many_draws
    special = np.isin(ids, SPECIAL)
    assert (labels[:, special] == -100).all()
    assert (masked_ids[:, special] == ids[special]).all()


def test_random_replacements_are_never_special(many_draws):
    ids, masked_ids, labels = many_draws
    chosen = labels != -100
    replaced = masked_ids[chosen]
    random_ones = replaced[(replaced != MASK) & (replaced != np.broadcast_to(ids, masked_ids.shape)[chosen])]
    assert random_ones.size > 1000
    assert not np.isin(random_ones, SPECIAL).any()
    assert ((random_ones >= 0) & (random_ones < VOCAB)).all()


def test_random_replacements_are_uniform_over_ordinary_ids_only():
    # Ordinary ids are {3, 4}; the mask id 5 is not listed as special but must be excluded too.
    masking = RandomTokenMasking(mask_token_id=5, vocab_size=6, special_ids=[0, 1, 2], prob=1.0)
    ids = torch.tensor([1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2])
    masked_ids, _ = _draw_many(masking, ids, draws=10_000, seed=3)
    replaced = masked_ids[:, 1:-1]  # 100,000 chosen tokens, all originally 3
    assert set(np.unique(replaced)) == {3, 4, 5}
    assert abs((replaced == 5).mean() - 0.80) < 0.01  # 0.833 if random draws could hit the mask id
    assert abs((replaced == 4).mean() - 0.05) < 0.01  # half of the 10% random draws
    assert abs((replaced == 3).mean() - 0.15) < 0.01  # 10% kept + the other half of the random draws


def test_one_token_caption_always_gets_one_label():
    masking = RandomTokenMasking(MASK, VOCAB, SPECIAL, prob=0.15)
    ids = torch.tensor([SOT, 42, EOT, PAD, PAD])
    masked_ids, labels = _draw_many(masking, ids, draws=2_000, seed=4)
    assert (labels[:, 1] == 42).all()
    assert (labels[:, [0, 2, 3, 4]] == -100).all()
    # Masked when forced (85%) or when drawn and sent to the mask (15% x 80%): 97%.
    assert abs((masked_ids[:, 1] == MASK).mean() - 0.97) < 0.015


def test_forced_mask_picks_a_random_ordinary_position():
    # prob = 0: nothing is drawn, so every caption gets exactly one forced mask token.
    masking = RandomTokenMasking(MASK, VOCAB, SPECIAL, prob=0.0)
    ids = torch.tensor([SOT, 10, 11, SEP, 12, 13, 14, EOT, PAD])
    masked_ids, labels = _draw_many(masking, ids, draws=5_000, seed=5)
    chosen = labels != -100
    assert (chosen.sum(axis=1) == 1).all()
    assert (masked_ids[chosen] == MASK).all()
    ordinary = [1, 2, 4, 5, 6]
    share = chosen[:, ordinary].mean(axis=0)
    assert chosen[:, [0, 3, 7, 8]].sum() == 0
    assert np.all(np.abs(share - 0.2) < 0.03)


def test_caption_of_special_tokens_only_is_left_alone():
    ids = torch.tensor([SOT, EOT, PAD, PAD])
    out = RandomTokenMasking(MASK, VOCAB, SPECIAL)("", ids, np.random.default_rng(0))
    assert torch.equal(out["mlm_ids"], ids)
    assert (out["mlm_labels"] == -100).all()


# --------------------------------------------------------------------------- budget


def test_expected_masked_tokens_by_hand():
    assert expected_masked_tokens(0, 0.15) == 0.0
    assert expected_masked_tokens(1, 0.15) == pytest.approx(1.0)  # 0.15 + 0.85
    assert expected_masked_tokens(2, 0.5) == pytest.approx(1.25)  # 1 + 0.25
    assert expected_masked_tokens(10, 0.0) == pytest.approx(1.0)  # always exactly the forced one


@pytest.mark.parametrize("num_ordinary", [1, 3, 10, 30])
def test_expected_masked_tokens_matches_empirical_mean(num_ordinary):
    masking = RandomTokenMasking(MASK, VOCAB, SPECIAL, prob=0.15)
    ids = _caption_ids(np.random.default_rng(num_ordinary), num_ordinary=num_ordinary, num_pad=3)
    _, labels = _draw_many(masking, ids, draws=5_000, seed=num_ordinary)
    counts = (labels != -100).sum(axis=1)
    standard_error = counts.std() / np.sqrt(counts.size)
    expected = expected_masked_tokens(num_ordinary, 0.15)
    assert abs(counts.mean() - expected) < 4 * standard_error + 1e-9


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mask_token_id": MASK, "vocab_size": VOCAB, "special_ids": SPECIAL, "prob": 1.5}, "prob=1.5"),
        ({"mask_token_id": 600, "vocab_size": VOCAB, "special_ids": SPECIAL}, "mask_token_id=600"),
        ({"mask_token_id": MASK, "vocab_size": VOCAB, "special_ids": [-1, 0]}, r"special_ids \[-1\]"),
        ({"mask_token_id": 1, "vocab_size": 2, "special_ids": [0]}, "every id"),
    ],
)
def test_bad_configuration_is_a_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RandomTokenMasking(**kwargs)


def test_bad_ids_are_rejected():
    masking = RandomTokenMasking(MASK, VOCAB, SPECIAL)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="integer tensor"):
        masking("", torch.zeros(2, 3, dtype=torch.long), rng)
    with pytest.raises(ValueError, match="integer tensor"):
        masking("", torch.zeros(4), rng)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        masking("", torch.tensor([SOT, 700, EOT]), rng)


def test_expected_masked_tokens_rejects_bad_input():
    with pytest.raises(ValueError, match="num_ordinary_tokens"):
        expected_masked_tokens(-1, 0.15)
    with pytest.raises(ConfigError, match="prob"):
        expected_masked_tokens(3, -0.1)
