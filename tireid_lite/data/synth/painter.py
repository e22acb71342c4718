"""A layer map for painter's algorithm over a batch of images, one ``np.maximum`` per paint.

Every paint takes the next layer id and a pixel keeps the highest id painted
over it, so the last paint wins, as when painting back to front. Each layer id
records its material, from which colours and part classes are looked up at the
end. Arrays are ``(H, W, N)``, the batch innermost (see
:mod:`~tireid_lite.data.synth.shapes`). Taught in ``01_data``.
"""

from __future__ import annotations

import numpy as np

from tireid_lite.data.synth.materials import BANDS
from tireid_lite.data.synth.shapes import span


class Painter:
    """A layer map ``(H, W, N)``; each paint takes the next layer id, and the highest id wins a pixel."""

    def __init__(self, height: int, width: int, n: int) -> None:
        band_of_row = (np.arange(height) * BANDS // height).astype(np.uint8)  # background gradient bands
        self.layers = np.broadcast_to(band_of_row[:, None, None], (height, width, n)).copy()
        self.materials: list[int] = list(range(BANDS))  # material of each layer id
        self._scratch = np.empty_like(self.layers)

    def paint(self, mask: np.ndarray, material: int, rows: slice = slice(None)) -> None:
        """Paint ``material`` where ``mask`` is true; ``mask`` covers ``rows`` of the map (all by default)."""
        layer = len(self.materials)
        if layer > 255:
            raise RuntimeError("more than 255 paints in one drawing; the layer map is uint8")
        self.materials.append(material)
        scratch, layers = self._scratch[rows], self.layers[rows]
        np.multiply(mask, np.uint8(layer), out=scratch)  # layer id where painted, 0 elsewhere
        np.maximum(layers, scratch, out=layers)

    def band(self, v: np.ndarray, low: float, high: float) -> "Band":
        """The rows where some image has ``low <= v <= high``: shapes that lie there need only those rows."""
        rows = np.flatnonzero(span(v, low, high).any(axis=(1, 2)))
        found = slice(int(rows[0]), int(rows[-1]) + 1) if len(rows) else slice(0, 0)
        return Band(self, found, v[found])


class Band:
    """A band of rows of a :class:`Painter`: ``v`` holds the band's rows and ``paint`` writes them."""

    def __init__(self, painter: Painter, rows: slice, v: np.ndarray) -> None:
        self.painter, self.rows, self.v = painter, rows, v

    def paint(self, mask: np.ndarray, material: int) -> None:
        self.painter.paint(mask, material, self.rows)
