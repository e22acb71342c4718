"""Random streams for SynthPEDES: numpy generators outside, fast scalar draws inside.

Sampling a scene or a caption takes dozens of scalar draws; Python's
``random.Random`` makes one in a fraction of the time of a numpy
``Generator`` call. Functions therefore accept either: a numpy generator
gives up one draw to seed a ``random.Random`` for the call, and a
``random.Random`` (as the dataset generator passes, one per stream) is used
as is.
"""

from __future__ import annotations

import random

import numpy as np

AnyRng = np.random.Generator | random.Random


def scalar_rng(rng: AnyRng) -> random.Random:
    """``rng`` itself when it is a ``random.Random``, else one seeded by a single draw from ``rng``."""
    if isinstance(rng, random.Random):
        return rng
    return random.Random(int(rng.integers(2**63)))
