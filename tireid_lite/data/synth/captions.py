"""The SynthPEDES caption grammar: CUHK-PEDES-like sentences that are true of one image.

A caption mentions a random subset of the attributes that are *visible* in
the image it is written for (a backpack only when the back or side is seen,
a logo only from the front, nothing the occluder hides), with paraphrases
("a woman", "a lady", "the female pedestrian"; "is wearing", "is dressed
in", "has on"), occasional colour synonyms ("grey"/"gray", "navy"/"dark
blue") and a varied attribute order, and is 15 to 40 words long. Taught in
``01_data``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from tireid_lite.data.synth.attributes import CLOTHING_COLOURS, HAIR_COLOURS, Identity
from tireid_lite.data.synth.rng import AnyRng, scalar_rng
from tireid_lite.data.synth.vocab import (
    CARRY_VERBS,
    POSES,
    REMARKS,
    Detail,
    SceneNotes,
    zipf_pick,
)

MIN_WORDS, MAX_WORDS = 15, 40
_ITEMS = ("hat", "top", "bottom", "shoes", "hair", "bag")  # describable: worn head to toe, then hair, bag
SYNONYM_PROB = 0.15  # how often a colour with a synonym is called by it
_SYNONYMS = {c.name: c.synonyms for c in (*CLOTHING_COLOURS, *HAIR_COLOURS) if c.synonyms}
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")

_SUBJECTS = {
    "male": ("a man", "a young man", "the man", "a male pedestrian", "this man", "a guy", "the young man"),
    "female": (
        "a woman", "a lady", "the female pedestrian", "a young woman", "the woman", "this lady", "a girl",
    ),
}
_WEAR = ("is wearing", "is dressed in", "wears", "has on")
_WEAR_FRAGMENT = ("wearing", "dressed in", "in")
_WEAR_MORE = ("also wears", "is also wearing", "also has on", "is also dressed in")
_CARRY = {
    "backpack": ("carries", "is carrying", "has", "is wearing"),
    "shoulder bag": ("carries", "is carrying", "has"),
    "handbag": ("carries", "is carrying", "has", "is holding"),
}
_TOPS = {  # a word listed twice is drawn twice as often
    "t-shirt": ("t-shirt", "tee shirt", "t-shirt"),
    "shirt": ("shirt", "button-up shirt"),
    "sweater": ("sweater", "jumper", "pullover"),
    "jacket": ("jacket", "zip-up jacket"),
    "coat": ("coat", "long coat"),
}
_BOTTOMS = {
    "trousers": ("{c} trousers", "{c} pants", "a pair of {c} trousers", "long {c} pants"),
    "shorts": ("{c} shorts", "a pair of {c} shorts", "short {c} pants"),
    "skirt": ("a {c} skirt", "a knee-length {c} skirt"),
}
_VIEW_SENTENCES = {
    "front": ("{P} is walking towards the camera.", "{P} is facing the camera."),
    "back": ("{P} is walking away from the camera.", "{P} is seen from behind."),
    "left": ("{P} is walking to the left.", "{P} is seen from the side, walking left."),
    "right": ("{P} is walking to the right.", "{P} is seen from the side, walking right."),
}


@dataclass(frozen=True)
class _Voice:
    subject: str  # "a lady"
    pron: str  # "she"
    poss: str  # "her"
    gender_word: str  # "female"


def tokens_of(caption: str) -> list[str]:
    """Lower-case word tokens with punctuation dropped, as in CUHK-PEDES's ``processed_tokens``."""
    return _TOKEN.findall(caption.lower())


def word_count(caption: str) -> int:
    """Words separated by white space (the measure the 15-40 word range refers to)."""
    return len(caption.split())


def _choice(rng: random.Random, options: tuple[str, ...]) -> str:
    return options[int(rng.random() * len(options))]


