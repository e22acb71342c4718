"""Paint the SynthPEDES pedestrian of every image of a batch, back to front, and the clutter behind.

Body coordinates and the per-image layout come from
:mod:`~tireid_lite.data.synth.layout`; each group of parts is painted in the
band of rows it can occupy, so a head costs a quarter of a full-height shape.
Taught in ``01_data``.
"""

from __future__ import annotations

import numpy as np

from tireid_lite.data.synth.layout import ANKLE_V, HAND_V, HEAD_RU, HEAD_RV, HEAD_V, HIP_V, NECK_V, SHOULDER_V
from tireid_lite.data.synth.materials import (
    ARM_SKIN, BAG, BOTTOM, CARRIED, CLUTTER0, DETAIL, FACE, HAIR, HAT, LEG_SKIN, LOGO, PATTERN, SHOES, STRAP, TOP,
)
from tireid_lite.data.synth.painter import Painter
from tireid_lite.data.synth.scene import Scene
from tireid_lite.data.synth.shapes import bar, ellipse, rect, span, stripes, trapezoid


def draw_clutter(painter: Painter, scenes: list[Scene], xf: np.ndarray, yf: np.ndarray) -> None:
    """Clutter shapes; ``xf`` ``(1, W, 1)`` and ``yf`` ``(H, 1, 1)`` are positions as image fractions."""
    slots = max(len(s.clutter) for s in scenes)
    if slots == 0:
        return
    empty = (0.0, -9.0, -9.0, -8.0, -8.0, 0, 0, 0)  # off the image
    table = np.array([[*s.clutter, *[empty] * (slots - len(s.clutter))] for s in scenes], dtype=np.float32)
    for k in range(slots):
        is_ellipse, x0, y0, x1, y1 = table[:, k, :5].T  # each (N,)
        oval = is_ellipse == 1
        # One comparison per pixel for both kinds: a column term (1, W, N) <= a row term (H, 1, N). An ellipse
        # compares ((x - cx) / rx)^2 with 1 - ((y - cy) / ry)^2 (as shapes.ellipse); a box compares 0 (inside
        # its columns, else 2) with 1 (inside its rows, else -1).
        ellipse_cols = ((xf - (x0 + x1) / 2) / ((x1 - x0) / 2)) ** 2
        ellipse_rows = np.where(oval, 1.0 - ((yf - (y0 + y1) / 2) / ((y1 - y0) / 2)) ** 2, -1.0).astype(np.float32)
        box_cols = np.where(span(xf, x0, x1), np.float32(0.0), np.float32(2.0))
        box_rows = np.where(span(yf, y0, y1), np.float32(1.0), np.float32(-1.0))
        cols = np.where(oval, ellipse_cols, box_cols)
        rows = np.where(oval, ellipse_rows, box_rows)
        painter.paint(cols <= rows, CLUTTER0 + k)


def _draw_arm(painter: Painter, u: np.ndarray, v: np.ndarray, g: dict[str, np.ndarray], which: str,
              on: np.ndarray) -> None:
    """Arm ``which`` ("a" or "b", see the layout): skin, the sleeve over it, the hand."""
    band = painter.band(v, SHOULDER_V - 0.01, HAND_V + 0.04)
    core, t = bar(u, band.v, g[f"arm_{which}_u0"], SHOULDER_V, g[f"arm_{which}_u1"], HAND_V, g["arm_r"])
    band.paint(core & (span(t, 0.0, 1.0) & on), ARM_SKIN)
    band.paint(core & (span(t, 0.0, g["sleeve_t"]) & on), TOP)
    band.paint(ellipse(u, band.v, g[f"arm_{which}_u1"], HAND_V + 0.01, 0.026, 0.026, on=on), ARM_SKIN)


