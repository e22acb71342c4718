"""Tokenizers: ids worked out by hand from tiny vocabularies written here."""

from __future__ import annotations

import json
import pickle
import string
from pathlib import Path

import numpy as np
import pytest
import torch

from tireid_lite.errors import ConfigError
from tireid_lite.text.tokenizers import CLIPBPETokenizer, WordTokenizer, load_tokenizer

CAPTIONS = ["A man in a red coat.", "a woman in a red dress", "The man carries a bag."]
# Word counts after lowercasing: a 5; "." in man red 2; bag carries coat dress the woman 1.
# Ids: specials 0-4, then by count (desc) and alphabetically within a count.
WORD_IDS = {
    "[PAD]": 0, "[SOS]": 1, "[EOS]": 2, "[MASK]": 3, "[UNK]": 4,
    "a": 5, ".": 6, "in": 7, "man": 8, "red": 9,
    "bag": 10, "carries": 11, "coat": 12, "dress": 13, "the": 14, "woman": 15,
}  # fmt: skip


@pytest.fixture()
def word_tok() -> WordTokenizer:
    return WordTokenizer.train(CAPTIONS, max_length=12)


def test_word_vocabulary_is_sorted_by_frequency_then_alphabet(word_tok):
    assert word_tok.vocab_size == len(WORD_IDS)
    assert word_tok.convert_ids_to_tokens(list(range(16))) == list(WORD_IDS)
    specials = (word_tok.pad_id, word_tok.sot_id, word_tok.eot_id, word_tok.mask_token_id, word_tok.unk_id)
    assert specials == (0, 1, 2, 3, 4)
    assert word_tok.special_ids == {0, 1, 2, 3, 4}


def test_word_ids_do_not_depend_on_caption_order(word_tok):
    reordered = WordTokenizer.train(CAPTIONS[::-1], max_length=12)
    assert reordered.convert_ids_to_tokens(list(range(16))) == list(WORD_IDS)