def colour_word(name: str, rng: random.Random) -> str:
    """``name``, or now and then one of its synonyms."""
    synonyms = _SYNONYMS.get(name, ())
    if synonyms and rng.random() < SYNONYM_PROB:
        return _choice(rng, synonyms)
    return name


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _hair(ident: Identity, rng: random.Random) -> str:
    if ident.hair_colour is None:
        return "a shaved head"
    colour = colour_word(ident.hair_colour, rng)
    if ident.hair_style == "ponytail":
        return _choice(rng, (f"{colour} hair tied in a ponytail", _a(f"{colour} ponytail")))
    return f"{ident.hair_style} {colour} hair"


def _hat(ident: Identity, rng: random.Random) -> str:
    kinds = ("cap", "baseball cap") if ident.hat == "cap" else ("beanie", "knit hat")
    return _a(f"{colour_word(ident.hat_colour or '', rng)} {_choice(rng, kinds)}")


def _top(ident: Identity, rng: random.Random, visible: frozenset[str]) -> str:
    noun = _choice(rng, _TOPS[ident.top])
    colour = colour_word(ident.top_colour, rng)
    if ident.top in ("t-shirt", "shirt") and "arms" in visible and rng.random() < 0.6:
        if not (ident.top == "t-shirt" and ident.sleeves == "short"):
            noun = f"{ident.sleeves}-sleeved {noun}"
    pattern = ident.top_pattern
    second = colour_word(ident.pattern_colour or "", rng)
    if pattern == "striped" and "pattern" in visible:
        if rng.random() < 0.5:
            return _a(f"{colour} {noun} with {second} stripes")
        return _a(f"{colour} and {second} striped {noun}")
    if pattern == "checked" and "pattern" in visible:
        return _a(f"{colour} and {second} {_choice(rng, ('checked', 'plaid'))} {noun}")
    if pattern == "logo" and "logo" in visible:
        where = _choice(rng, ("on the front", "on the chest"))
        return _a(f"{colour} {noun} with {_a(second + ' logo')} {where}")
    return _a(f"{colour} {noun}")


def _bottom(ident: Identity, rng: random.Random) -> str:
    return _choice(rng, _BOTTOMS[ident.bottom]).format(c=colour_word(ident.bottom_colour, rng))


def _shoes(ident: Identity, rng: random.Random) -> str:
    colour = colour_word(ident.shoe_colour, rng)
    return _choice(rng, (f"{colour} shoes", f"a pair of {colour} shoes", f"{colour} sneakers"))


def _bag(ident: Identity, rng: random.Random, voice: _Voice) -> str:
    """The verb and the bag: "carries a red backpack on his back"."""
    colour = colour_word(ident.bag_colour or "", rng)
    if ident.bag == "backpack":
        phrase = _a(f"{colour} backpack") + _choice(rng, ("", f" on {voice.poss} back"))
    elif ident.bag == "shoulder bag":
        where = f" {_choice(rng, ('over', 'on'))} {voice.poss} {ident.bag_side} shoulder"
        noun = _choice(rng, ("shoulder bag", "bag"))
        phrase = _a(f"{colour} {noun}") + (where if rng.random() < 0.8 else "")
    else:
        where = f" in {voice.poss} {ident.bag_side} hand"
        noun = _choice(rng, ("handbag", "hand bag"))
        phrase = _a(f"{colour} {noun}") + (where if rng.random() < 0.8 else "")
    return f"{_choice(rng, _CARRY[ident.bag])} {phrase}"


def features_in_view(identity: Identity, view: str) -> frozenset[str]:
    """The features an unoccluded, uncropped image from ``view`` shows (what the renderer draws).

    Used when :func:`caption_for` is not told what is visible.
    """
    side = view in ("left", "right")
    shown = {"top", "bottom", "shoes", "arms"}
    if view != "back" or identity.hair_style == "bald":
        shown.add("face")
    if identity.bottom != "trousers":
        shown.add("legs")
    if identity.hat != "none":
        shown.add("hat")
    hair_under_hat = identity.hat != "none" and view == "front" and identity.hair_style != "long"
    if identity.hair_style != "bald" and not hair_under_hat:
        shown.add("hair")
    if identity.top_pattern in ("striped", "checked"):
        shown.add("pattern")
    if identity.top_pattern == "logo" and view == "front":
        shown.add("logo")
    if identity.bag == "backpack" and view != "front":
        shown.add("bag")
    if identity.bag_side is not None:
        near = {"left": "left", "right": "right"}.get(view)
        if not side or identity.bag_side == near:
            shown.add("bag")
    return frozenset(shown)