def _draw_side_bag(painter: Painter, u: np.ndarray, v: np.ndarray, g: dict[str, np.ndarray],
                   on: np.ndarray) -> None:
    """A shoulder bag with its strap from the same shoulder, or a handbag hanging below the hand."""
    band = painter.band(v, SHOULDER_V - 0.02, HAND_V + 0.14)
    strap, t = bar(u, band.v, g["strap_u0"], SHOULDER_V - 0.015, g["bag_u"], 0.43, 0.009)
    band.paint(strap & (span(t, 0.0, 1.0) & (g["shoulder_bag"] & on)), STRAP)
    bag_u, hand_u = g["bag_u"], g["handbag_u"]
    band.paint(rect(u, band.v, bag_u - 0.045, bag_u + 0.045, 0.42, 0.545, on=g["shoulder_bag"] & on), BAG)
    handbag = rect(u, band.v, hand_u - 0.035, hand_u + 0.035, HAND_V + 0.03, HAND_V + 0.13,
                   on=g["handbag"] & on)
    band.paint(handbag, BAG)


def _draw_legs(painter: Painter, u: np.ndarray, v: np.ndarray, g: dict[str, np.ndarray]) -> None:
    """Legs (skin, then the trouser part), shoes, the crotch of trousers and shorts, a skirt."""
    band = painter.band(v, HIP_V - 0.04, 1.0)
    for leg in ("a", "b"):
        u0, u1 = g[f"leg_{leg}_u0"], g[f"leg_{leg}_u1"]
        core, t = bar(u, band.v, u0, HIP_V, u1, ANKLE_V, g["leg_r"])
        band.paint(core & span(t, 0.0, 1.0), LEG_SKIN)
        band.paint(core & span(t, 0.0, g["trouser_t"]), BOTTOM)
        band.paint(ellipse(u, band.v, u1 + g["shoe_du"], 0.968, g["shoe_ru"], 0.026), SHOES)
    crotch = rect(u, band.v, -g["crotch_hw"], g["crotch_hw"], HIP_V - 0.03, HIP_V + 0.06, on=g["pants"])
    band.paint(crotch, BOTTOM)
    skirt = trapezoid(u, band.v, g["torso_cu"], 0.47, 0.74, g["skirt_top"], g["skirt_bottom"], on=g["skirt"])
    band.paint(skirt, BOTTOM)


def _draw_torso(painter: Painter, u: np.ndarray, v: np.ndarray, g: dict[str, np.ndarray]) -> None:
    """The top, its stripes or checks, its zip, collar or hem band, and a logo."""
    band = painter.band(v, NECK_V - 0.01, 0.67)
    vb = band.v
    torso = trapezoid(u, vb, g["torso_cu"], NECK_V, g["hem_v"], g["sw"], g["hem_hw"])
    band.paint(torso, TOP)
    band.paint(torso & (stripes(vb, 0.05, 0.45, NECK_V + 0.01) & g["striped"]), PATTERN)
    check = (stripes(u, 0.045, 0.3) & g["checked"]) | (stripes(vb, 0.045, 0.3) & g["checked"])  # (H', W, N)
    band.paint(torso & check, PATTERN)
    band.paint(torso & (span(vb, g["hem_v"] - 0.03, 1.0) & g["hem_band"]), DETAIL)
    band.paint(rect(u, vb, -0.007, 0.007, SHOULDER_V, g["hem_v"], on=g["zip"]), DETAIL)
    band.paint(trapezoid(u, vb, 0.0, NECK_V, 0.19, 0.035, 0.0, on=g["collar"]), DETAIL)
    band.paint(rect(u, vb, -0.028, 0.028, 0.22, 0.27, on=g["logo"]), LOGO)


