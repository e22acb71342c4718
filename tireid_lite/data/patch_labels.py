"""Part maps -> one part label per ViT patch: the targets of BiLMa's semantic MIM (SemMIM).

BiLMa masks image patches and asks the model to predict each masked patch's
human-parsing label. The paper does not publish its parser, its classes or how
a patch gets its label; this module is the kit's reading of it:

* a patch's label is the majority *non-background* part class of its pixels,
  or background when the share of non-background pixels is below a coverage
  threshold (:func:`patch_labels`);
* part maps are resized to the model's input size with nearest-neighbour
  sampling before labelling, never interpolated (:func:`resize_part_map`);
* SynthPEDES has exact part maps under ``<root>/parts/``
  (:func:`synth_part_map_path`, :func:`load_synth_part_map`);
* real datasets read precomputed parser maps from a folder mirroring the image
  paths, by default ``<root>/parsing/`` (:class:`ParsingMaps`); an image without
  a map falls back to a fixed vertical body-layout prior (:func:`layout_prior`).

Label values index the kit's :data:`PART_CLASSES` (background, hat, hair,
face, upper_clothes, lower_clothes, arms, legs, shoes, bag). Taught in
``06_bilma_semantic_mim``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from tireid_lite.data.readers import IMAGE_DIR, PARTS_DIR, part_map_relpath
from tireid_lite.data.records import PedesDataset
from tireid_lite.data.synth.materials import PART_CLASSES, PART_INDEX
from tireid_lite.errors import DatasetError

PARSING_DIR = "parsing"  # the default parsing folder, beside imgs/ under a dataset root
LABEL_MODES = ("L", "P")  # single-channel PIL modes whose pixel values are class indices
BACKGROUND = PART_INDEX["background"]

# The body-layout prior: (part, bottom edge as a fraction of the image height), top to bottom,
# over a centred body column LAYOUT_COLUMN of the image width wide. The fractions follow a
# pedestrian crop where the person fills the height (as in CUHK-PEDES, ICFG-PEDES, RSTPReid).
LAYOUT_BANDS: tuple[tuple[str, float], ...] = (
    ("hair", 0.07),
    ("face", 0.15),
    ("upper_clothes", 0.50),
    ("lower_clothes", 0.80),
    ("legs", 0.92),
    ("shoes", 1.00),
)
LAYOUT_COLUMN = 0.5


def _size_pair(size: Sequence[int], what: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} {size!r} is not (height, width); use e.g. (96, 32)") from err
    if height <= 0 or width <= 0:
        raise ValueError(f"{what} {size!r} must be two positive integers (height, width), e.g. (96, 32)")
    return height, width


def _as_label_array(part_map: np.ndarray | Image.Image, what: str = "part map") -> np.ndarray:
    """``part_map`` as an integer numpy array with 2 or 3 dimensions (a PIL image is read as is)."""
    array = np.asarray(part_map)
    if array.ndim not in (2, 3):
        raise ValueError(
            f"{what} must be (H, W) or (B, H, W), got shape {array.shape}; pass class indices, not an RGB image"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"{what} must hold integer class indices, got dtype {array.dtype}; convert it with .astype(np.uint8) "
            "after rounding, or load it as a mode 'L' image"
        )
    return array


def resize_part_map(part_map: np.ndarray | Image.Image, size: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of a part map ``(H, W)`` or ``(B, H, W)`` to ``size`` = (height, width).

    Output pixel ``(i, j)`` takes the input pixel whose centre is nearest to its
    own centre mapped back to the input grid::

        i_in = floor((i + 1/2) * H_in / H_out),   j_in = floor((j + 1/2) * W_in / W_out)

    (PIL's ``NEAREST`` and torch's ``nearest-exact``). Labels are never averaged:
    a blend of class 4 and class 8 is not class 6. Call it before
    :func:`patch_labels` so that the map has the model's input size. Taught in
    ``06_bilma_semantic_mim``.
    """
    array = _as_label_array(part_map)
    height, width = _size_pair(size, "size")
    in_height, in_width = array.shape[-2:]
    rows = np.minimum(((np.arange(height) + 0.5) * in_height / height).astype(np.int64), in_height - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * in_width / width).astype(np.int64), in_width - 1)
    return array[..., rows[:, None], cols[None, :]]  # (..., height, width)


