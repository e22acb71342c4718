"""The difficulty knobs of SynthPEDES, with their defaults and allowed ranges.

Each knob changes how hard the dataset is for a retrieval model without
changing its layout. They are plain keyword arguments of
:func:`~tireid_lite.data.synth.generate.generate_synth` and flags of
``tireid synth`` (``--occlusion-prob 0.3``). Taught in ``01_data``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from tireid_lite.errors import ConfigError


def _knob(default: float, low: float, high: float, help: str) -> Any:
    return field(default=default, metadata={"range": (low, high), "help": help})


@dataclass(frozen=True)
class SynthKnobs:
    """Difficulty parameters of SynthPEDES; every value is checked against its range."""

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

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            low, high = f.metadata["range"]
            fix = f"give a value in [{low}, {high}]"
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"SynthPEDES knob {f.name}={value!r} is not a number; {fix}")
            if not low <= value <= high:
                raise ConfigError(f"SynthPEDES knob {f.name}={value!r} is out of range; {fix}")
            object.__setattr__(self, f.name, float(value))  # 1 and 1.0 give the same record and cache key

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "SynthKnobs":
        """Build from keyword arguments, naming any unknown knob and listing the known ones."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            raise ConfigError(f"unknown SynthPEDES knob {unknown[0]!r}; the knobs are {', '.join(known)}")
        return cls(**kwargs)

    def as_dict(self) -> dict[str, float]:
        """Every knob by name, as recorded in ``attributes.json``."""
        return dataclasses.asdict(self)
