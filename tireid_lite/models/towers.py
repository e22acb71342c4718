"""The two towers in one import: the image tower and the text tower.

Both return every token after the final norm and the output projection, so
global features (the image's class token, the caption's end token) and local
ones (patches, words) share one space:

- :func:`build_image_tower` -> :class:`ImageTower`, ``tower(images)`` gives a
  :class:`TowerOutput` with ``tokens`` (B, 1+N, D), class token first
  (:mod:`tireid_lite.models.image_tower`);
- :func:`build_text_tower` -> :class:`TextTower`, ``tower(ids, attention_mask)``
  gives tokens (B, L, D); :func:`pool_at` takes the end token's feature
  (:mod:`tireid_lite.models.text_tower`).

CLIP weights come from :mod:`tireid_lite.models.clip_weights`. Taught in
notebook 02 (baseline).
"""

from tireid_lite.models.image_tower import ImageTower, TowerOutput, block_with_attention, build_image_tower
from tireid_lite.models.text_tower import TextTower, build_text_tower, pool_at

__all__ = [
    "ImageTower",
    "TextTower",
    "TowerOutput",
    "block_with_attention",
    "build_image_tower",
    "build_text_tower",
    "pool_at",
]
