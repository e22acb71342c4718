"""Vectorised shape masks for a batch of images, in body coordinates.

Arrays are laid out ``(H, W, N)``: the batch is the innermost axis, so every
broadcast runs over ``N`` contiguous values. Each function takes the batch's
grids ``u`` ``(1, W, N)`` (horizontal, body units from the body axis) and ``v``
``(H, 1, N)`` (vertical, 0 at the top of the head, 1 at the soles), and
per-image parameters of shape ``(N,)`` (or scalars). Everything that depends on
one axis only stays small; a mask becomes ``(H, W, N)`` in one or two final
comparisons, which is what makes drawing a thousand pedestrians a second
cheap. ``on`` (``(N,)`` bool) empties the shape in the images where it is false.
Taught in ``01_data``.
"""

from __future__ import annotations

import numpy as np

Param = np.ndarray | float


def span(t: np.ndarray, low: Param, high: Param) -> np.ndarray:
    """``low <= t <= high`` (elementwise; used on the small one-axis terms)."""
    return (t >= low) & (t <= high)


def rect(
    u: np.ndarray, v: np.ndarray, u0: Param, u1: Param, v0: Param, v1: Param, on: np.ndarray | bool = True
) -> np.ndarray:
    """Axis-aligned box ``u0 <= u <= u1`` and ``v0 <= v <= v1``."""
    return span(u, u0, u1) & (span(v, v0, v1) & on)  # (1, W, N) & (H, 1, N) -> (H, W, N)


def ellipse(
    u: np.ndarray, v: np.ndarray, cu: Param, cv: Param, ru: Param, rv: Param, on: np.ndarray | bool = True
) -> np.ndarray:
    """Filled ellipse centred at ``(cu, cv)`` with radii ``ru`` (horizontal) and ``rv`` (vertical)."""
    room = np.where(on, 1.0 - ((v - cv) / rv) ** 2, -1.0).astype(np.float32)  # (H, 1, N)
    return ((u - cu) / ru) ** 2 <= room  # (1, W, N) vs (H, 1, N) -> (H, W, N)


def between(u: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``low <= u <= high`` where the bounds vary by row: ``(1, W, N)`` vs ``(H, 1, N)`` -> ``(H, W, N)``."""
    return (u >= low) & (u <= high)


def trapezoid(
    u: np.ndarray,
    v: np.ndarray,
    cu: Param,
    v0: Param,
    v1: Param,
    half_top: Param,
    half_bottom: Param,
    on: np.ndarray | bool = True,
) -> np.ndarray:
    """A trapezoid about ``u = cu``: half-width ``half_top`` at ``v0``, ``half_bottom`` at ``v1``."""
    frac = (v - v0) / (v1 - v0)  # (H, 1, N)
    half = half_top + (half_bottom - half_top) * frac
    half = np.where(span(frac, 0.0, 1.0) & on, half, -1.0).astype(np.float32)  # negative: empty row
    return between(u, cu - half, cu + half)


def bar(
    u: np.ndarray, v: np.ndarray, u0: Param, v0: Param, u1: Param, v1: Param, radius: Param
) -> tuple[np.ndarray, np.ndarray]:
    """A thick straight limb through ``(u0, v0)`` and ``(u1, v1)`` (``v1 > v0``), unbounded in length.

    Returns ``core`` ``(H, W, N)``, true within ``radius`` of the limb's line
    (measured across the limb, so a slanted limb keeps its thickness), and
    ``t`` ``(H, 1, N)``, the fraction of the way from the first point to the
    second at each row. Cut the limb to a segment with ``core & span(t, 0, 1)``;
    a sleeve or a trouser leg is ``core & span(t, 0, t_max)``.
    """
    t = (v - v0) / (v1 - v0)  # (H, 1, N)
    slope = (u1 - u0) / (v1 - v0)
    centre = u0 + (u1 - u0) * t  # (H, 1, N)
    half = radius * np.sqrt(1.0 + slope * slope)  # (N,)
    return between(u, centre - half, centre + half), t


def stripes(coord: np.ndarray, period: float, duty: float, phase: Param = 0.0) -> np.ndarray:
    """True on the first ``duty`` fraction of every ``period`` along ``coord`` (either small grid)."""
    return np.mod(coord - phase, period) < duty * period