def caption_for(
    identity: Identity,
    view: str,
    rng: AnyRng,
    *,
    visible: frozenset[str] | None = None,
    coverage: float = 0.7,
    rich: tuple[Detail, SceneNotes] | None = None,
) -> str:
    """One caption, true of an image of ``identity`` seen from ``view``; randomness drawn from ``rng``.

    ``visible`` is the set of features the image shows (from the renderer;
    ``"occluded"`` in it allows a sentence saying part of the body is hidden,
    ``"others"`` says other people are drawn too, so the caption never calls
    the person the only one); by default :func:`features_in_view`. Each
    visible attribute is mentioned with probability ``coverage`` (at least two when there are two); attributes
    are then added or dropped until the caption has 15-40 words. ``rich``
    (vocabulary=rich) is the identity's :class:`~tireid_lite.data.synth.vocab.Detail`
    and the image's :class:`~tireid_lite.data.synth.vocab.SceneNotes`: shade
    words, garment kinds, materials, fits, pattern kinds, and sentences on the
    pose, a carried thing, the background, an accessory or the place. Taught in
    ``01_data``.
    """
    visible = features_in_view(identity, view) if visible is None else visible
    grammar_rng = scalar_rng(rng)
    voice = _Voice(
        subject=_choice(grammar_rng, _SUBJECTS[identity.gender]),
        pron="he" if identity.gender == "male" else "she",
        poss="his" if identity.gender == "male" else "her",
        gender_word=identity.gender,
    )
    if rich is None:
        phrases = _phrases(identity, grammar_rng, visible, voice)
    else:
        phrases = _rich_phrases(identity, rich[0], grammar_rng, visible, voice)
    order = [k for k in _ITEMS if k in phrases]
    grammar_rng.shuffle(order)
    chosen = [k for k in order if grammar_rng.random() < coverage]
    for k in order:
        if len(chosen) >= min(2, len(order)):
            break
        if k not in chosen:
            chosen.append(k)
    spare = [k for k in order if k not in chosen]
    fillers = ["view", "occluded", "alone", "gender"]
    if "occluded" not in visible:
        fillers.remove("occluded")
    if "others" in visible:  # a distractor person is drawn (knob distractor_people)
        fillers.remove("alone")
    extras = [f for f in fillers if f in ("view", "occluded") and grammar_rng.random() < 0.3]
    notes: dict[str, str] = {}
    if rich is not None:
        notes = _rich_notes(identity, rich[0], rich[1], grammar_rng, visible, voice)
        extras += [k for k in notes if grammar_rng.random() < _NOTE_PROB[k]]
    plan = _Plan.draw(grammar_rng)
    while True:
        text = plan.compose(chosen, extras, phrases, voice, view, notes)
        words = word_count(text)
        if words > MAX_WORDS and extras:
            extras.pop()
        elif words > MAX_WORDS and len(chosen) > 1:
            chosen.pop()
        elif words < MIN_WORDS and spare:
            chosen.append(spare.pop(0))
        elif words < MIN_WORDS and any(f not in extras for f in fillers):
            extras.append(next(f for f in fillers if f not in extras))
        else:
            return text


def _phrases(
    identity: Identity, rng: random.Random, visible: frozenset[str], voice: _Voice
) -> dict[str, str]:
    """One noun phrase per visible, describable attribute."""
    phrases: dict[str, str] = {}
    if "hat" in visible:
        phrases["hat"] = _hat(identity, rng)
    if "hair" in visible or (identity.hair_style == "bald" and identity.hat == "none" and "face" in visible):
        phrases["hair"] = _hair(identity, rng)
    if "top" in visible:
        phrases["top"] = _top(identity, rng, visible)
    if "bottom" in visible:
        phrases["bottom"] = _bottom(identity, rng)
    if "shoes" in visible:
        phrases["shoes"] = _shoes(identity, rng)
    if "bag" in visible and identity.bag != "none":
        phrases["bag"] = _bag(identity, rng, voice)
    return phrases


