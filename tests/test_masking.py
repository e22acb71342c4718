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


@pytest.mark.parametrize("prob", [0.0, 0.15, 0.6, 1.0])
def test_mask_batch_equals_masking_row_by_row(prob):
    """Rows of every kind (no ordinary token, one, many; padded or not) and probabilities that force
    a mask (0), choose none or all: each row as the one-caption call with the same generator."""
    gen = np.random.default_rng(11)
    rows = [_caption_ids(gen, n, 24 - n) for n in (0, 1, 2, 5, 12, 23)] * 3  # each (27,)
    ids = torch.stack(rows)  # (18, 27)
    masking = RandomTokenMasking(MASK, VOCAB, SPECIAL, prob=prob)
    seeds = gen.integers(0, 2**62, len(rows))
    batch = masking.mask_batch([""] * len(rows), ids, [np.random.default_rng(int(s)) for s in seeds])
    for b, seed in enumerate(seeds):
        one = masking("", ids[b], np.random.default_rng(int(seed)))
        assert torch.equal(batch["mlm_ids"][b], one["mlm_ids"]) and torch.equal(batch["mlm_labels"][b], one["mlm_labels"])
    special_only = torch.tensor([[SOT, EOT, PAD], [SOT, EOT, PAD]])
    out = masking.mask_batch(["", ""], special_only, [np.random.default_rng(0), np.random.default_rng(1)])
    assert torch.equal(out["mlm_ids"], special_only) and bool((out["mlm_labels"] == -100).all())


# =========================================================================== key-phrase masking

import json  # noqa: E402
import math  # noqa: E402
from pathlib import Path  # noqa: E402

from tireid_lite.text.key_phrases import KeyPhrase  # noqa: E402
from tireid_lite.text.masking import (  # noqa: E402
    KeyPhraseMasking,
    span_token_positions,
    token_offsets,
)
from tireid_lite.text.tokenizers import CLIPBPETokenizer, WordTokenizer  # noqa: E402

# Phrases are given by hand (character offsets found with str.index), so these tests do not need spaCy.
KP_CAPTIONS = {
    "The woman wears a white short-sleeved shirt, dark blue jeans and white sneakers.":
        ["white short-sleeved shirt", "dark blue jeans", "white sneakers"],
    "A man with short black hair wears a grey hooded jacket over a red and white striped shirt, "
    "khaki pants and dark brown leather shoes.":
        ["short black hair", "grey hooded jacket", "red and white striped shirt", "khaki pants",
         "dark brown leather shoes"],
    "A girl carries a black backpack.": ["black backpack"],
    "She has long black hair.": ["long black hair"],
    "A woman with her hand in her pocket.": [],
}  # fmt: skip


def _phrases(caption: str, texts: list[str]) -> list[KeyPhrase]:
    phrases, start = [], 0
    for text in texts:
        start = caption.index(text, start)
        end = start + len(text)
        head_start = caption.rindex(" ", start, end) + 1 if " " in text else start
        phrases.append(KeyPhrase.from_offsets(caption, start, end, head_start, end))
        start = end
    return phrases


KP_TABLE = {caption: _phrases(caption, texts) for caption, texts in KP_CAPTIONS.items()}


@pytest.fixture(scope="module")
def word_tok() -> WordTokenizer:
    return WordTokenizer.train(list(KP_CAPTIONS), max_length=40)