def patch_labels(
    part_map: np.ndarray | Image.Image,
    patch_size: int,
    coverage: float = 0.5,
    background: int = BACKGROUND,
) -> np.ndarray:
    r"""One part label per ``patch_size`` x ``patch_size`` patch: ``(H, W) -> (rows, cols)``, int64.

    Works on a batch too: ``(B, H, W) -> (B, rows, cols)``. With n_c the number
    of pixels of class c in a patch of P = p^2 pixels and F = sum_{c != bg} n_c
    its non-background pixels::

        label = argmax_{c != bg} n_c    when F > 0 and F / P >= coverage
        label = bg                      otherwise

    Ties go to the lowest class index (``argmax`` returns the first maximum),
    so a patch with as many face as upper-clothes pixels is ``face`` (3 < 4).
    With ``coverage=0`` a patch is background only when it has no
    non-background pixel at all. Rows and columns follow the ViT's token order:
    patch ``(r, c)`` is token ``r * cols + c`` (row by row, as ``flatten`` numbers them). Our
    reading of BiLMa's SemMIM targets (the paper does not say how a patch gets
    its label). Taught in ``06_bilma_semantic_mim``.
    """
    array = _as_label_array(part_map)
    if isinstance(patch_size, bool) or int(patch_size) != patch_size or patch_size <= 0:
        raise ValueError(f"patch_size={patch_size!r} must be a positive integer, e.g. 8 or 16")
    if not 0.0 <= coverage <= 1.0:
        raise ValueError(f"coverage={coverage!r} is not a share of a patch; use a value in [0, 1], e.g. 0.5")
    patch = int(patch_size)
    height, width = array.shape[-2:]
    uneven = [f"{name} {n}" for name, n in (("height", height), ("width", width)) if n % patch]
    if uneven:
        verb = "are not multiples" if len(uneven) == 2 else "is not a multiple"
        raise ValueError(
            f"part map {' and '.join(uneven)} {verb} of patch_size {patch}; resize the part map to the "
            f"model's input size first with resize_part_map (e.g. to ({patch * 12}, {patch * 4}))"
        )
    if array.size and int(array.min()) < 0:
        raise ValueError(f"part map holds the negative label {int(array.min())}; labels index PART_CLASSES from 0")
    batched = array.ndim == 3
    maps = array if batched else array[None]  # (B, H, W)
    batch, rows, cols = maps.shape[0], height // patch, width // patch
    num_classes = max(int(maps.max(initial=0)), int(background)) + 1
    patch_index = np.arange(batch * rows * cols).reshape(batch, rows, 1, cols, 1)
    pixel_patch = np.broadcast_to(patch_index, (batch, rows, patch, cols, patch)).reshape(batch, height, width)
    counts = np.bincount(
        (pixel_patch * num_classes + maps).ravel(), minlength=batch * rows * cols * num_classes
    ).reshape(batch, rows, cols, num_classes)  # (B, rows, cols, C): pixels of each class per patch
    counts[..., background] = 0
    foreground = counts.sum(axis=-1)  # (B, rows, cols)
    majority = counts.argmax(axis=-1)  # first maximum: ties go to the lowest class index
    labelled = (foreground > 0) & (foreground >= coverage * patch * patch)
    labels = np.where(labelled, majority, background).astype(np.int64)  # (B, rows, cols)
    return labels if batched else labels[0]


