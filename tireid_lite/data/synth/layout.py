"""Where each body part of a SynthPEDES pedestrian goes, in body coordinates.

Body coordinates: ``v`` runs from 0 at the top of the head to 1 at the soles;
``u`` is horizontal, in the same unit, from the body axis (positive towards the
image's right). :func:`body_layout` turns a batch of scenes into per-image
arrays ``(N,)`` that :mod:`~tireid_lite.data.synth.render` draws with the
primitives of :mod:`~tireid_lite.data.synth.shapes`.

Views and sides. In a ``front`` view the person's left is on the image's right;
in a ``back`` view it is on the image's left; in a side view (``left``: walking
towards the image's left) the near side is the person's left for ``left`` and
the right for ``right``. Arm "A" is the image-left arm in front/back views and
the near arm in side views; arm "B" is the other one (hidden behind the body
in side views, and so is anything it holds). Taught in ``01_data``.
"""

from __future__ import annotations

import numpy as np

from tireid_lite.data.synth.scene import Scene
from tireid_lite.data.synth.vocab import CARRIED

# Landmarks in body units: v of the head's centre and its radii, of the neck, shoulders, hips, ankles, hands.
HEAD_V, HEAD_RU, HEAD_RV = 0.072, 0.05, 0.066
SHOULDER_V, NECK_V = 0.175, 0.148
HIP_V, ANKLE_V, HAND_V = 0.5, 0.945, 0.495
SLEEVE_T = {"short": 0.4, "long": 0.94}  # fraction of the arm the sleeve covers
TROUSER_T = {"trousers": 1.01, "shorts": 0.42, "skirt": -1.0}  # fraction of the leg the garment covers


def _arm_on_a(scene: Scene, person_side: str) -> bool:
    """Whether the person's ``person_side`` arm is arm A (see the module docstring)."""
    left_is_a = scene.view in ("back", "left")
    return (person_side == "left") == left_is_a


def _scene_layout(scene: Scene) -> dict[str, float | bool]:
    """Every placement and on/off flag of one image's pedestrian (floats in body units)."""
    ident = scene.identity
    b = ident.build
    male = ident.gender == "male"
    front, back = scene.view == "front", scene.view == "back"
    side = not (front or back)
    d = {"left": -1.0, "right": 1.0}.get(scene.view, 0.0)  # facing direction in side views
    if side:
        sw, hem_hw, torso_cu = 0.062 * b, 0.058 * b, -d * 0.004
        a_sh, b_sh = d * 0.006, d * 0.006
        a_hand, b_hand = scene.arm_swing, -scene.arm_swing
        leg_a, leg_b = (0.0, scene.stride), (0.0, -scene.stride)
    else:
        sw, hem_hw, torso_cu = (0.112 if male else 0.098) * b, (0.086 if male else 0.09) * b, 0.0
        a_sh, b_sh = -(sw - 0.02), sw - 0.02
        a_hand, b_hand = -(sw + 0.012 + scene.arm_swing), sw + 0.012 + scene.arm_swing
        hip = 0.048 * b
        leg_a, leg_b = (-hip, -(hip + 0.004 + scene.stride)), (hip, hip + 0.004 + scene.stride)
    hem_v = 0.66 if ident.top == "coat" else 0.52

    detail = scene.detail
    carried = CARRIED.get(detail.carried) if detail is not None and detail.carried else None  # in hand A
    bag_visible = ident.bag_side is not None and (not side or _arm_on_a(scene, ident.bag_side))
    bag_sign = -1.0 if ident.bag_side is not None and _arm_on_a(scene, ident.bag_side) else 1.0
    bag_hand = a_hand if bag_sign < 0 else b_hand
    shoulder_bag = ident.bag == "shoulder bag" and bag_visible
    handbag = ident.bag == "handbag" and bag_visible
    bag_u = d * 0.01 if side else bag_sign * (hem_hw + 0.035)
    backpack_near, backpack_far = -d * (sw - 0.02), -d * (sw + 0.05)

    return {
        "front": front, "back": back, "side": side, "d": d,
        "head_u": d * 0.008,
        "sw": sw, "hem_v": hem_v, "hem_hw": hem_hw, "torso_cu": torso_cu,
        "arm_a_u0": a_sh, "arm_a_u1": a_hand, "arm_b_u0": b_sh, "arm_b_u1": b_hand,
        "arm_r": (0.03 if male else 0.026) * b, "sleeve_t": SLEEVE_T[ident.sleeves],
        "leg_a_u0": leg_a[0], "leg_a_u1": leg_a[1], "leg_b_u0": leg_b[0], "leg_b_u1": leg_b[1],
        "leg_r": (0.046 if male else 0.042) * b, "trouser_t": TROUSER_T[ident.bottom],
        "shoe_du": d * 0.018, "shoe_ru": 0.055 if side else 0.042,
        "skirt": ident.bottom == "skirt", "pants": ident.bottom != "skirt",
        "crotch_hw": (0.05 if side else 0.07) * b,
        "skirt_top": (0.06 if side else 0.085) * b, "skirt_bottom": (0.1 if side else 0.14) * b,
        "has_hair": ident.hair_style != "bald",
        "long_hair": ident.hair_style == "long",
        "ponytail": ident.hair_style == "ponytail" and not front,
        "has_hat": ident.hat != "none", "cap": ident.hat == "cap",
        "hat_line": 0.046 if ident.hat == "cap" else 0.056,
        "striped": ident.top_pattern == "striped", "checked": ident.top_pattern == "checked",
        "logo": ident.top_pattern == "logo" and front,
        "zip": ident.top in ("jacket", "coat") and front,
        "collar": ident.top == "shirt" and front,
        "hem_band": ident.top == "sweater",
        "backpack_behind": ident.bag == "backpack" and side,
        "backpack_front": ident.bag == "backpack" and back,
        "bp_u0": min(backpack_near, backpack_far) if side else -0.07 * b,
        "bp_u1": max(backpack_near, backpack_far) if side else 0.07 * b,
        "shoulder_bag": shoulder_bag, "bag_u": bag_u,
        "strap_u0": bag_u if side else bag_sign * (sw - 0.03),
        "handbag": handbag, "handbag_u": bag_hand,
        "carried": bool(carried), "carried_u": a_hand, "carried_hw": carried[0] if carried else 0.0,
        "carried_v0": HAND_V + (carried[1] if carried else 0.0), "carried_v1": HAND_V + (carried[2] if carried else 0.0),
    }


def body_layout(scenes: list[Scene]) -> dict[str, np.ndarray]:
    """Per-image layout values: floats as float32 ``(N,)``, flags as bool ``(N,)``."""
    rows = [_scene_layout(s) for s in scenes]
    columns = {}
    for key, first in rows[0].items():
        dtype = np.bool_ if isinstance(first, bool) else np.float32
        columns[key] = np.array([r[key] for r in rows], dtype=dtype)
    return columns
