"""One SynthPEDES photo before drawing: who, from which side, where, and under what conditions.

A :class:`Scene` holds everything random about one image (view, pose, scale,
crop, background clutter, occluder, lighting, noise seed), so drawing it is a
pure function of the scene and the image size. Taught in ``01_data``.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

from tireid_lite.data.synth.attributes import ALL_CLOTHING_COLOURS, SKIN_TONES, Identity, clothing_colour
from tireid_lite.data.synth.knobs import SynthKnobs
from tireid_lite.data.synth.rng import AnyRng, scalar_rng
from tireid_lite.errors import ConfigError

VIEWS = ("front", "back", "left", "right")  # left/right: the person walks towards the image's left/right
MAX_CLUTTER = 8
DISTRACTOR_SHAPES = 3  # a distractor person: head, torso, legs
CLUTTER_SLOTS = MAX_CLUTTER + DISTRACTOR_SHAPES  # clutter materials of one image
DIFFICULTIES = ("normal", "dark", "occluded")
MIN_SIZE = (48, 16)
MAX_SIZE = (384, 128)
_CLOTHING_RGB = {c.name: c.rgb for c in ALL_CLOTHING_COLOURS}


@dataclass(frozen=True)
class Scene:
    """The random circumstances of one image of one identity.

    Positions are fractions of the image height (vertical) or width (horizontal).
    """

    identity: Identity
    view: str
    centre_x: float  # body axis, fraction of the image width
    top: float  # top of the head, fraction of the image height (may be < 0: head cropped)
    height: float  # head-to-sole height, fraction of the image height
    stride: float  # legs apart (body units): ankle offset in side views, spread in front/back views
    arm_swing: float  # hand offset (body units): forward/back in side views, outwards in front/back views
    background: tuple[tuple[float, float, float], tuple[float, float, float]]  # top and bottom colours
    clutter: tuple[tuple[float, ...], ...]  # (is_ellipse, x0, y0, x1, y1, r, g, b), fractions of the image
    occluder: tuple[float, ...] | None  # (x0, y0, x1, y1, r, g, b), fractions of the image
    brightness: float
    cast: tuple[float, float, float]  # per-channel gain
    noise: float  # std of per-pixel noise in grey levels
    noise_seed: int
    detail: Any = None  # the identity's vocab.Detail (vocabulary=rich): shade colours, a carried thing
    difficulty: str = "normal"  # the identity's difficulty: normal | dark | occluded
    distractors: int = 0  # distractor people, drawn as the last DISTRACTOR_SHAPES shapes of ``clutter``
    distractor_colour: str = ""  # the clothing colour of the distractor's top


def parse_size(size: tuple[int, int] | list[int]) -> tuple[int, int]:
    """Check an image size ``(height, width)``: 3:1-ish and between 48x16 and 384x128."""
    try:
        height, width = (int(x) for x in size)
        if (height, width) != tuple(size):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(
            f"size {size!r} is not (height, width) in pixels; give two integers, e.g. (96, 32)"
        ) from None
    if not (MIN_SIZE[0] <= height <= MAX_SIZE[0] and MIN_SIZE[1] <= width <= MAX_SIZE[1]):
        raise ConfigError(
            f"size {height}x{width} is outside the supported range; give a height of 48-384 and a width "
            "of 16-128"
        )
    if not 2.5 <= height / width <= 3.5:
        raise ConfigError(
            f"size {height}x{width} is not about 3:1 (height:width); use e.g. 96x32, 192x64 or 384x128"
        )
    return height, width


def _muted_colour(rng: random.Random, low: float = 50.0, high: float = 200.0) -> tuple[float, float, float]:
    grey = rng.uniform(low, high)
    r, g, b = (min(255.0, max(0.0, grey + rng.uniform(-28.0, 28.0))) for _ in range(3))
    return (r, g, b)


def _clutter(rng: random.Random, knobs: SynthKnobs) -> tuple[tuple[float, ...], ...]:
    count = rng.randint(0, round(MAX_CLUTTER * knobs.clutter))
    shapes = []
    for _ in range(count):
        x0, y0 = rng.uniform(-0.3, 1.0), rng.uniform(-0.1, 1.0)
        w, h = rng.uniform(0.15, 0.7), rng.uniform(0.04, 0.3)
        if rng.random() < 0.5 * knobs.clutter:  # a distractor in a clothing colour
            colour = tuple(float(c) for c in _CLOTHING_RGB[clothing_colour(rng, knobs.colour_zipf)])
        else:
            colour = _muted_colour(rng)
        shapes.append((float(rng.random() < 0.5), x0, y0, x0 + w, y0 + h, *colour))
    return tuple(shapes)


def _occluder(rng: random.Random) -> tuple[float, ...]:
    kind = rng.randrange(3)
    colour = _muted_colour(rng, 30.0, 170.0)
    if kind == 0:  # a pole or tree trunk across the body
        x0 = rng.uniform(0.15, 0.7)
        return (x0, -1.0, x0 + rng.uniform(0.1, 0.25), 2.0, *colour)
    if kind == 1:  # a box, bin or car bonnet in front of the legs
        y0 = rng.uniform(0.62, 0.85)
        x0 = rng.uniform(-0.5, 0.4)
        return (x0, y0, x0 + rng.uniform(0.6, 1.2), 2.0, *colour)
    y0 = rng.uniform(0.2, 0.65)  # a sign or railing across the body
    return (-1.0, y0, 2.0, y0 + rng.uniform(0.06, 0.14), *colour)


def _distractor(rng: random.Random, zipf: float) -> tuple[tuple[tuple[float, ...], ...], str]:
    """A smaller person standing further back: head, torso and legs shapes, and the top's colour name."""
    h = rng.uniform(0.3, 0.55)  # height, fraction of the image height
    cx, feet = rng.uniform(0.05, 0.95), rng.uniform(0.5, 0.85)
    top = feet - h
    skin = tuple(float(c) for c in SKIN_TONES[rng.randrange(len(SKIN_TONES))])
    top_name = clothing_colour(rng, zipf)
    torso = tuple(float(c) for c in _CLOTHING_RGB[top_name])
    legs = tuple(float(c) for c in _CLOTHING_RGB[clothing_colour(rng, zipf)])
    w = h  # the image is a third as wide as high: a width fraction of h is a third of the height
    return (
        (0.0, cx - 0.2 * w, top + 0.5 * h, cx + 0.2 * w, feet, *legs),
        (0.0, cx - 0.3 * w, top + 0.13 * h, cx + 0.3 * w, top + 0.52 * h, *torso),
        (1.0, cx - 0.13 * w, top, cx + 0.13 * w, top + 0.14 * h, *skin),
    ), top_name


