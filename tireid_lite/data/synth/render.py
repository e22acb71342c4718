"""Draw SynthPEDES images and their exact part maps, a whole batch at a time.

The clutter and the pedestrian are painted onto one layer map
(:mod:`~tireid_lite.data.synth.painter`, :mod:`~tireid_lite.data.synth.body`),
then the occluder. Colours come from a per-image palette of materials at the
end (with the scene's lighting), and the part map is a table lookup from
material to part class, so the part map is exactly what was drawn. Counting
pixels per material before and after the occluder tells which features stay
visible, which the captions use. Taught in ``01_data``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tireid_lite.data.synth.attributes import ALL_CLOTHING_COLOURS, HAIR_COLOURS, SKIN_TONES, Identity
from tireid_lite.data.synth.body import draw_clutter, draw_person
from tireid_lite.data.synth.knobs import SynthKnobs
from tireid_lite.data.synth.layout import body_layout
from tireid_lite.data.synth.materials import (
    ARM_SKIN, BAG, BANDS, BOTTOM, CLUTTER0, DETAIL, FACE, FEATURES, HAIR, HAT, LEG_SKIN, LOGO,
    MATERIAL_FEATURE, MATERIAL_PART, N_MATERIALS, OCCLUDER, PATTERN, PERSON_MATERIALS, SHOES, STRAP, TOP, CARRIED,
    VISIBLE_FRACTION,
)
from tireid_lite.data.synth.painter import Painter
from tireid_lite.data.synth.rng import AnyRng
from tireid_lite.data.synth.scene import Scene, parse_size, sample_scene
from tireid_lite.data.synth.shapes import span

@dataclass(frozen=True)
class RenderedBatch:
    """Drawn images, their part maps and which features each image shows."""

    images: np.ndarray  # (N, H, W, 3) uint8
    parts: np.ndarray  # (N, H, W) uint8, indices into PART_CLASSES
    visible: list[frozenset[str]]  # per image, the FEATURE_MATERIALS keys a caption may describe


def _detail_colours(rgb: np.ndarray) -> np.ndarray:
    """A darker shade of each garment colour ``(..., 3)``, or a lighter one for a garment already dark."""
    dark = rgb.sum(axis=-1, keepdims=True) < 180
    return np.where(dark, np.minimum(255.0, rgb * 1.6 + 45.0), rgb * 0.55)


def _rgb_table(colours: tuple, names: list[str | None]) -> np.ndarray:
    """RGB of each name in ``colours`` (``None`` -> black), ``(N, 3)`` float32."""
    table = {c.name: c.rgb for c in colours}
    return np.array([table.get(name or "", (0, 0, 0)) for name in names], dtype=np.float32)


def _field_rgb(scenes: list[Scene], name: str, colours: tuple = ALL_CLOTHING_COLOURS) -> np.ndarray:
    """RGB of each identity's ``name`` colour field, ``(N, 3)`` float32; a rich identity's shade overrides it."""
    rgb = _rgb_table(colours, [getattr(s.identity, name) for s in scenes])
    for i, s in enumerate(scenes):
        if s.detail is not None:
            shade = s.detail.shade_rgb(name)
            if shade is not None:
                rgb[i] = shade
    return rgb


def _palettes(scenes: list[Scene]) -> np.ndarray:
    """The lit colour of every material in every image, ``(N, N_MATERIALS, 3)`` float32."""
    n = len(scenes)
    ids = [s.identity for s in scenes]
    palette = np.zeros((n, N_MATERIALS, 3), dtype=np.float32)
    bg = np.array([s.background for s in scenes], dtype=np.float32)  # (N, 2, 3)
    mix = ((np.arange(BANDS, dtype=np.float32) + 0.5) / BANDS)[None, :, None]  # (1, BANDS, 1)
    palette[:, :BANDS] = bg[:, :1] * (1.0 - mix) + bg[:, 1:] * mix
    for i, s in enumerate(scenes):
        if s.clutter:
            palette[i, CLUTTER0 : CLUTTER0 + len(s.clutter)] = [shape[5:8] for shape in s.clutter]
        if s.occluder is not None:
            palette[i, OCCLUDER] = s.occluder[4:7]
    skin = np.array([SKIN_TONES[p.skin] for p in ids], dtype=np.float32)
    top = _field_rgb(scenes, "top_colour")
    hair = _field_rgb(scenes, "hair_colour", HAIR_COLOURS)
    bald = np.array([p.hair_colour is None for p in ids])[:, None]
    palette[:, FACE] = palette[:, ARM_SKIN] = palette[:, LEG_SKIN] = skin
    palette[:, HAIR] = np.where(bald, skin, hair)
    palette[:, HAT] = _field_rgb(scenes, "hat_colour")
    palette[:, TOP] = top
    pattern = _field_rgb(scenes, "pattern_colour")
    plain = np.array([p.pattern_colour is None for p in ids])[:, None]
    palette[:, PATTERN] = palette[:, LOGO] = np.where(plain, top, pattern)
    palette[:, DETAIL] = _detail_colours(top)
    palette[:, BOTTOM] = _field_rgb(scenes, "bottom_colour")
    palette[:, SHOES] = _field_rgb(scenes, "shoe_colour")
    palette[:, BAG] = _field_rgb(scenes, "bag_colour")
    palette[:, STRAP] = palette[:, BAG] * 0.8
    palette[:, CARRIED] = _rgb_table(
        ALL_CLOTHING_COLOURS, [s.detail.carried_colour if s.detail is not None else None for s in scenes]
    )
    brightness = np.array([s.brightness for s in scenes], dtype=np.float32)[:, None]
    light = np.array([s.cast for s in scenes], dtype=np.float32) * brightness  # (N, 3)
    return palette * light[:, None, :].astype(np.float32)


def _occlude(layers: np.ndarray, scenes: list[Scene], occluder_layer: int) -> tuple[np.ndarray, np.ndarray]:
    """Paint each scene's occluder onto ``layers`` ``(N, H, W)`` in place.

    Returns the pixels of every layer in every image before the occluder, and
    those the occluder then hid, both ``(N, occluder_layer + 1)``.
    """
    n, height, width = layers.shape
    before = np.zeros((n, occluder_layer + 1), dtype=np.int64)
    hidden = np.zeros_like(before)
    rows = (np.arange(height) + 0.5) / height
    columns = (np.arange(width) + 0.5) / width
    for i, scene in enumerate(scenes):
        before[i] = np.bincount(layers[i].ravel(), minlength=occluder_layer + 1)
        if scene.occluder is not None:
            x0, y0, x1, y1 = scene.occluder[:4]
            box = span(rows, y0, y1)[:, None] & span(columns, x0, x1)[None, :]  # (H, W)
            hidden[i] = np.bincount(layers[i][box], minlength=occluder_layer + 1)
            layers[i][box] = occluder_layer
    return before, hidden


def _visible(before: np.ndarray, hidden: np.ndarray, min_pixels: int) -> list[frozenset[str]]:
    """Features with at least ``min_pixels`` and half of their drawn pixels left after the occluder.

    ``"occluded"`` joins the set when the occluder hides at least ``min_pixels`` of the person.
    """
    drawn, kept = before @ MATERIAL_FEATURE, (before - hidden) @ MATERIAL_FEATURE  # (N, F)
    shown = kept >= np.maximum(min_pixels, VISIBLE_FRACTION * drawn)
    occluded = hidden[:, PERSON_MATERIALS].sum(axis=1) >= min_pixels
    return [
        frozenset([f for f, on in zip(FEATURES, row) if on] + (["occluded"] if occ else []))
        for row, occ in zip(shown, occluded)
    ]


def render_scenes(scenes: list[Scene], size: tuple[int, int] = (96, 32)) -> RenderedBatch:
    """Draw every scene at ``size`` = (height, width); each image depends only on its own scene."""
    height, width = parse_size(size)
    n = len(scenes)
    if n == 0:
        raise ValueError("render_scenes needs at least one scene")
    yf = ((np.arange(height, dtype=np.float32) + 0.5) / height).reshape(-1, 1, 1)  # (H, 1, 1)
    xf = ((np.arange(width, dtype=np.float32) + 0.5) / width).reshape(1, -1, 1)  # (1, W, 1)
    g = body_layout(scenes)
    top = np.array([s.top for s in scenes], dtype=np.float32)  # (N,)
    scale = np.array([s.height for s in scenes], dtype=np.float32)
    centre = np.array([s.centre_x for s in scenes], dtype=np.float32)
    aspect = np.float32(width / height)
    u = (xf - centre) * aspect / scale  # (1, W, N), body units
    v = (yf - top) / scale  # (H, 1, N)

    painter = Painter(height, width, n)
    draw_clutter(painter, scenes, xf, yf)
    draw_person(painter, u, v, g)
    occluder_layer = len(painter.materials)  # the occluder goes on top of everything
    painter.materials.append(OCCLUDER)
    layers = np.ascontiguousarray(painter.layers.transpose(2, 0, 1))  # (N, H, W)
    before, hidden = _occlude(layers, scenes, occluder_layer)
    to_material = np.zeros((len(painter.materials), N_MATERIALS), dtype=np.int64)
    to_material[np.arange(len(painter.materials)), painter.materials] = 1
    min_pixels = max(3, round(3 * height * width / 3072))
    visible = _visible(before @ to_material, hidden @ to_material, min_pixels)

    # Colour every layer of every image, then look pixels up: (N * L, 3) table, (N, H, W) indices.
    layer_material = np.asarray(painter.materials)
    palettes = _palettes(scenes)[:, layer_material]  # (N, L, 3)
    index = layers + (np.arange(n, dtype=np.intp) * len(layer_material))[:, None, None]
    noisy = [i for i, s in enumerate(scenes) if s.noise > 0]
    if noisy:
        images = np.take(palettes.reshape(-1, 3), index, axis=0)  # (N, H, W, 3) float32
        for i in noisy:
            noise_rng = np.random.default_rng(scenes[i].noise_seed)
            images[i] += noise_rng.standard_normal(images.shape[1:], dtype=np.float32) * scenes[i].noise
        images = (np.clip(images, 0.0, 255.0) + 0.5).astype(np.uint8)
    else:
        table = (np.clip(palettes, 0.0, 255.0) + 0.5).astype(np.uint8).reshape(-1, 3)
        images = np.take(table, index, axis=0)  # (N, H, W, 3) uint8
    parts = np.take(MATERIAL_PART[layer_material], layers)  # (N, H, W)
    return RenderedBatch(images=images, parts=parts, visible=visible)


def render_scene(
    scene: Scene, size: tuple[int, int] = (96, 32)
) -> tuple[np.ndarray, np.ndarray, frozenset[str]]:
    """One scene: ``(image (H, W, 3) uint8, parts (H, W) uint8, visible features)``."""
    batch = render_scenes([scene], size)
    return batch.images[0], batch.parts[0], batch.visible[0]


def render_person(
    identity: Identity,
    view: str,
    rng: AnyRng,
    size: tuple[int, int] = (96, 32),
    knobs: SynthKnobs | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``identity`` seen from ``view`` in a random scene: ``(image (H, W, 3), parts (H, W))``, uint8.

    To caption the image truthfully when an occluder or a crop may hide
    something, use :func:`render_scene`, whose third value is the ``visible``
    set that :func:`~tireid_lite.data.synth.captions.caption_for` takes.
    Taught in ``01_data``.
    """
    image, parts, _visible_features = render_scene(sample_scene(identity, view, rng, knobs), size)
    return image, parts