def layout_prior(size: Sequence[int], column: float = LAYOUT_COLUMN) -> np.ndarray:
    """The fixed body-layout prior at ``size`` = (height, width): a uint8 part map.

    Used for an image without a parsing map. Inside a centred body column
    ``column`` of the width wide, pixel rows are assigned by the fractions of
    :data:`LAYOUT_BANDS` (a row whose centre ``(y + 1/2) / H`` lies in a band
    takes its part): hair to 0.07 of the height, face to 0.15, upper clothes to
    0.50, lower clothes to 0.80, legs to 0.92, shoes to the bottom. Everything
    outside the column is background; hat, arms and bag never appear. The
    fractions are round numbers for a pedestrian who fills the crop's height,
    close to SynthPEDES's average person; a crude stand-in for a parser, so
    prefer real maps. Taught in ``06_bilma_semantic_mim``.
    """
    height, width = _size_pair(size, "size")
    if not 0.0 < column <= 1.0:
        raise ValueError(f"column={column!r} is not a share of the image width; use a value in (0, 1]")
    edges = np.array([bottom for _, bottom in LAYOUT_BANDS])
    band_parts = np.array([PART_INDEX[name] for name, _ in LAYOUT_BANDS], dtype=np.uint8)
    row_centres = (np.arange(height) + 0.5) / height
    row_parts = band_parts[np.minimum(np.searchsorted(edges, row_centres, side="right"), len(edges) - 1)]
    col_centres = (np.arange(width) + 0.5) / width
    in_column = np.abs(col_centres - 0.5) < column / 2
    return np.where(in_column[None, :], row_parts[:, None], BACKGROUND).astype(np.uint8)  # (H, W)


def _label_image_error(image: Image.Image, path: Path, image_size: tuple[int, int] | None) -> str | None:
    """Why an opened label PNG has the wrong mode or size, or None."""
    width, height = image.size
    if image.mode not in LABEL_MODES:
        return (f"{path} has PIL mode {image.mode!r}; save it as a single-channel PNG (mode 'L' or 'P') whose "
                "values index PART_CLASSES, not a colour-coded picture")
    if image_size is not None and (height, width) != tuple(image_size):
        return (f"{path} is {height}x{width} (height x width) but its image is {image_size[0]}x{image_size[1]}; "
                "write the map at the size of its image")
    return None


def _label_values_error(labels: np.ndarray, path: Path) -> str | None:
    """Why decoded labels do not all index PART_CLASSES, or None."""
    top = int(labels.max(initial=0))
    if top < len(PART_CLASSES):
        return None
    return (f"{path} holds class {top} but the kit has {len(PART_CLASSES)} part classes (0-{len(PART_CLASSES) - 1}, "
            "PART_CLASSES); remap the parser's labels to the PART_CLASSES order")


def _read_label_png(
    path: Path, image_size: tuple[int, int] | None, decode: bool
) -> tuple[np.ndarray | None, str | None]:
    """(labels, None) for a usable label PNG (labels None unless ``decode``), else (None, the reason)."""
    try:
        with Image.open(path) as image:
            reason = _label_image_error(image, path, image_size)
            if reason is not None or not decode:
                return None, reason
            labels = np.asarray(image, dtype=np.uint8)  # (H, W) class indices
    except (OSError, SyntaxError, ValueError) as err:  # PIL signals bad data with these
        return None, f"{path} does not decode ({type(err).__name__}: {err}); write the map again"
    reason = _label_values_error(labels, path)
    return (None, reason) if reason else (labels, None)