@dataclass(frozen=True)
class _Plan:
    """The sentence-level choices of one caption (verbs, where the hair goes, sentence order)."""

    fragment: bool  # "A man wearing ..." rather than "A man is wearing ..."
    wear_fragment: str
    hair_in_subject: bool  # "A woman with long hair is wearing ..."
    first_items: int  # how many worn items the first sentence lists
    wear: str
    wear_more: str
    view_sentence: int
    shuffle_rest: bool  # reorder the worn items and the later sentences by the keys below
    item_keys: tuple[float, ...]  # one per entry of _ITEMS
    sentence_keys: tuple[float, ...]  # one per later sentence: more clothes, hair, bag

    @classmethod
    def draw(cls, rng: random.Random) -> _Plan:
        return cls(
            fragment=bool(rng.random() < 0.35),
            wear_fragment=_choice(rng, _WEAR_FRAGMENT),
            hair_in_subject=bool(rng.random() < 0.45),
            first_items=1 + int(rng.random() * 3),
            wear=_choice(rng, _WEAR),
            wear_more=_choice(rng, _WEAR_MORE),
            view_sentence=int(rng.random() * 2),
            shuffle_rest=bool(rng.random() < 0.3),
            item_keys=tuple(rng.random() for _ in _ITEMS),
            sentence_keys=tuple(rng.random() for _ in range(3)),
        )

    def compose(
        self, chosen: list[str], extras: list[str], phrases: dict[str, str], voice: _Voice, view: str,
        notes: dict[str, str] | None = None,
    ) -> str:
        """The caption for these attributes and extra sentences (deterministic given the plan)."""
        worn = [k for k in _ITEMS[:4] if k in chosen]
        if self.shuffle_rest:  # a different attribute order now and then
            worn.sort(key=lambda k: self.item_keys[_ITEMS.index(k)])
        subject = voice.subject
        hair_done = "hair" in chosen and self.hair_in_subject
        if hair_done:
            subject += f" with {phrases['hair']}"
        sentences = []
        first, rest = worn[: self.first_items], worn[self.first_items :]
        view_text = _VIEW_SENTENCES[view][self.view_sentence]
        if first:
            verb = self.wear_fragment if self.fragment else self.wear
            if first[0] not in ("top", "bottom") and verb in ("is dressed in", "dressed in", "in"):
                verb = "wearing" if self.fragment else "is wearing"  # dressed in clothes, but wearing shoes
            sentences.append(f"{subject} {verb} {_join([phrases[k] for k in first])}.")
        else:
            sentences.append(view_text.replace("{P}", subject))
        later = []
        if rest:
            more = self.wear_more
            if rest[0] not in ("top", "bottom") and "dressed" in more:
                more = "is also wearing"
            later.append(f"{{P}} {more} {_join([phrases[k] for k in rest])}.")
        if "hair" in chosen and not hair_done:
            later.append(f"{{P}} has {phrases['hair']}.")
        if "bag" in chosen:
            later.append(f"{{P}} {phrases['bag']}.")
        if self.shuffle_rest:
            order = sorted(range(len(later)), key=lambda i: self.sentence_keys[i])
            later = [later[i] for i in order]
        if "view" in extras and first:
            later.append(view_text)
        if "occluded" in extras:
            later.append(f"Part of {voice.poss} body is hidden from view.")
        if "alone" in extras:
            later.append(f"{voice.pron} is the only person in the picture.")
        if "gender" in extras:
            later.append(f"The pedestrian is {voice.gender_word}.")
        later += [notes[e] for e in extras if notes and e in notes]
        sentences += [s.replace("{P}", voice.pron) for s in later]
        return " ".join(s[0].upper() + s[1:] for s in sentences)


# ---------------------------------------------------------------------------------------- rich vocabulary

