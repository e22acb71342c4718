"""The rich SynthPEDES vocabulary (knob ``vocabulary=rich``): shades, garment kinds, materials, poses, remarks.

With ``vocabulary=rich`` every identity gets a :class:`Detail` (drawn once, the
same in all its images) and every image a set of scene remarks read from its
:class:`~tireid_lite.data.synth.scene.Scene`. Each word list is drawn with
Zipf-like weights (the first entry most often), so the caption vocabulary has a
long tail. What is *drawn* and what is *caption-only* (:data:`GROUNDING`):

- drawn: colour shades (each shade has its own RGB value near its base colour,
  and the garment is painted in it), carried things (painted in the hand, in
  their own colour, part class ``bag``), poses (the words follow the stride and
  arm swing the scene drew), background remarks (occluder kind, distractor
  people and their colours, clutter, lighting, background tone);
- caption-only: garment kinds, materials, fits, pattern kinds (the drawing shows
  the base kind: stripes, checks or a logo), accessories, places. These are true
  of the identity (the same words in all its captions) but too small to draw at
  96x32; ``attributes.json`` lists them under ``vocabulary.caption_only``.

Taught in ``01_data``.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from tireid_lite.data.synth.attributes import (
    Identity,
    clothing_colour,
)
from tireid_lite.data.synth.rng import AnyRng, scalar_rng

SHADE_PROB = 0.7  # chance that a coloured garment of a rich identity is a named shade of its colour
CARRY_PROB = 0.35  # chance that a rich identity (without a handbag) carries something in the hand
ACCESSORY_PROB = 0.5

# Shades of each clothing colour: (words, RGB). Every RGB is nearer its own base colour than any other
# clothing colour, and at least 15 away (Euclidean) from its base and from the other shades of that base.
SHADES: dict[str, tuple[tuple[str, tuple[int, int, int]], ...]] = {
    "black": (("jet black", (8, 8, 10)), ("charcoal", (52, 52, 56)), ("ebony", (48, 38, 30)),
              ("onyx", (16, 20, 52)), ("coal black", (22, 14, 10))),
    "white": (("snow white", (250, 250, 250)), ("ivory", (240, 234, 208)), ("cream", (242, 222, 186)),
              ("off-white", (218, 216, 206)), ("pearl", (226, 224, 238)), ("chalk", (244, 244, 232))),
    "grey": (("silver", (156, 158, 168)), ("slate", (104, 112, 128)), ("ash", (150, 148, 144)),
             ("graphite", (96, 96, 104)), ("pewter", (138, 142, 152)), ("smoke grey", (112, 114, 114)),
             ("heather grey", (150, 142, 162))),
    "blue": (("sky blue", (80, 150, 225)), ("royal blue", (40, 66, 205)), ("cobalt", (0, 71, 171)),
             ("azure", (40, 130, 225)), ("cornflower", (96, 128, 232)), ("denim blue", (62, 100, 150)),
             ("sapphire", (22, 58, 180)), ("electric blue", (30, 110, 250))),
    "red": (("crimson", (170, 20, 50)), ("scarlet", (232, 36, 18)), ("cherry red", (212, 16, 64)),
            ("brick red", (170, 62, 50)), ("tomato red", (226, 62, 52)), ("blood red", (146, 10, 18))),
    "navy": (("midnight blue", (22, 30, 76)), ("indigo", (52, 30, 112)), ("ink blue", (32, 50, 122)),
             ("marine blue", (20, 56, 100))),
    "brown": (("chocolate", (88, 50, 28)), ("tan", (150, 100, 60)), ("chestnut", (132, 60, 34)),
              ("mocha", (122, 90, 68)), ("caramel", (162, 98, 48)), ("rust", (160, 72, 34)),
              ("walnut", (98, 66, 46)), ("coffee brown", (78, 58, 44))),
    "green": (("olive green", (90, 130, 48)), ("emerald", (20, 152, 92)), ("forest green", (28, 98, 44)),
              ("mint green", (70, 182, 102)), ("jade", (32, 162, 124)), ("moss green", (70, 110, 52)),
              ("kelly green", (50, 166, 56))),
    "pink": (("rose", (220, 108, 140)), ("salmon", (240, 140, 120)), ("coral", (240, 118, 108)),
             ("blush", (240, 172, 190)), ("fuchsia", (222, 60, 162)), ("hot pink", (246, 100, 170)),
             ("dusty pink", (200, 130, 150))),
    "beige": (("sand", (200, 180, 128)), ("camel", (190, 150, 100)), ("taupe", (186, 164, 136)),
              ("oatmeal", (226, 212, 178)), ("stone", (204, 190, 164)), ("wheat", (232, 202, 140))),
    "yellow": (("mustard", (210, 175, 35)), ("lemon", (246, 232, 72)), ("canary", (250, 214, 40)),
               ("amber", (234, 170, 30)), ("sunflower", (242, 192, 18))),
    "purple": (("violet", (140, 70, 204)), ("lavender", (150, 90, 196)), ("plum", (110, 40, 110)),
               ("grape", (90, 40, 132)), ("aubergine", (96, 30, 120))),
    "orange": (("tangerine", (246, 142, 18)), ("pumpkin", (220, 108, 18)), ("copper", (190, 100, 50)),
               ("ginger", (212, 122, 56)), ("marigold", (246, 162, 30)), ("burnt orange", (200, 88, 28))),
}
HAIR_SHADES: dict[str, tuple[tuple[str, tuple[int, int, int]], ...]] = {
    "black": (("jet black", (6, 6, 8)), ("raven", (30, 28, 36))),
    "brown": (("dark brown", (58, 36, 20)), ("light brown", (138, 94, 56)), ("auburn", (132, 56, 28)),
              ("chestnut", (110, 62, 30))),
    "blonde": (("golden blonde", (226, 178, 76)), ("platinum blonde", (232, 222, 186)),
               ("ash blonde", (190, 170, 130)), ("strawberry blonde", (214, 150, 96))),
    "grey": (("silver", (192, 192, 198)), ("steel grey", (120, 124, 130))),
}
SHADE_RGB: dict[str, tuple[int, int, int]] = {w: rgb for table in (SHADES,) for v in table.values() for w, rgb in v}
HAIR_SHADE_RGB: dict[str, tuple[int, int, int]] = {w: rgb for v in HAIR_SHADES.values() for w, rgb in v}

# Garment kinds (caption-only: the drawing shows the base garment), by base garment, most frequent first.
KINDS: dict[str, dict[str, tuple[str, ...]]] = {
    "top": {
        "t-shirt": ("polo shirt", "tank top", "v-neck t-shirt", "crew-neck tee", "henley", "sports jersey",
                    "muscle shirt", "raglan tee", "ringer tee"),
        "shirt": ("blouse", "flannel shirt", "dress shirt", "oxford shirt", "work shirt", "tunic", "camp shirt",
                  "western shirt", "overshirt"),
        "sweater": ("cardigan", "hoodie", "sweatshirt", "turtleneck", "fleece top", "crewneck sweater",
                    "v-neck sweater", "jersey knit", "quarter-zip sweater"),
        "jacket": ("bomber jacket", "windbreaker", "blazer", "puffer jacket", "track jacket", "varsity jacket",
                   "biker jacket", "anorak", "softshell jacket", "field jacket", "harrington jacket"),
        "coat": ("trench coat", "overcoat", "peacoat", "duffle coat", "parka", "raincoat", "topcoat",
                 "car coat", "down coat", "mackintosh"),
    },
    "bottom": {
        "trousers": ("jeans", "chinos", "slacks", "cargo pants", "joggers", "sweatpants", "leggings",
                     "track pants", "corduroys", "dress pants", "skinny jeans", "flared trousers"),
        "shorts": ("bermuda shorts", "cargo shorts", "denim shorts", "running shorts", "board shorts",
                   "cycling shorts", "chino shorts", "basketball shorts"),
        "skirt": ("pleated skirt", "pencil skirt", "miniskirt", "maxi skirt", "a-line skirt", "wrap skirt",
                  "tulip skirt", "flared skirt", "tiered skirt"),
    },
    "shoes": {
        "any": ("sneakers", "boots", "loafers", "sandals", "trainers", "running shoes", "ankle boots",
                "oxfords", "high-tops", "moccasins", "slip-ons", "brogues", "clogs", "espadrilles", "mules",
                "flats", "heels", "pumps", "hiking boots", "canvas shoes", "platform shoes", "deck shoes"),
    },
    "hat": {
        "cap": ("baseball cap", "trucker cap", "flat cap", "snapback", "peaked cap", "newsboy cap",
                "golf cap"),
        "beanie": ("bobble hat", "knit cap", "wool hat", "toque", "watch cap", "ski hat", "slouchy beanie"),
    },
    "bag": {
        "backpack": ("rucksack", "daypack", "school bag", "hiking pack", "laptop backpack", "drawstring bag"),
        "shoulder bag": ("messenger bag", "satchel", "tote bag", "crossbody bag", "sling bag", "duffel bag",
                         "camera bag"),
        "handbag": ("clutch", "purse", "tote", "bucket bag", "briefcase", "pouch", "hobo bag"),
    },
}
MATERIALS: dict[str, tuple[str, ...]] = {
    "top": ("cotton", "linen", "wool", "fleece", "polyester", "knitted", "silk", "cashmere", "flannel",
            "satin", "velvet", "chiffon", "lace", "mesh", "jersey", "tweed", "quilted", "padded",
            "corduroy", "suede", "nylon", "waterproof", "leather", "denim"),
    "bottom": ("denim", "cotton", "corduroy", "wool", "linen", "polyester", "leather", "velvet", "satin",
               "nylon", "twill", "spandex"),
    "shoes": ("leather", "suede", "canvas", "rubber", "patent leather", "mesh", "faux leather", "knit"),
    "bag": ("leather", "canvas", "nylon", "suede", "straw", "woven", "plastic", "vinyl"),
}
FITS: dict[str, tuple[str, ...]] = {
    "top": ("loose", "fitted", "oversized", "cropped", "baggy", "snug", "boxy", "lightweight", "thick", "thin",
            "warm", "heavy", "hooded", "buttoned", "unbuttoned", "zipped", "open", "casual", "smart", "sporty",
            "vintage", "crisp", "wrinkled", "faded"),
    "bottom": ("slim", "skinny", "straight-leg", "wide-leg", "baggy", "tapered", "rolled-up", "ripped",
               "distressed", "high-waisted", "low-rise", "cuffed", "pressed", "worn", "faded", "loose"),
}
PATTERN_WORDS: dict[str, tuple[str, ...]] = {  # refinements of the drawn pattern
    "striped": ("horizontally striped", "banded", "thin-striped", "wide-striped", "breton-striped",
                "rugby-striped", "candy-striped"),
    "checked": ("plaid", "tartan", "gingham", "checkered", "houndstooth", "buffalo-check", "windowpane-check"),
    "logo": ("graphic", "printed", "emblem", "badge", "slogan", "brand", "crest", "cartoon", "sports-team"),
    "plain": ("solid", "plain", "simple", "unpatterned", "single-coloured"),
}
ACCESSORIES: tuple[str, ...] = (
    "glasses", "sunglasses", "a wristwatch", "a scarf", "a belt", "earrings", "a necklace", "a bracelet",
    "gloves", "a face mask", "headphones", "earbuds", "a lanyard", "a tie", "a ring", "a hair clip", "a headband",
    "a wristband", "a bow tie", "reading glasses", "a neck pillow", "a badge",
)
PLACES: tuple[str, ...] = (
    "on a street", "on the sidewalk", "on a pavement", "in a plaza", "on a crosswalk", "on a campus",
    "near a station", "in a square", "in a parking lot", "near a mall entrance", "at a bus stop",
    "in an alley", "on a park path", "in a corridor", "near a crossroads", "on a bridge", "by a shop front",
    "in a market", "outside an office", "near a bike rack",
)
# Carried things (drawn in the free hand): words and the shape's (half width, top, bottom) around the hand.
CARRIED: dict[str, tuple[float, float, float]] = {
    "phone": (0.014, -0.02, 0.02), "coffee cup": (0.018, -0.03, 0.01), "umbrella": (0.012, -0.02, 0.36),
    "water bottle": (0.014, -0.05, 0.02), "shopping bag": (0.04, 0.02, 0.14), "book": (0.03, -0.03, 0.04),
    "folder": (0.035, -0.04, 0.05), "newspaper": (0.028, -0.04, 0.03), "paper bag": (0.035, 0.02, 0.11),
    "tablet": (0.03, -0.03, 0.03), "plastic bag": (0.035, 0.02, 0.12), "suitcase": (0.06, 0.01, 0.4),
    "tennis racket": (0.03, -0.02, 0.22), "flower bouquet": (0.03, -0.06, 0.02), "lunch box": (0.03, 0.0, 0.06),
}
CARRY_VERBS = ("is holding", "holds", "is carrying", "carries", "has")
POSES: dict[str, tuple[str, ...]] = {
    "long_stride": ("is striding", "is walking briskly", "is hurrying along", "is taking long steps",
                    "is in mid-stride", "is rushing", "walks fast"),
    "short_stride": ("is strolling", "is walking slowly", "is ambling", "is taking small steps",
                     "is sauntering", "walks at a leisurely pace"),
    "mid_stride": ("is mid-step", "is stepping forward", "is on the move", "is heading somewhere",
                   "walks at a steady pace"),
    "feet_apart": ("stands with {poss} feet apart", "stands with {poss} legs slightly apart",
                   "has a wide stance"),
    "feet_together": ("stands upright", "stands straight", "is standing still", "stands with {poss} feet together",
                      "is waiting"),
    "arms_swing": ("is swinging {poss} arms", "has {poss} arms swinging", "moves {poss} arms as {pron} walks"),
    "arms_out": ("holds {poss} arms slightly out", "keeps {poss} arms away from {poss} body"),
    "arms_down": ("keeps {poss} arms by {poss} sides", "has {poss} arms relaxed", "lets {poss} arms hang down"),
}
REMARKS: dict[str, tuple[str, ...]] = {
    "pole": ("A pole partly blocks the view of {obj}.", "{Pron} is partly behind a lamppost.",
             "A tree trunk stands in front of {obj}.", "A post hides part of {poss} body.",
             "A pillar stands between {obj} and the camera.", "A signpost is in front of {obj}."),
    "box": ("{Poss} legs are hidden behind a box.", "A bin stands in front of {obj}.",
            "A parked car hides {poss} lower body.", "A bench is in front of {poss} legs.",
            "A barrier blocks the lower part of the picture.", "A planter hides {poss} legs.",
            "A crate is in front of {obj}.", "A hedge covers {poss} legs."),
    "bar": ("A railing crosses in front of {obj}.", "A sign hangs in front of {poss} body.",
            "A banner crosses the picture.", "A handrail runs across the image.",
            "A fence rail is in front of {obj}."),
    "people": ("Another person walks in the background.", "Other pedestrians are behind {obj}.",
               "A smaller figure stands behind {obj}.", "There are people in the distance.",
               "Someone in {colour} walks past behind {obj}.", "A passer-by in {colour} is in the background."),
    "busy": ("The background is busy.", "The street behind {obj} is cluttered.",
             "Shop signs and objects fill the background.", "The scene behind {obj} is crowded with things."),
    "plain": ("The background is plain.", "{Pron} stands against an empty wall.", "Nothing else is in the picture."),
    "dark": ("The picture is dark.", "The photo was taken in dim light.", "It looks like dusk.",
             "The lighting is poor.", "{Pron} is in the shade.", "The scene is gloomy."),
    "bright": ("The picture is bright.", "It is a sunny day.", "{Pron} is in bright sunshine.",
               "The scene is brightly lit."),
    "light_wall": ("The wall behind {obj} is pale.", "The background is light."),
    "dark_wall": ("The wall behind {obj} is dark.", "The background is dark."),
}
GROUNDING = {
    "drawn": ["colour shades (own RGB near the base colour)", "carried things (in the hand, own colour)",
              "poses (from the drawn stride and arm swing)",
              ("background remarks (occluder kind, distractor people and their colours, clutter, lighting, "
               "background tone)")],
    "caption_only": ["garment kinds", "materials", "fits",
                     "pattern kinds (the drawing shows stripes, checks or a logo)", "accessories", "places"],
}
COLOUR_FIELDS = ("hat_colour", "top_colour", "pattern_colour", "bottom_colour", "shoe_colour", "bag_colour")


@functools.lru_cache(maxsize=64)
def _zipf_cdf(n: int, s: float) -> tuple[float, ...]:
    return tuple(itertools.accumulate(1.0 / (k + 1) ** s for k in range(n)))


def zipf_pick(rng: random.Random, options: tuple[str, ...], s: float = 1.0) -> str:
    """One of ``options``, the k-th with weight ``1 / (k + 1) ** s`` (the first most often)."""
    cdf = _zipf_cdf(len(options), s)
    return options[min(bisect.bisect_right(cdf, rng.random() * cdf[-1]), len(options) - 1)]


@dataclass(frozen=True)
class Detail:
    """One identity's rich detail: shade words per coloured field, kinds, materials, fits, pattern word,
    accessory and carried thing. The same in every image of the identity."""

    shades: dict[str, str] = field(default_factory=dict)  # colour field -> shade words ("top_colour": "crimson")
    kinds: dict[str, str] = field(default_factory=dict)  # top / bottom / shoes / hat / bag -> kind words
    materials: dict[str, str] = field(default_factory=dict)
    fits: dict[str, str] = field(default_factory=dict)
    pattern: str = ""
    accessory: str = ""
    carried: str = ""  # a key of CARRIED, or "" for empty hands
    carried_colour: str = ""

    def as_dict(self) -> dict[str, Any]:
        """As written to ``attributes.json`` (under each identity's ``detail``)."""
        return {"shades": dict(self.shades), "kinds": dict(self.kinds), "materials": dict(self.materials),
                "fits": dict(self.fits), "pattern": self.pattern, "accessory": self.accessory,
                "carried": self.carried, "carried_colour": self.carried_colour}

    def shade_rgb(self, colour_field: str) -> tuple[int, int, int] | None:
        """The RGB of the field's shade, or None when it is drawn in its base colour."""
        word = self.shades.get(colour_field)
        if word is None:
            return None
        return HAIR_SHADE_RGB[word] if colour_field == "hair_colour" else SHADE_RGB[word]


def _shade(rng: random.Random, colour: str | None, table: dict) -> str | None:
    if colour is None or colour not in table or rng.random() >= SHADE_PROB:
        return None
    return zipf_pick(rng, tuple(w for w, _ in table[colour]))


def draw_detail(identity: Identity, rng: AnyRng, zipf: float = 1.0) -> Detail:
    """Draw an identity's rich detail (shades, kinds, materials, fits, pattern word, accessory, carried thing)."""
    r = scalar_rng(rng)
    shades = {}
    for name in COLOUR_FIELDS:
        word = _shade(r, getattr(identity, name), SHADES)
        if word is not None:
            shades[name] = word
    hair = _shade(r, identity.hair_colour, HAIR_SHADES)
    if hair is not None:
        shades["hair_colour"] = hair
    kinds = {"top": zipf_pick(r, KINDS["top"][identity.top]), "bottom": zipf_pick(r, KINDS["bottom"][identity.bottom]),
             "shoes": zipf_pick(r, KINDS["shoes"]["any"])}
    if identity.hat != "none":
        kinds["hat"] = zipf_pick(r, KINDS["hat"][identity.hat])
    if identity.bag != "none":
        kinds["bag"] = zipf_pick(r, KINDS["bag"][identity.bag])
    materials = {"top": zipf_pick(r, MATERIALS["top"]), "bottom": zipf_pick(r, MATERIALS["bottom"]),
                 "shoes": zipf_pick(r, MATERIALS["shoes"])}
    if identity.bag != "none":
        materials["bag"] = zipf_pick(r, MATERIALS["bag"])
    fits = {"top": zipf_pick(r, FITS["top"]), "bottom": zipf_pick(r, FITS["bottom"])}
    accessory = zipf_pick(r, ACCESSORIES) if r.random() < ACCESSORY_PROB else ""
    carried, carried_colour = "", ""
    if identity.bag != "handbag" and r.random() < CARRY_PROB:
        carried = zipf_pick(r, tuple(CARRIED), 0.8)
        carried_colour = clothing_colour(r, zipf)
    return Detail(shades, kinds, materials, fits, zipf_pick(r, PATTERN_WORDS[identity.top_pattern]), accessory,
                  carried, carried_colour)


def partner_detail(base: Detail, partner: Identity, base_identity: Identity, rng: AnyRng,
                   swap: tuple[str, str] | None = None) -> Detail:
    """The detail of a hard-negative or colour-swap partner: the base's, with what changed redrawn.

    A garment whose colour changed gets a new shade (or none); a colour swap
    exchanges the two garments' shades too, so the same shade words move to the
    other garment. A new hat or bag gets its kind (and material) drawn.
    """
    r = scalar_rng(rng)
    shades = dict(base.shades)
    if swap is not None:
        first, second = swap
        a, b = shades.pop(first, None), shades.pop(second, None)
        if b is not None:
            shades[first] = b
        if a is not None:
            shades[second] = a
    else:
        for name in (*COLOUR_FIELDS, "hair_colour"):
            if getattr(partner, name) != getattr(base_identity, name):
                shades.pop(name, None)
                table = HAIR_SHADES if name == "hair_colour" else SHADES
                word = _shade(r, getattr(partner, name), table)
                if word is not None:
                    shades[name] = word
    kinds, materials = dict(base.kinds), dict(base.materials)
    if partner.hat == "none":
        kinds.pop("hat", None)
    elif partner.hat != base_identity.hat:
        kinds["hat"] = zipf_pick(r, KINDS["hat"][partner.hat])
    return Detail(shades, kinds, materials, dict(base.fits), base.pattern, base.accessory, base.carried,
                  base.carried_colour)


# ---------------------------------------------------------------------------------------- scene notes


@dataclass(frozen=True)
class SceneNotes:
    """What one image shows beyond the identity, as keys of :data:`POSES` / :data:`REMARKS` (and a colour)."""

    pose: tuple[str, ...]  # e.g. ("long_stride", "arms_swing")
    remarks: tuple[str, ...]  # e.g. ("pole", "people", "dark")
    distractor_colour: str = ""  # the clothing colour of a distractor person, "" when none
    place: str = ""  # caption-only, one per image (from its background colour)


def scene_notes(scene: Any, visible: frozenset[str]) -> SceneNotes:
    """Pose and background remarks that are true of ``scene`` as drawn (``visible`` from the renderer)."""
    side = scene.view in ("left", "right")
    pose = []
    if side:
        pose.append("long_stride" if scene.stride > 0.075 else "short_stride" if scene.stride < 0.045 else "mid_stride")
        pose.append("arms_swing" if abs(scene.arm_swing) > 0.06 else "arms_down")
    else:
        pose.append("feet_apart" if scene.stride > 0.015 else "feet_together")
        pose.append("arms_out" if scene.arm_swing > 0.02 else "arms_down")
    remarks = []
    if scene.occluder is not None and "occluded" in visible:
        y0, y1 = scene.occluder[1], scene.occluder[3]
        remarks.append("pole" if y0 < -0.5 else "box" if y1 > 1.5 else "bar")
    colour = ""
    if scene.distractors:
        remarks.append("people")
        colour = scene.distractor_colour
    shapes = len(scene.clutter) - 3 * scene.distractors
    if shapes >= 5:
        remarks.append("busy")
    elif shapes == 0 and not scene.distractors and scene.occluder is None:
        remarks.append("plain")
    if scene.brightness < 0.6:
        remarks.append("dark")
    elif scene.brightness > 1.2:
        remarks.append("bright")
    tone = sum(scene.background[0]) / 3
    if tone > 165:
        remarks.append("light_wall")
    elif tone < 75:
        remarks.append("dark_wall")
    place = PLACES[int(scene.background[1][0] * 7 + scene.background[1][2]) % len(PLACES)]
    return SceneNotes(tuple(pose), tuple(remarks), colour, place)
