"""SynthPEDES: procedurally drawn pedestrians with captions, part maps and attribute records.

The kit's embedded dataset, written in CUHK-PEDES's native layout so the real
reader is the code path the course uses. Taught in ``01_data``.

- :func:`generate_synth` / :func:`ensure_synth`: write a dataset / get the cached one;
- :func:`render_person` and :func:`caption_for`: draw one image, write one caption;
- :func:`sample_identity`: draw an identity from the attribute space;
- :data:`PART_CLASSES`: the human-parsing labels of the part maps;
- :data:`PRESETS` (``detail``: every detail knob on) and :func:`read_markings`:
  the hard-negative and colour-swap pairs, rare colours and difficulties a draw marks.
"""

from tireid_lite.data.synth.attributes import (
    CLOTHING_COLOURS,
    HARD_NEGATIVE_EDITS,
    Identity,
    apply_edit,
    attribute_differences,
    sample_identity,
)
from tireid_lite.data.synth.captions import caption_for, features_in_view, tokens_of
from tireid_lite.data.synth.generate import ensure_synth, generate_synth, synth_cache_path
from tireid_lite.data.synth.knobs import PRESETS, SynthKnobs
from tireid_lite.data.synth.markings import SynthMarkings, read_markings
from tireid_lite.data.synth.materials import PART_CLASSES
from tireid_lite.data.synth.render import render_person, render_scene, render_scenes
from tireid_lite.data.synth.scene import VIEWS, Scene, sample_scene

__all__ = [
    "CLOTHING_COLOURS",
    "HARD_NEGATIVE_EDITS",
    "PART_CLASSES",
    "PRESETS",
    "VIEWS",
    "Identity",
    "Scene",
    "SynthKnobs",
    "SynthMarkings",
    "apply_edit",
    "attribute_differences",
    "caption_for",
    "ensure_synth",
    "features_in_view",
    "generate_synth",
    "read_markings",
    "render_person",
    "render_scene",
    "render_scenes",
    "sample_identity",
    "sample_scene",
    "synth_cache_path",
    "tokens_of",
]