def _write_letter_clip(directory: Path) -> Path:
    """A CLIP-format BPE folder whose words split into letters, except "red": many sub-words per word."""
    directory.mkdir(parents=True, exist_ok=True)
    symbols = [*"abcdefghijklmnopqrstuvwxyz", ",", ".", "-"]
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": len(symbols) + i for i, s in enumerate(symbols)})
    merges = [("r", "e"), ("re", "d</w>"), ("q", "z")]  # the last merge's id becomes <|mask|>
    vocab.update({a + b: len(vocab) + i for i, (a, b) in enumerate(merges)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    return directory


@pytest.fixture(scope="module")
def clip_tok(tmp_path_factory) -> CLIPBPETokenizer:
    # room for the longest caption spelt out letter by letter
    return CLIPBPETokenizer.from_pretrained(_write_letter_clip(tmp_path_factory.mktemp("clip")), max_length=160)


def _kp_draws(masking, tok, caption: str, draws: int, seed: int):
    ids = tok([caption])[0]
    rng = np.random.default_rng(seed)
    outputs = [masking(caption, ids, rng) for _ in range(draws)]
    masked_ids = np.stack([out["mlm_ids"].numpy() for out in outputs])
    labels = np.stack([out["mlm_labels"].numpy() for out in outputs])
    return ids.numpy(), masked_ids, labels


# --------------------------------------------------------------------------- token positions


def test_token_offsets_of_the_word_tokenizer(word_tok):
    caption = "A girl carries a black backpack."
    ids, spans = token_offsets(word_tok, caption)
    assert ids == word_tok.encode(caption)[1:-1]
    assert [caption[s:e] for s, e in spans] == ["A", "girl", "carries", "a", "black", "backpack", "."]


def test_span_positions_cover_every_sub_word(clip_tok):
    caption = "A red t-shirt, blue jeans."
    # CLIP body tokens: a | red | t - s h i r t | , | b l u e | j e a n s | .
    # positions (start token at 0): a=1, red=2, t-shirt=3..9, ","=10, blue=11..14, jeans=15..19, "."=20
    assert len(clip_tok.encode(caption)) == 22
    red_tshirt, blue_jeans = span_token_positions(clip_tok, caption, [(2, 13), (15, 25)])
    assert red_tshirt.tolist() == list(range(2, 10))
    assert blue_jeans.tolist() == list(range(11, 20))
    # a span that starts or ends inside a word takes the whole word's sub-words it touches
    assert span_token_positions(clip_tok, caption, [(3, 4)])[0].tolist() == [2]  # "red" is one token
    assert span_token_positions(clip_tok, caption, [(16, 17)])[0].tolist() == [12]  # the "l" of "blue"


class _NoOffsetsTokenizer:
    """A tokenizer exposing only ``encode``/``encode_batch`` (no HF backend): offsets come from re-tokenising."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def encode(self, text):
        return self.inner.encode(text)

    def encode_batch(self, texts):
        return self.inner.encode_batch(texts)


def test_offsets_without_a_backend_come_from_re_tokenising_words(clip_tok, word_tok):
    caption = "A red t-shirt, blue jeans."
    for tok in (clip_tok, word_tok):
        ids, spans = token_offsets(_NoOffsetsTokenizer(tok), caption)
        assert ids == tok.encode(caption)[1:-1]
        phrases = [(2, 13), (15, 25)]
        assert [p.tolist() for p in span_token_positions(_NoOffsetsTokenizer(tok), caption, phrases)] == [
            p.tolist() for p in span_token_positions(tok, caption, phrases)
        ]
    ids, spans = token_offsets(_NoOffsetsTokenizer(clip_tok), caption)
    assert [caption[s:e] for s, e in spans[1:3]] == ["red", "t"]  # sub-words get their word's span


# --------------------------------------------------------------------------- masking


def test_key_phrase_masking_output_format(word_tok):
    caption = list(KP_CAPTIONS)[0]
    ids = word_tok([caption])[0]
    before = ids.clone()
    out = KeyPhraseMasking(word_tok, KP_TABLE)(caption, ids, np.random.default_rng(0))
    assert set(out) == {"mlm_ids", "mlm_labels"}
    for value in out.values():
        assert value.shape == ids.shape and value.dtype == torch.long
    assert torch.equal(ids, before)


def test_phrases_are_masked_whole_with_every_sub_word(clip_tok):
    # Phrase tokens far outnumber the budget (no top-up), so every chosen token belongs to a phrase
    # taken whole: per draw and phrase, all of its sub-words are chosen or none is.
    caption = list(KP_CAPTIONS)[1]
    masking = KeyPhraseMasking(clip_tok, KP_TABLE)
    groups = masking.phrase_positions(caption, clip_tok([caption])[0].numpy())
    # one token per letter, except "red" (one token) and the "re" of "grey"; spaces are no tokens:
    # short black hair 5+5+4, grey hooded jacket 3+6+6, red and white striped shirt 1+3+5+7+5,
    # khaki pants 5+5, dark brown leather shoes 4+5+7+5
    assert [g.size for g in groups] == [14, 15, 21, 10, 21]
    _, _, labels = _kp_draws(masking, clip_tok, caption, draws=2_000, seed=11)
    chosen = labels != -100
    in_phrase = np.zeros(chosen.shape[1], dtype=bool)
    for g in groups:
        per_draw = chosen[:, g].sum(axis=1)
        assert np.isin(per_draw, [0, g.size]).all()
        assert (per_draw == g.size).mean() > 0.02  # every phrase gets drawn
        in_phrase[g] = True
    assert not chosen[:, ~in_phrase].any()


def test_special_and_unknown_tokens_are_never_masked(word_tok):
    # "mauve" is not in the word vocabulary: [UNK], a special id, inside the phrase "mauve long shirt".
    caption = "She has long black hair and a mauve long shirt."
    table = {caption: _phrases(caption, ["long black hair", "mauve long shirt"])}
    masking = KeyPhraseMasking(word_tok, table)
    ids, masked_ids, labels = _kp_draws(masking, word_tok, caption, draws=3_000, seed=12)
    special = np.isin(ids, sorted(word_tok.special_ids))
    assert ids.tolist().count(word_tok.unk_id) == 1
    assert (labels[:, special] == -100).all()
    assert (masked_ids[:, special] == ids[special]).all()
    shirt = masking.phrase_positions(caption, ids)[1]
    assert shirt.size == 2  # "long shirt": the unknown word is left out of the unit


def test_eighty_ten_ten_inside_phrases(word_tok):
    caption = list(KP_CAPTIONS)[1]
    ids, masked_ids, labels = _kp_draws(KeyPhraseMasking(word_tok, KP_TABLE), word_tok, caption, 10_000, 13)
    chosen = labels != -100
    replaced = masked_ids[chosen]
    original = np.broadcast_to(ids, masked_ids.shape)[chosen]
    assert abs((replaced == word_tok.mask_token_id).mean() - 0.8) < 0.015
    assert abs((replaced == original).mean() - 0.1) < 0.015
    assert (labels[chosen] == original).all()


def test_caption_without_phrases_falls_back_to_random_masking(word_tok):
    caption = list(KP_CAPTIONS)[4]
    ids = word_tok([caption])[0]
    fallback = RandomTokenMasking(word_tok.mask_token_id, word_tok.vocab_size, word_tok.special_ids, 0.15)
    for seed in range(50):
        got = KeyPhraseMasking(word_tok, KP_TABLE)(caption, ids, np.random.default_rng(seed))
        want = fallback(caption, ids, np.random.default_rng(seed))
        assert torch.equal(got["mlm_ids"], want["mlm_ids"]) and torch.equal(got["mlm_labels"], want["mlm_labels"])


def test_phrases_are_redrawn_at_every_call(word_tok):
    caption = list(KP_CAPTIONS)[1]
    ids, _, labels = _kp_draws(KeyPhraseMasking(word_tok, KP_TABLE), word_tok, caption, draws=200, seed=14)
    patterns = {tuple(row) for row in (labels != -100)}
    assert len(patterns) >= 5  # five phrases, several orders: many different masks from one rng stream
    consecutive_equal = ((labels[1:] != -100) == (labels[:-1] != -100)).all(axis=1).mean()
    assert consecutive_equal < 0.5


def test_same_seed_same_key_phrase_mask(word_tok):
    caption = list(KP_CAPTIONS)[0]
    ids = word_tok([caption])[0]
    masking = KeyPhraseMasking(word_tok, KP_TABLE)
    first = masking(caption, ids, np.random.default_rng(5))
    second = masking(caption, ids, np.random.default_rng(5))
    assert torch.equal(first["mlm_ids"], second["mlm_ids"]) and torch.equal(first["mlm_labels"], second["mlm_labels"])


@pytest.mark.parametrize("tok_name", ["word_tok", "clip_tok"])
def test_masked_token_count_matches_the_random_masking_budget(request, tok_name):
    # Per caption the expected count is exactly expected_masked_tokens(N, 0.15) (see KeyPhraseMasking):
    # the mean of 20,000 draws must fall within 4 standard errors of it. The captions cover
    # phrase tokens above the budget (CLIP: letters) and below it (one short phrase: top-up).
    tok = request.getfixturevalue(tok_name)
    masking = KeyPhraseMasking(tok, KP_TABLE, prob=0.15)
    total_mean, total_expected = 0.0, 0.0
    for k, caption in enumerate(KP_CAPTIONS):
        ids, _, labels = _kp_draws(masking, tok, caption, draws=20_000, seed=100 + k)
        counts = (labels != -100).sum(axis=1)
        n = int((~np.isin(ids, sorted(tok.special_ids))).sum())
        expected = expected_masked_tokens(n, 0.15)
        standard_error = counts.std() / math.sqrt(counts.size)
        assert abs(counts.mean() - expected) < 4 * standard_error + 1e-9, (caption, counts.mean(), expected)
        total_mean += counts.mean()
        total_expected += expected
    assert abs(total_mean - total_expected) / total_expected < 0.01


def test_budget_top_up_when_phrases_are_short(word_tok):
    # "A girl carries a black backpack." has N = 7 ordinary tokens: B = 1.05 + 0.85^7 = 1.3706; the
    # only phrase has 2 tokens, so it is taken with probability 1.3706 / 2 and never topped up.
    # "She has long black hair." has N = 6: B = 0.9 + 0.85^6 = 1.2771 < 3 tokens of its phrase.
    # With prob = 0.5 and N = 7: B = 3.5 + 0.5^7 = 3.5078 > 2: the phrase always, plus 1 token, plus a
    # second with probability 0.5078.
    caption = list(KP_CAPTIONS)[2]
    ids, _, labels = _kp_draws(KeyPhraseMasking(word_tok, KP_TABLE), word_tok, caption, 20_000, 15)
    counts = (labels != -100).sum(axis=1)
    assert set(np.unique(counts)) == {0, 2}
    assert abs((counts == 2).mean() - 1.3706 / 2) < 0.015
    ids, _, labels = _kp_draws(KeyPhraseMasking(word_tok, KP_TABLE, prob=0.5), word_tok, caption, 20_000, 16)
    counts = (labels != -100).sum(axis=1)
    phrase = KeyPhraseMasking(word_tok, KP_TABLE).phrase_positions(caption, ids)[0]
    assert ((labels[:, phrase] != -100).all(axis=1)).all()
    assert set(np.unique(counts)) == {3, 4}
    assert abs((counts == 4).mean() - 0.5078) < 0.015


def test_phrase_cut_by_truncation_is_dropped(word_tok):
    caption = "A girl carries a black backpack."
    short = WordTokenizer.train(list(KP_CAPTIONS), max_length=7)  # [SOS] a girl carries a black [EOS]
    ids = short([caption])[0]
    assert short.convert_ids_to_tokens(ids)[-2:] == ["black", "[EOS]"]
    masking = KeyPhraseMasking(short, KP_TABLE)
    assert masking.phrase_positions(caption, ids.numpy()) == []
    fallback = RandomTokenMasking(short.mask_token_id, short.vocab_size, short.special_ids)
    got = masking(caption, ids, np.random.default_rng(3))
    want = fallback(caption, ids, np.random.default_rng(3))
    assert torch.equal(got["mlm_labels"], want["mlm_labels"])


def test_phrases_from_a_callable(word_tok):
    calls = []

    def phrases_for(caption):
        calls.append(caption)
        return KP_TABLE[caption]

    caption = list(KP_CAPTIONS)[3]
    out = KeyPhraseMasking(word_tok, phrases_for)(caption, word_tok([caption])[0], np.random.default_rng(0))
    assert calls == [caption] and out["mlm_labels"].shape == (40,)


def test_key_phrase_masking_rejects_bad_input(word_tok):
    with pytest.raises(ConfigError, match="phrases_for is a list"):
        KeyPhraseMasking(word_tok, [])
    with pytest.raises(ConfigError, match="prob=2"):
        KeyPhraseMasking(word_tok, KP_TABLE, prob=2)
    masking = KeyPhraseMasking(word_tok, KP_TABLE)
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="no key phrases for the caption 'A new caption.'"):
        masking("A new caption.", word_tok(["A new caption."])[0], rng)
    caption = list(KP_CAPTIONS)[2]
    with pytest.raises(ValueError, match="ids do not start with the tokenisation"):
        masking(caption, word_tok([list(KP_CAPTIONS)[3]])[0], rng)
    with pytest.raises(ValueError, match="integer tensor"):
        masking(caption, torch.zeros(3), rng)