def test_word_counts_per_id(word_tok):
    expected = np.array([0, 0, 0, 0, 0, 5, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(word_tok.word_counts, expected)


def test_min_freq_sends_rare_words_to_unk():
    tok = WordTokenizer.train(CAPTIONS, min_freq=2)
    assert tok.vocab_size == 10  # 5 specials + a . in man red
    assert tok.encode("the man") == [1, 4, 8, 2]
    assert tok.word_counts[4] == 6  # six words seen once
    assert tok.word_counts.sum() == 5 + 4 * 2 + 6


def test_encode_adds_start_and_end_only(word_tok):
    assert word_tok.encode("A man in a red coat.") == [1, 5, 8, 7, 5, 9, 12, 6, 2]
    assert word_tok.encode("a blue coat") == [1, 5, 4, 12, 2]
    assert word_tok.encode("") == [1, 2]
    long_text = " ".join(["man"] * 30)
    assert len(word_tok.encode(long_text)) == 32  # no truncation in encode


def test_call_pads_to_max_length(word_tok):
    ids = word_tok(["a man", "The red bag."])
    assert ids.dtype == torch.long and ids.shape == (2, 12)
    assert ids[0].tolist() == [1, 5, 8, 2] + [0] * 8
    assert ids[1].tolist() == [1, 14, 9, 10, 6, 2] + [0] * 6
    assert word_tok("a man").tolist() == [[1, 5, 8, 2] + [0] * 8]


def test_call_truncates_the_tail_and_keeps_the_end_token():
    tok = WordTokenizer.train(CAPTIONS, max_length=5)
    assert tok(["A man in a red coat."]).tolist() == [[1, 5, 8, 7, 2]]
    assert tok(["a man in"]).tolist() == [[1, 5, 8, 7, 2]]  # exactly max_length: untouched


def test_attention_mask_covers_up_to_the_end_token(word_tok):
    ids = word_tok(["a man", "The red bag."])
    expected = torch.zeros(2, 12, dtype=torch.long)
    expected[0, :4] = 1
    expected[1, :6] = 1
    assert torch.equal(word_tok.attention_mask(ids), expected)
    assert word_tok.attention_mask(ids[0]).tolist() == expected[0].tolist()


def test_decode_skips_specials(word_tok):
    assert word_tok.decode([1, 5, 8, 3, 9, 2, 0, 0]) == "a man red"
    assert word_tok.decode(torch.tensor([1, 14, 10, 6, 2])) == "the bag ."
    assert word_tok.convert_ids_to_tokens([1, 5, 3, 4]) == ["[SOS]", "a", "[MASK]", "[UNK]"]
    with pytest.raises(ValueError, match="outside"):
        word_tok.decode([1, 99])
    with pytest.raises(ValueError, match="1-D"):
        word_tok.decode(torch.zeros(2, 3, dtype=torch.long))


def test_non_ascii_captions_are_normalised():
    tok = WordTokenizer.train(["a cafe, red."])
    assert tok.encode("Ａ CAFÉ，Red") == tok.encode("a cafe, red")  # full-width letters and comma, accent
    assert tok.encode("naïve") == tok.encode("naive")
    assert tok.unk_id not in tok.encode("A Café")


def test_uppercase_kept_when_lowercase_is_off():
    tok = WordTokenizer.train(["Red red"], lowercase=False)
    assert tok.vocab_size == 7 and tok.encode("Red red") != tok.encode("red red")


def test_word_save_load_round_trip(word_tok, tmp_path):
    word_tok.save(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert isinstance(loaded, WordTokenizer)
    assert loaded.max_length == 12 and loaded.vocab_size == 16
    assert loaded.convert_ids_to_tokens(list(range(16))) == list(WORD_IDS)
    np.testing.assert_array_equal(loaded.word_counts, word_tok.word_counts)
    assert torch.equal(loaded(["Ａ man in a red coat."]), word_tok(["a man in a red coat."]))
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["tireid_tokenizer.json", "tokenizer.json"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_length": 1}, "max_length"), ({"min_freq": 0}, "min_freq")],
)
def test_word_train_rejects_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        WordTokenizer.train(CAPTIONS, **kwargs)


def test_word_train_needs_captions():
    with pytest.raises(ConfigError, match="no captions"):
        WordTokenizer.train([])


def test_load_errors_name_the_directory(tmp_path, word_tok):
    with pytest.raises(ConfigError, match="tireid_tokenizer.json not found"):
        load_tokenizer(tmp_path)
    word_tok.save(tmp_path)
    meta = json.loads((tmp_path / "tireid_tokenizer.json").read_text())
    (tmp_path / "tireid_tokenizer.json").write_text(json.dumps({**meta, "kind": "sentencepiece"}))
    with pytest.raises(ConfigError, match="unknown tokenizer kind 'sentencepiece'"):
        load_tokenizer(tmp_path)
    (tmp_path / "tireid_tokenizer.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_tokenizer(tmp_path)


# --- CLIP BPE from a tiny local checkpoint --------------------------------------------

LETTERS = list(string.ascii_lowercase) + [",", "."]
# ids 0-27 letters, 28-55 letters + "</w>", then one id per merge, then the two specials
MERGES = [("t", "h"), ("th", "e</w>"), ("r", "e"), ("re", "d</w>"), ("a", "n"), ("an", "d</w>"),
          ("m", "a"), ("ma", "n</w>"), ("q", "z")]  # fmt: skip
MERGE_IDS = {"th": 56, "the</w>": 57, "re": 58, "red</w>": 59, "an": 60, "and</w>": 61,
             "ma": 62, "man</w>": 63, "qz": 64}  # fmt: skip
SOT, EOT = 65, 66


def write_clip_dir(directory: Path) -> Path:
    """A CLIP-format tokenizer folder (vocab.json + merges.txt) with 67 entries."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(LETTERS)}
    vocab.update({c + "</w>": len(LETTERS) + i for i, c in enumerate(LETTERS)})
    vocab.update({a + b: len(vocab) + i for i, (a, b) in enumerate(MERGES)})
    vocab.update({"<|startoftext|>": SOT, "<|endoftext|>": EOT})
    assert {k: vocab[k] for k in MERGE_IDS} == MERGE_IDS
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in MERGES) + "\n")
    return directory


@pytest.fixture()
def clip_tok(tmp_path) -> CLIPBPETokenizer:
    return CLIPBPETokenizer.from_pretrained(write_clip_dir(tmp_path / "clip"))


def test_clip_special_ids_follow_irra(clip_tok):
    # <|mask|> takes the id of the last merge ("qz"); the vocabulary keeps its size
    assert clip_tok.vocab_size == 67
    assert (clip_tok.sot_id, clip_tok.eot_id, clip_tok.mask_token_id) == (SOT, EOT, 64)
    assert clip_tok.pad_id == EOT and clip_tok.unk_id == EOT
    assert clip_tok.special_ids == {SOT, EOT, 64}
    assert clip_tok.max_length == 77
    assert clip_tok.convert_ids_to_tokens([64, SOT, EOT]) == ["<|mask|>", "<|startoftext|>", "<|endoftext|>"]


def test_clip_encode_uses_the_merges(clip_tok):
    the, man, and_, red = (MERGE_IDS[w + "</w>"] for w in ("the", "man", "and", "red"))
    dot = 55  # ".</w>"
    assert clip_tok.encode("The man and the RED.") == [SOT, the, man, and_, the, red, dot, EOT]
    # "bad": no merge applies, so b, a, d</w>
    assert clip_tok.encode("bad") == [SOT, 1, 0, 28 + 3, EOT]
    # the dropped last merge no longer fuses q and z
    assert clip_tok.encode("qzq") == [SOT, 16, 25, 28 + 16, EOT]
    assert clip_tok.encode("the <|mask|> man") == [SOT, the, 64, man, EOT]


def test_clip_pad_truncate_mask_decode(clip_tok, tmp_path):
    ids = clip_tok(["the man", "the red man and the man"])
    assert ids.shape == (2, 77) and ids.dtype == torch.long
    assert ids[0, :4].tolist() == [SOT, 57, 63, EOT] and (ids[0, 4:] == EOT).all()
    mask = clip_tok.attention_mask(ids)
    assert mask[0].sum() == 4 and mask[1].sum() == 8 and mask[0, :4].tolist() == [1, 1, 1, 1]
    short = CLIPBPETokenizer.from_pretrained(tmp_path / "clip", max_length=5)
    assert short(["the red man and the man"]).tolist() == [[SOT, 57, 59, 63, EOT]]
    assert clip_tok.decode([SOT, 57, 64, 59, 63, EOT, EOT]) == "the red man"


def test_clip_save_load_round_trip(clip_tok, tmp_path):
    clip_tok.save(tmp_path / "saved")
    loaded = load_tokenizer(tmp_path / "saved")
    assert isinstance(loaded, CLIPBPETokenizer)
    assert (loaded.vocab_size, loaded.mask_token_id, loaded.sot_id, loaded.eot_id) == (67, 64, SOT, EOT)
    text = "The man and the red qz. <|mask|>"
    assert loaded.encode(text) == clip_tok.encode(text)
    assert not [p for p in (tmp_path / "saved").iterdir() if p.name.startswith(".")]


def test_clip_missing_directory_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"does not exist; run `python data_setup/get_clip.py --out"):
        CLIPBPETokenizer.from_pretrained(tmp_path / "nowhere")


def test_clip_incomplete_directory_names_the_missing_files(tmp_path):
    directory = write_clip_dir(tmp_path / "clip")
    (directory / "merges.txt").unlink()
    with pytest.raises(ConfigError, match=r"missing merges.txt .*get_clip.py --out"):
        CLIPBPETokenizer.from_pretrained(directory)


def test_clip_directory_without_clip_specials_is_refused(tmp_path):
    directory = write_clip_dir(tmp_path / "clip")
    vocab = json.loads((directory / "vocab.json").read_text())
    del vocab["<|startoftext|>"]
    (directory / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(ConfigError, match=r"not a CLIP tokenizer: its vocabulary lacks <\|startoftext\|>"):
        CLIPBPETokenizer.from_pretrained(directory)


def test_tokenizers_survive_pickling_for_dataloader_workers(clip_tok, word_tok):
    for tok, text in ((clip_tok, "the red man"), (word_tok, "a red man")):
        copy = pickle.loads(pickle.dumps(tok))
        ids = tok.encode(text)
        assert copy.encode(text) == ids
        assert copy.decode(ids) == tok.decode(ids) == text


def test_runs_on_the_same_captions_share_one_trained_tokenizer():
    from tireid_lite.data.build import trained_word_tokenizer

    captions = ["a man in a red coat", "a woman with a blue bag", "a man in a red coat"]
    first = trained_word_tokenizer(captions, max_length=16)
    assert trained_word_tokenizer(list(captions), max_length=16) is first
    fresh = WordTokenizer.train(captions, max_length=16)
    assert first.convert_ids_to_tokens(range(first.vocab_size)) == fresh.convert_ids_to_tokens(range(fresh.vocab_size))
    np.testing.assert_array_equal(first.word_counts, fresh.word_counts)
    assert trained_word_tokenizer(captions, max_length=20) is not first  # another length: another tokenizer
    other = trained_word_tokenizer([*captions, "a child in green shoes"], max_length=16)
    assert other is not first and "green" in other.convert_ids_to_tokens(range(other.vocab_size))
    # joined captions that only differ in where one caption ends are different corpora
    assert trained_word_tokenizer(["a b", "c"], max_length=16) is not trained_word_tokenizer(["a", "b c"], max_length=16)