def _heavy_occluder(rng: random.Random) -> tuple[float, ...]:
    """A large occluder for an ``occluded`` identity: a wide pole, a tall box or a broad sign."""
    kind = rng.randrange(3)
    colour = _muted_colour(rng, 30.0, 170.0)
    if kind == 0:
        x0 = rng.uniform(0.2, 0.5)
        return (x0, -1.0, x0 + rng.uniform(0.3, 0.45), 2.0, *colour)
    if kind == 1:
        y0 = rng.uniform(0.45, 0.6)
        return (-1.0 + rng.uniform(0.0, 0.5), y0, 2.0, 2.0, *colour)
    y0 = rng.uniform(0.25, 0.5)
    return (-1.0, y0, 2.0, y0 + rng.uniform(0.15, 0.25), *colour)


def _with_detail_knobs(scene: Scene, r: random.Random, knobs: SynthKnobs) -> Scene:
    """The detail knobs' draws, made after all the others so that they never move the default draw."""
    changes: dict[str, Any] = {}
    if knobs.person_scale < 1.0:  # further away: smaller, feet where they were
        height = scene.height * r.uniform(knobs.person_scale, 1.0)
        changes.update(height=height, top=scene.top + scene.height - height)
    if knobs.distractor_people > 0 and r.random() < knobs.distractor_people:
        shapes, colour = _distractor(r, knobs.colour_zipf)
        changes.update(clutter=scene.clutter + shapes, distractors=1, distractor_colour=colour)
    if scene.difficulty == "dark":
        changes["brightness"] = scene.brightness * r.uniform(0.3, 0.45)
    elif scene.difficulty == "occluded":
        changes["occluder"] = _heavy_occluder(r)
    return dataclasses.replace(scene, **changes) if changes else scene


def sample_scene(
    identity: Identity,
    view: str,
    rng: AnyRng,
    knobs: SynthKnobs | None = None,
    *,
    detail: Any = None,
    difficulty: str = "normal",
) -> Scene:
    """Draw the pose, placement, background, occluder and lighting of one image.

    ``detail`` (a :class:`~tireid_lite.data.synth.vocab.Detail`) and
    ``difficulty`` (``dark``: every image at 30-45% brightness; ``occluded``:
    a large occluder in every image) come from the identity; the detail knobs
    (``person_scale``, ``distractor_people``) draw after everything else.
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r}; expected one of {', '.join(DIFFICULTIES)}")
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {', '.join(VIEWS)}")
    knobs = SynthKnobs() if knobs is None else knobs
    r = scalar_rng(rng)  # every scalar draw below comes from r
    jitter, lighting = knobs.jitter, knobs.lighting
    side = view in ("left", "right")
    height = identity.stature * r.uniform(max(0.6, 0.95 - 0.09 * jitter), 0.95)
    if r.random() < 0.12 * min(jitter, 1.5):  # cropped: the feet below the bottom edge, or the crown above
        top = 1.0 - height + r.uniform(0.03, 0.09) if r.random() < 0.7 else -r.uniform(0.005, 0.03)
    else:
        top = (1.0 - height) * r.uniform(0.2, 0.8)
    if side:
        stride, arm_swing = r.uniform(0.03, 0.1) * min(jitter, 1.5), r.uniform(-0.1, 0.1) * min(jitter, 1.5)
    else:
        stride, arm_swing = r.uniform(0.0, 0.025) * jitter, r.uniform(0.0, 0.03) * jitter
    scene = Scene(
        identity=identity,
        view=view,
        centre_x=0.5 + r.uniform(-0.08, 0.08) * jitter,
        top=top,
        height=height,
        stride=stride,
        arm_swing=arm_swing,
        background=(_muted_colour(r), _muted_colour(r)),
        clutter=_clutter(r, knobs),
        occluder=_occluder(r) if r.random() < knobs.occlusion_prob else None,
        brightness=1.0 + r.uniform(-lighting, lighting),
        cast=tuple(1.0 + r.uniform(-lighting / 3, lighting / 3) for _ in range(3)),  # type: ignore[arg-type]
        noise=float(knobs.noise),
        noise_seed=r.getrandbits(31) if knobs.noise > 0 else 0,
        detail=detail,
        difficulty=difficulty,
    )
    if knobs.detail_on or difficulty != "normal":
        return _with_detail_knobs(scene, r, knobs)
    return scene