def label_map_error(path: Path, image_size: tuple[int, int] | None = None, decode: bool = True) -> str | None:
    """Why the label PNG at ``path`` cannot serve as a part map, or None when it can.

    Checks the PIL mode (single-channel ``L`` or ``P``), the size against
    ``image_size`` = (height, width) of its image when given, and, when
    ``decode``, that the pixels decode and every value indexes
    :data:`PART_CLASSES`. Shared by :class:`ParsingMaps` and ``tireid check-data``.
    """
    return _read_label_png(Path(path), image_size, decode)[1]


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) of the image at ``path``, read from its header."""
    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]
    except (OSError, SyntaxError, ValueError) as err:
        raise DatasetError(
            f"cannot open image {path} ({err}); run `tireid check-data --full` on the dataset root"
        ) from err


class ParsingMaps:
    """Part maps of a dataset's images, read from a folder that mirrors the image paths.

    The map of image ``<image_dir>/<rel>`` is ``<root>/<rel with extension .png>``:
    a single-channel PNG (mode ``L`` or ``P``) of class indices in the order of
    :data:`PART_CLASSES`, at the size of its image. :meth:`load` returns it,
    optionally resized (nearest-neighbour) to the model's input size. An image
    without a map gets :func:`layout_prior` when ``fallback`` (the default), an
    error otherwise. With ``image_dir`` each map's size is checked against its
    image. A map of the wrong mode or size, or one holding a class outside
    PART_CLASSES, is an error naming the file. Build it for a dataset with
    :meth:`for_dataset`; SynthPEDES's exact maps with :meth:`synth`. Taught in
    ``06_bilma_semantic_mim``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        image_dir: str | os.PathLike[str] | None = None,
        fallback: bool = True,
    ) -> None:
        self.root = Path(root)
        self.image_dir = None if image_dir is None else Path(image_dir)
        self.fallback = bool(fallback)
        self._missing_fix = ("write the parser's map there, or build ParsingMaps with fallback=True to use "
                             "the body-layout prior")

    @classmethod
    def for_dataset(
        cls,
        dataset: PedesDataset,
        parsing_root: str | os.PathLike[str] | None = None,
        fallback: bool = True,
    ) -> ParsingMaps:
        """The maps of ``dataset``: SynthPEDES's ``parts/``, else ``parsing_root`` (default ``<root>/parsing``)."""
        if dataset.name == "synth" and parsing_root is None:
            return cls.synth(dataset.root)
        if parsing_root is not None and not Path(parsing_root).is_dir():
            raise DatasetError(
                f"parsing folder {parsing_root} not found; give the folder that mirrors {dataset.image_dir}/ "
                f"with one map per image, or leave parsing_root unset for {dataset.root / PARSING_DIR}/"
            )
        root = dataset.root / PARSING_DIR if parsing_root is None else Path(parsing_root)
        return cls(root, image_dir=dataset.image_dir, fallback=fallback)

    @classmethod
    def synth(cls, root: str | os.PathLike[str]) -> ParsingMaps:
        """SynthPEDES's exact part maps under ``<root>/parts/`` (no fallback: every image has one)."""
        root = Path(root)
        maps = cls(root / PARTS_DIR, image_dir=root / IMAGE_DIR, fallback=False)
        maps._missing_fix = "regenerate the dataset with `tireid synth --out DIR`"
        return maps

    def path(self, image_path: str) -> Path:
        """Where the map of ``image_path`` (relative to the image folder) lives."""
        return self.root / part_map_relpath(image_path)

    def has_map(self, image_path: str) -> bool:
        """True when ``image_path`` has a map file (False: :meth:`load` falls back to the prior)."""
        return self.path(image_path).is_file()

    def load(self, image_path: str, size: Sequence[int] | None = None) -> np.ndarray:
        """The uint8 part map of ``image_path``, at ``size`` = (height, width) when given.

        ``size`` is the model's input size (the map is resized nearest-neighbour);
        ``None`` keeps the map's own size, which for the prior needs ``image_dir``.
        """
        path = self.path(image_path)
        if not self.has_map(image_path):
            if not self.fallback:
                raise DatasetError(f"no part map {path} for image {image_path}; {self._missing_fix}")
            if size is not None:
                return layout_prior(size)
            if self.image_dir is None:
                raise ValueError(
                    f"no parsing map {path} and no size to draw the body-layout prior at; pass size=(H, W) "
                    "or build ParsingMaps with image_dir"
                )
            return layout_prior(_image_size(self.image_dir / image_path))
        image_size = None if self.image_dir is None else _image_size(self.image_dir / image_path)
        part_map, reason = _read_label_png(path, image_size, decode=True)
        if part_map is None:
            raise DatasetError(f"part map {reason}")
        return part_map if size is None else resize_part_map(part_map, size)

    def __repr__(self) -> str:
        return f"ParsingMaps(root={str(self.root)!r}, image_dir={self.image_dir!r}, fallback={self.fallback})"


def synth_part_map_path(root: str | os.PathLike[str], file_path: str) -> Path:
    """Where SynthPEDES keeps the part map of image ``file_path`` (relative to ``imgs/``).

    ``<root>/parts/`` plus the same relative path with extension ``.png``.
    """
    return Path(root) / PARTS_DIR / part_map_relpath(file_path)


def load_synth_part_map(
    root: str | os.PathLike[str], file_path: str, size: Sequence[int] | None = None
) -> np.ndarray:
    """The exact uint8 part map of a SynthPEDES image, resized nearest-neighbour to ``size`` when given."""
    return ParsingMaps.synth(root).load(file_path, size)