_NOTE_PROB = {"carried": 0.8, "scene": 0.6, "pose": 0.5, "accessory": 0.4, "place": 0.3}  # in this order
_KIND_PROB = 0.6  # the identity's garment kind rather than the basic noun
_SHADE_WORD_PROB = 0.85  # a shaded garment called by its shade rather than its base colour
_MATERIAL_PROB, _FIT_PROB = 0.35, 0.3


def _shade_word(d: Detail, name: str, colour: str | None, rng: random.Random) -> str:
    shade = d.shades.get(name)
    if shade is not None and rng.random() < _SHADE_WORD_PROB:
        return shade
    return colour_word(colour or "", rng)


def _adjectives(d: Detail, slot: str, colour: str, rng: random.Random) -> str:
    """``fit colour material``, each optional but the colour: "loose crimson cotton"."""
    words = []
    if slot in d.fits and rng.random() < _FIT_PROB:
        words.append(d.fits[slot])
    words.append(colour)
    if slot in d.materials and rng.random() < _MATERIAL_PROB:
        words.append(d.materials[slot])
    return " ".join(words)


def _rich_top(ident: Identity, d: Detail, rng: random.Random, visible: frozenset[str]) -> str:
    noun = d.kinds["top"] if rng.random() < _KIND_PROB else _choice(rng, _TOPS[ident.top])
    colour = _shade_word(d, "top_colour", ident.top_colour, rng)
    lead = _adjectives(d, "top", colour, rng)
    second = _shade_word(d, "pattern_colour", ident.pattern_colour, rng)
    pattern = ident.top_pattern
    if pattern == "striped" and "pattern" in visible:
        if rng.random() < 0.5:
            return _a(f"{lead} {noun} with {second} stripes")
        return _a(f"{colour} and {second} {d.pattern} {noun}")
    if pattern == "checked" and "pattern" in visible:
        return _a(f"{colour} and {second} {d.pattern} {noun}")
    if pattern == "logo" and "logo" in visible:
        where = _choice(rng, ("on the front", "on the chest"))
        return _a(f"{lead} {noun} with {_a(f'{second} {d.pattern} logo')} {where}")
    if pattern == "plain" and rng.random() < 0.2:
        return _a(f"{d.pattern} {lead} {noun}")
    return _a(f"{lead} {noun}")


def _rich_bottom(ident: Identity, d: Detail, rng: random.Random) -> str:
    basic = {"trousers": ("trousers", "pants"), "shorts": ("shorts",), "skirt": ("skirt",)}[ident.bottom]
    noun = d.kinds["bottom"] if rng.random() < _KIND_PROB else _choice(rng, basic)
    lead = _adjectives(d, "bottom", _shade_word(d, "bottom_colour", ident.bottom_colour, rng), rng)
    if ident.bottom == "skirt":
        return _a(f"{lead} {noun}")
    return f"a pair of {lead} {noun}" if rng.random() < 0.3 else f"{lead} {noun}"


def _rich_shoes(ident: Identity, d: Detail, rng: random.Random) -> str:
    noun = d.kinds["shoes"] if rng.random() < _KIND_PROB else _choice(rng, ("shoes", "sneakers"))
    lead = _adjectives(d, "shoes", _shade_word(d, "shoe_colour", ident.shoe_colour, rng), rng)
    return f"a pair of {lead} {noun}" if rng.random() < 0.4 else f"{lead} {noun}"


def _rich_hat(ident: Identity, d: Detail, rng: random.Random) -> str:
    basic = ("cap", "baseball cap") if ident.hat == "cap" else ("beanie", "knit hat")
    noun = d.kinds.get("hat", "") if rng.random() < _KIND_PROB else ""
    return _a(f"{_shade_word(d, 'hat_colour', ident.hat_colour, rng)} {noun or _choice(rng, basic)}")


