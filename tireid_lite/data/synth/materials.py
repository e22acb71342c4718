"""What SynthPEDES pixels are made of: materials, their part classes, and the features they show.

A *material* is one colour of one image (a background band, a clutter shape,
the occluder, skin, the top, its stripes, the bag...). Each belongs to one
human-parsing class of :data:`PART_CLASSES` (the part map's labels) and shows
at most a few *features* a caption may describe (:data:`FEATURE_MATERIALS`).
Taught in ``01_data``.
"""

from __future__ import annotations

import numpy as np

from tireid_lite.data.synth.scene import CLUTTER_SLOTS

PART_CLASSES = (
    "background", "hat", "hair", "face", "upper_clothes", "lower_clothes", "arms", "legs", "shoes", "bag",
)
PART_INDEX = {name: i for i, name in enumerate(PART_CLASSES)}

# Materials, in palette order: background bands (a vertical gradient), clutter, the occluder, the person.
BANDS = 32
CLUTTER0 = BANDS
OCCLUDER = CLUTTER0 + CLUTTER_SLOTS
FACE, HAIR, HAT, TOP, PATTERN, DETAIL, LOGO, BOTTOM, ARM_SKIN, LEG_SKIN, SHOES, BAG, STRAP, CARRIED = range(
    OCCLUDER + 1, OCCLUDER + 15
)
N_MATERIALS = CARRIED + 1
PERSON_MATERIALS = slice(FACE, N_MATERIALS)  # everything after the occluder is the pedestrian
MATERIAL_PART = np.zeros(N_MATERIALS, dtype=np.uint8)
for _material, _part in (
    (FACE, "face"), (HAIR, "hair"), (HAT, "hat"), (TOP, "upper_clothes"), (PATTERN, "upper_clothes"),
    (DETAIL, "upper_clothes"), (LOGO, "upper_clothes"), (BOTTOM, "lower_clothes"), (ARM_SKIN, "arms"),
    (LEG_SKIN, "legs"), (SHOES, "shoes"), (BAG, "bag"), (STRAP, "bag"), (CARRIED, "bag"),
):
    MATERIAL_PART[_material] = PART_INDEX[_part]

# Features a caption may describe, and the materials that show them.
FEATURE_MATERIALS: dict[str, tuple[int, ...]] = {
    "hat": (HAT,), "hair": (HAIR,), "face": (FACE,), "top": (TOP, PATTERN, DETAIL, LOGO),
    "pattern": (PATTERN,), "logo": (LOGO,), "bottom": (BOTTOM,), "shoes": (SHOES,), "bag": (BAG,),
    "arms": (ARM_SKIN,), "legs": (LEG_SKIN,), "carried": (CARRIED,),
}
FEATURES = tuple(FEATURE_MATERIALS)
MATERIAL_FEATURE = np.zeros((N_MATERIALS, len(FEATURES)), dtype=np.int64)
for _j, _materials in enumerate(FEATURE_MATERIALS.values()):
    MATERIAL_FEATURE[list(_materials), _j] = 1  # (materials, features) 0/1
VISIBLE_FRACTION = 0.5  # a feature is visible when at least half of its drawn pixels survive the occluder