def _draw_head(painter: Painter, u: np.ndarray, v: np.ndarray, g: dict[str, np.ndarray]) -> None:
    """Long hair behind the face, the face, the hair on the head, a ponytail, a hat."""
    side, front, back, d, head_u = g["side"], g["front"], g["back"], g["d"], g["head_u"]
    band = painter.band(v, -0.01, 0.23)
    vb = band.v
    behind = (u - head_u) * d <= 0.0  # (1, W, N): the back half of the head in side views
    long_cols = np.where(front, np.abs(u) >= 0.032, np.where(side, behind, True))  # (1, W, N)
    band.paint(ellipse(u, vb, head_u - d * 0.02, 0.12, 0.064, 0.1, on=g["long_hair"]) & long_cols, HAIR)
    band.paint(ellipse(u, vb, head_u, HEAD_V, HEAD_RU, HEAD_RV), FACE)
    hair_cols = back | (side & ((u - head_u) * d < 0.004))  # (1, W, N)
    hair_on_head = ellipse(u, vb, head_u, HEAD_V - 0.002, HEAD_RU + 0.004, HEAD_RV + 0.002, on=g["has_hair"])
    band.paint(hair_on_head & (hair_cols | (vb < 0.046)), HAIR)
    tail, t = bar(u, vb, head_u - d * 0.045, 0.075, head_u - d * 0.07, 0.19, 0.018)
    band.paint(tail & (span(t, 0.0, 1.0) & g["ponytail"]), HAIR)
    hat = ellipse(u, vb, head_u, HEAD_V - 0.004, HEAD_RU + 0.006, HEAD_RV + 0.004, on=g["has_hat"])
    band.paint(hat & (vb < g["hat_line"]), HAT)
    brim_u0 = np.where(side, np.minimum(head_u, head_u + d * 0.095), -0.06)
    brim_u1 = np.where(side, np.maximum(head_u, head_u + d * 0.095), 0.06)
    band.paint(rect(u, vb, brim_u0, brim_u1, 0.04, 0.054, on=g["cap"]), HAT)


def _draw_backpack(painter: Painter, u: np.ndarray, v: np.ndarray, g: dict[str, np.ndarray],
                   on: np.ndarray) -> None:
    """A backpack: behind the torso in side views, over it in back views (``on`` says which images)."""
    band = painter.band(v, 0.18, 0.43)
    band.paint(rect(u, band.v, g["bp_u0"], g["bp_u1"], 0.19, 0.42, on=on), BAG)


def _draw_carried(painter: Painter, u: np.ndarray, v: np.ndarray, g: dict[str, np.ndarray]) -> None:
    """A carried thing (vocabulary=rich) in hand A: a box of the thing's size around or below the hand."""
    if not g["carried"].any():
        return  # nobody in the batch carries anything: no paint at all
    band = painter.band(v, HAND_V - 0.07, HAND_V + 0.42)
    hand, hw = g["carried_u"], g["carried_hw"]
    band.paint(rect(u, band.v, hand - hw, hand + hw, g["carried_v0"], g["carried_v1"], on=g["carried"]), CARRIED)


def draw_person(painter: Painter, u: np.ndarray, v: np.ndarray, g: dict[str, np.ndarray]) -> None:
    """Paint one pedestrian per image, back to front.

    ``u`` ``(1, W, N)`` and ``v`` ``(H, 1, N)`` are the images' body coordinates,
    ``g`` the per-image layout of :func:`~tireid_lite.data.synth.layout.body_layout`.
    """
    side = g["side"]
    _draw_arm(painter, u, v, g, "b", on=side)  # the far arm in side views, behind the body
    _draw_backpack(painter, u, v, g, on=g["backpack_behind"])  # seen from the side, behind the body
    _draw_legs(painter, u, v, g)
    _draw_torso(painter, u, v, g)
    _draw_side_bag(painter, u, v, g, on=side)  # in side views, the near arm is in front of the bag
    _draw_arm(painter, u, v, g, "a", on=np.ones_like(side))
    _draw_arm(painter, u, v, g, "b", on=~side)
    _draw_carried(painter, u, v, g)
    _draw_head(painter, u, v, g)
    _draw_backpack(painter, u, v, g, on=g["backpack_front"])  # seen from the back
    _draw_side_bag(painter, u, v, g, on=~side)
