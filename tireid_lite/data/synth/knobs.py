"""The difficulty knobs of SynthPEDES, with their defaults and allowed ranges, and the named presets.

Each knob changes how hard the dataset is for a retrieval model without
changing its layout. They are plain keyword arguments of
:func:`~tireid_lite.data.synth.generate.generate_synth` and flags of
``tireid synth`` (``--occlusion-prob 0.3``). Taught in ``01_data``.

The first eight knobs set the look of the kit's default draw. The others add
what a training set needs before fine-grained mechanisms can show an effect
(:data:`DETAIL_KNOBS`); each is off by default, and a knob left at its default
is not recorded, so the default draw keeps its bytes and its cache key:

- ``vocabulary``: ``basic`` (about 110 words) or ``rich`` (colour shades drawn
  as their own RGB values, garment kinds, materials, pattern kinds, poses read
  from the drawn stride, drawn carried things, background remarks read from the
  scene; more than 500 words with a long tail);
- ``train_hard_negative_fraction``: hard-negative partners in train too;
- ``colour_swap_fraction``: pairs with the same colour words on different garments;
- ``rare_colours``: tail colours rare in train and common in val/test;
- ``distractor_people``, ``person_scale``: smaller people in the background, a smaller pedestrian;
- ``dark_fraction``, ``occluded_fraction``: identities whose every image is dark or occluded.

:data:`PRESETS` names sets of knobs: ``detail`` switches every one of them on
(config key ``data.synth_preset=detail``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from tireid_lite.config import SYNTH_DETAIL_KEYS, SYNTH_PRESETS
from tireid_lite.errors import ConfigError


def _knob(default: float, low: float, high: float, help: str, *, integer: bool = False) -> Any:
    return field(default=default, metadata={"range": (low, high), "help": help, "integer": integer})


def _choice(default: str, choices: tuple[str, ...], help: str) -> Any:
    return field(default=default, metadata={"choices": choices, "help": help})


@dataclass(frozen=True)
class SynthKnobs:
    """Difficulty parameters of SynthPEDES; every value is checked against its range or choices."""

    clutter: float = _knob(
        0.5, 0.0, 1.0, "background clutter: 0 none, 1 up to 8 shapes, some in garment colours"
    )
    occlusion_prob: float = _knob(0.2, 0.0, 1.0, "probability that a pole, box or sign stands in front")
    lighting: float = _knob(0.3, 0.0, 0.6, "brightness varies by up to this fraction, with a colour cast")
    noise: float = _knob(0.0, 0.0, 20.0, "std of per-pixel noise in grey levels (noisy PNGs write slower)")
    jitter: float = _knob(1.0, 0.0, 2.0, "scale of the pose, size, offset and crop variation between images")
    hard_negative_fraction: float = _knob(
        0.5, 0.0, 1.0, "fraction of val/test identities paired with one differing in one small attribute"
    )
    caption_coverage: float = _knob(0.7, 0.2, 1.0, "chance that a caption mentions each visible attribute")
    colour_zipf: float = _knob(1.0, 0.0, 3.0, "Zipf exponent of the clothing colour frequencies (0: uniform)")
    # The detail knobs (DETAIL_KNOBS): off by default, recorded only when set.
    vocabulary: str = _choice(
        "basic", ("basic", "rich"),
        "caption words: basic (about 110) or rich (shades, garment kinds, materials, poses, carried things, "
        "background remarks; over 500)",
    )
    train_hard_negative_fraction: float = _knob(
        0.0, 0.0, 1.0, "fraction of train identities paired with one differing in one small attribute"
    )
    colour_swap_fraction: float = _knob(
        0.0, 0.0, 0.5, "fraction of each split's identities in colour-swap pairs (the colours of two garments swapped)"
    )
    rare_colours: int = _knob(
        0, 0, 6, "tail colours added to the palette, rare in train and common in val/test", integer=True
    )
    distractor_people: float = _knob(0.0, 0.0, 1.0, "probability of a smaller second person in the background")
    person_scale: float = _knob(
        1.0, 0.5, 1.0, "the pedestrian's height is scaled by a factor drawn between this and 1"
    )
    dark_fraction: float = _knob(0.0, 0.0, 0.5, "fraction of identities whose every image is dark")
    occluded_fraction: float = _knob(
        0.0, 0.0, 0.5, "fraction of identities whose every image has a large occluder"
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if "choices" in f.metadata:
                choices = f.metadata["choices"]
                if value not in choices:
                    raise ConfigError(
                        f"SynthPEDES knob {f.name}={value!r} is not one of {', '.join(choices)}; choose one of them"
                    )
                continue
            low, high = f.metadata["range"]
            fix = f"give a value in [{low}, {high}]"
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"SynthPEDES knob {f.name}={value!r} is not a number; {fix}")
            if not low <= value <= high:
                raise ConfigError(f"SynthPEDES knob {f.name}={value!r} is out of range; {fix}")
            if f.metadata["integer"]:
                if value != int(value):
                    raise ConfigError(f"SynthPEDES knob {f.name}={value!r} is not a whole number; {fix}")
                object.__setattr__(self, f.name, int(value))
            else:
                object.__setattr__(self, f.name, float(value))  # 1 and 1.0 give the same record and cache key

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "SynthKnobs":
        """Build from keyword arguments, naming any unknown knob and listing the known ones."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            raise ConfigError(f"unknown SynthPEDES knob {unknown[0]!r}; the knobs are {', '.join(known)}")
        return cls(**kwargs)

    def as_dict(self) -> dict[str, Any]:
        """The knobs as recorded in ``attributes.json`` (and hashed into the cache key).

        The first eight always; a detail knob only when it is away from its
        default, so a draw without them keeps the bytes and key it always had.
        """
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name not in DETAIL_KNOBS or value != f.default:
                out[f.name] = value
        return out

    @property
    def detail_on(self) -> bool:
        """Whether any detail knob is away from its default."""
        return any(getattr(self, name) != KNOB_DEFAULTS[name] for name in DETAIL_KNOBS)