def _rich_hair(ident: Identity, d: Detail, rng: random.Random) -> str:
    if ident.hair_colour is None:
        return _choice(rng, ("a shaved head", "a bald head", "a clean-shaven head"))
    colour = _shade_word(d, "hair_colour", ident.hair_colour, rng)
    if ident.hair_style == "ponytail":
        return _choice(rng, (f"{colour} hair tied in a ponytail", _a(f"{colour} ponytail")))
    length = {"short": ("short", "cropped", "neat short"), "long": ("long", "flowing", "shoulder-length")}
    return f"{_choice(rng, length[ident.hair_style])} {colour} hair"


def _rich_bag(ident: Identity, d: Detail, rng: random.Random, voice: _Voice) -> str:
    colour = _adjectives(d, "bag", _shade_word(d, "bag_colour", ident.bag_colour, rng), rng)
    kind = d.kinds.get("bag", "") if rng.random() < _KIND_PROB else ""
    if ident.bag == "backpack":
        phrase = _a(f"{colour} {kind or 'backpack'}") + _choice(rng, ("", f" on {voice.poss} back"))
    elif ident.bag == "shoulder bag":
        where = f" {_choice(rng, ('over', 'on'))} {voice.poss} {ident.bag_side} shoulder"
        phrase = _a(f"{colour} {kind or _choice(rng, ('shoulder bag', 'bag'))}") + (where if rng.random() < 0.8 else "")
    else:
        where = f" in {voice.poss} {ident.bag_side} hand"
        phrase = _a(f"{colour} {kind or _choice(rng, ('handbag', 'hand bag'))}") + (where if rng.random() < 0.8 else "")
    return f"{_choice(rng, _CARRY[ident.bag])} {phrase}"


def _rich_phrases(
    identity: Identity, d: Detail, rng: random.Random, visible: frozenset[str], voice: _Voice
) -> dict[str, str]:
    """As :func:`_phrases`, in the rich vocabulary."""
    phrases: dict[str, str] = {}
    if "hat" in visible:
        phrases["hat"] = _rich_hat(identity, d, rng)
    if "hair" in visible or (identity.hair_style == "bald" and identity.hat == "none" and "face" in visible):
        phrases["hair"] = _rich_hair(identity, d, rng)
    if "top" in visible:
        phrases["top"] = _rich_top(identity, d, rng, visible)
    if "bottom" in visible:
        phrases["bottom"] = _rich_bottom(identity, d, rng)
    if "shoes" in visible:
        phrases["shoes"] = _rich_shoes(identity, d, rng)
    if "bag" in visible and identity.bag != "none":
        phrases["bag"] = _rich_bag(identity, d, rng, voice)
    return phrases


def _rich_notes(
    identity: Identity, d: Detail, notes: SceneNotes, rng: random.Random, visible: frozenset[str], voice: _Voice
) -> dict[str, str]:
    """The optional sentences of a rich caption, keyed as :data:`_NOTE_PROB` (``{P}`` is the pronoun)."""
    fill = {"pron": voice.pron, "poss": voice.poss, "obj": "him" if voice.pron == "he" else "her"}
    out: dict[str, str] = {}
    if d.carried and "carried" in visible:
        colour = colour_word(d.carried_colour, rng)
        where = f" in {voice.poss} hand" if rng.random() < 0.5 else ""
        out["carried"] = f"{{P}} {_choice(rng, CARRY_VERBS)} {_a(f'{colour} {d.carried}')}{where}."
    if notes.remarks:
        remark = zipf_pick(rng, REMARKS[_choice(rng, notes.remarks)])
        colour = colour_word(notes.distractor_colour, rng) if notes.distractor_colour else "dark clothes"
        out["scene"] = remark.format(Pron=voice.pron, Poss=voice.poss, colour=colour, **fill)
    out["pose"] = "{P} " + zipf_pick(rng, POSES[_choice(rng, notes.pose)]).format(**fill) + "."
    if d.accessory:
        out["accessory"] = f"{{P}} {_choice(rng, ('also wears', 'has on', 'is wearing'))} {d.accessory}."
    if notes.place:
        out["place"] = _choice(rng, (f"{{P}} is {notes.place}.", f"The photo was taken {notes.place}."))
    return out