KNOB_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(SynthKnobs)}
DETAIL_KNOBS: tuple[str, ...] = (
    "vocabulary", "train_hard_negative_fraction", "colour_swap_fraction", "rare_colours", "distractor_people",
    "person_scale", "dark_fraction", "occluded_fraction",
)

# Named sets of knobs (config key data.synth_preset). ``detail``: every detail knob on, and full clutter.
PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    "detail": {
        "vocabulary": "rich",
        "train_hard_negative_fraction": 0.5,
        "colour_swap_fraction": 0.1,
        "rare_colours": 4,
        "clutter": 1.0,
        "distractor_people": 0.4,
        "person_scale": 0.75,
        "dark_fraction": 0.1,
        "occluded_fraction": 0.1,
    },
}


assert tuple(PRESETS) == SYNTH_PRESETS, "config.SYNTH_PRESETS names the presets for validation"
assert tuple(f"synth_{k}" for k in DETAIL_KNOBS) == SYNTH_DETAIL_KEYS, "config.SYNTH_DETAIL_KEYS mirrors DETAIL_KNOBS"


def preset_knobs(name: str) -> dict[str, Any]:
    """The knobs of preset ``name``; an unknown name is a :class:`ConfigError` listing the presets."""
    if name not in PRESETS:
        raise ConfigError(f"unknown SynthPEDES preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def knobs_from_config(data: Any) -> dict[str, Any]:
    """The SynthPEDES knobs a config's ``data`` section asks for: its ``synth_preset``, then every
    ``synth_<knob>`` key away from the knob's default (which wins over the preset).

    Only knobs away from their defaults are returned, so a config without any
    asks for the kit's default draw (same bytes, same cache key).
    """
    knobs = preset_knobs(data.synth_preset)
    for key in SYNTH_DETAIL_KEYS:
        name = key[len("synth_"):]
        value = getattr(data, key)
        if value != KNOB_DEFAULTS[name]:
            knobs[name] = value
    try:
        SynthKnobs.from_kwargs(**knobs)
    except ConfigError as err:
        raise ConfigError(f"config keys data.synth_*: {err}") from None
    return {k: v for k, v in knobs.items() if v != KNOB_DEFAULTS[k]}
