"""Torch datasets over a :class:`~tireid_lite.data.records.PedesDataset`: training pairs, gallery, queries.

Taught in ``01_data`` (one batch, drawn and shown) and used by every training notebook.

Items are dicts of tensors, so the default collate stacks them:

* :class:`TrainPairsDataset`: ``images (3, H, W)`` float, ``caption_ids (L,)`` long,
  ``pids``, ``image_ids``, ``index`` long scalars, ``noisy`` bool scalar (the injected
  ground truth, all False without noise), plus whatever the optional ``caption_hook``
  returns (masked-language inputs plug in there);
* :class:`GalleryDataset`: ``images``, ``pids``, ``image_ids``;
* :class:`QueryDataset`: ``caption_ids``, ``pids``, ``query_ids``.

Randomness per training item: one seed is drawn from torch's generator each time an item
is drawn (so a seeded ``DataLoader`` and its workers reproduce it) and feeds a
``numpy.random.Generator`` that decides the flip and is handed to ``caption_hook``, so
masks are re-drawn every time. The flip is decided here, not in the transform, because a
flipped image needs its caption mirrored (see :mod:`tireid_lite.data.transforms`).

With ``cache_images`` and the kit's own train transform, :meth:`TrainPairsDataset.load_batch`
builds a whole batch at once (:mod:`tireid_lite.data.batched`) with the same per-item draws,
so it equals the collated items; the training loader uses it when it applies.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

from tireid_lite.data.batched import InMemoryBatches
from tireid_lite.data.noise import NoiseInjection
from tireid_lite.data.records import SPLITS, PedesDataset
from tireid_lite.data.transforms import has_horizontal_flip, mirror_caption
from tireid_lite.errors import ConfigError, DatasetError
from tireid_lite.text.masking import augment_caption_ids
from tireid_lite.text.tokenizers import Tokenizer

if TYPE_CHECKING:
    from tireid_lite.data.patch_labels import ParsingMaps

ImageTransform = Callable[[Image.Image], torch.Tensor]
CaptionHook = Callable[[str, torch.Tensor, np.random.Generator], Mapping[str, torch.Tensor]]

TRAIN_KEYS = ("images", "caption_ids", "pids", "image_ids", "index", "noisy")


def read_image(path: Path) -> Image.Image:
    """The image at ``path`` as RGB, or one clear error naming the file."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:
        raise DatasetError(
            f"cannot open image {path} ({err}); run `tireid check-data --full` on the dataset root "
            "to list every missing or unreadable image"
        ) from err


JPEG_SUFFIXES = (".jpg", ".jpeg")

# Images decoded in this process, shared by every dataset built with ``cache_images`` (a notebook
# trains many runs on one SynthPEDES: each would otherwise decode the same files again), and the
# test-recipe tensors of evaluation images. Keys hold the file's size and modification time, so a
# rewritten file is read again. Both are emptied when they reach SHARED_CACHE_ITEMS entries.
SHARED_CACHE_ITEMS = 50_000
_SHARED_IMAGES: dict[tuple[str, int, int], Image.Image] = {}
_SHARED_PIXELS: dict[tuple[str, int, int, str], torch.Tensor] = {}


def _file_key(path: Path) -> tuple[str, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None  # read_image names the file in its error
    return str(path), stat.st_mtime_ns, stat.st_size


def _remember(cache: dict, key: tuple, value: object) -> None:
    if len(cache) >= SHARED_CACHE_ITEMS:
        cache.clear()
    cache[key] = value


def read_image_shared(path: Path) -> Image.Image:
    """:func:`read_image`, decoding each file once per process (the image must not be changed in place)."""
    key = _file_key(path)
    if key is None:
        return read_image(path)
    image = _SHARED_IMAGES.get(key)
    if image is None:
        image = read_image(path)
        _remember(_SHARED_IMAGES, key, image)
    return image


def image_pixels(path: Path, transform: ImageTransform, *, shared: bool = False) -> torch.Tensor:
    """``transform`` applied to the image at ``path``. With ``shared`` and a deterministic transform (one
    that carries ``shared_cache_key``, as the test recipe of ``build_transforms`` does), the tensor is
    computed once per process and returned to every caller (read it, do not change it in place)."""
    cache_key = getattr(transform, "shared_cache_key", None)
    key = _file_key(path) if shared and cache_key is not None else None
    if key is None:
        return transform(read_image_shared(path) if shared else read_image(path))
    full_key = (*key, str(cache_key))
    pixels = _SHARED_PIXELS.get(full_key)
    if pixels is None:
        pixels = transform(read_image_shared(path))
        _remember(_SHARED_PIXELS, full_key, pixels)
    return pixels


def read_jpeg_tensor(path: Path) -> tv_tensors.Image | Image.Image:
    """A JPEG decoded by ``torchvision.io`` into a uint8 ``(3, H, W)`` image tensor (more images per second
    than PIL through the training transforms: ``benchmarks/bench_loader.py``); a file it cannot decode
    goes to PIL, which reads it or names it in one clear error."""
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    try:
        return tv_tensors.Image(decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB))
    except (RuntimeError, OSError, ValueError):
        return read_image(path)


def _image_size(image: tv_tensors.Image | Image.Image) -> tuple[int, int]:
    """(height, width) of a PIL image or an image tensor."""
    if isinstance(image, Image.Image):
        return image.height, image.width
    return int(image.shape[-2]), int(image.shape[-1])


def _check_split(dataset: PedesDataset, split: str) -> None:
    if split not in SPLITS or not dataset.has_split(split):
        present = ", ".join(s for s in SPLITS if dataset.has_split(s)) or "(none: the dataset is empty)"
        raise DatasetError(f"{dataset.name} has no {split!r} split; use one of {present}")


class TrainPairsDataset(Dataset):
    """One item per training caption: image (flipped with its caption at random) and caption ids.

    ``cache_images=True`` keeps every decoded image in memory after its first use:
    worth it for SynthPEDES (2,000 images of 96x32 are 18 MB), not for the real
    datasets at 384x128.

    With ``part_maps`` (BiLMa's masked image modelling) each item also holds
    ``part_map`` (H, W) int64: the image's part map taken through the same flip,
    resize, pad and crop as the image (random erasing changes the image only).
    """

    def __init__(
        self,
        dataset: PedesDataset,
        tokenizer: Tokenizer,
        transform: ImageTransform,
        *,
        flip_p: float = 0.5,
        noise: NoiseInjection | None = None,
        caption_hook: CaptionHook | None = None,
        cache_images: bool = False,
        part_maps: "ParsingMaps | None" = None,
        identities: int = 0,
        text_aug: float = 0.0,
    ) -> None:
        if not 0.0 <= flip_p <= 1.0:
            raise ConfigError(f"flip_p={flip_p!r} is not a probability in [0, 1]")
        if flip_p > 0 and has_horizontal_flip(transform):
            raise ConfigError(
                "the image transform already flips images, so captions would not be mirrored; "
                "build it with build_transforms(..., flip=False) and let the dataset flip (flip_p)"
            )
        pairs = dataset.train_pairs(identities)
        if not pairs:
            raise DatasetError(
                f"{dataset.name} (root {dataset.root}) has no training captions; check its annotation file"
            )
        self.dataset = dataset
        self.tokenizer = tokenizer
        self.transform = transform
        self.flip_p = float(flip_p)
        self.caption_hook = caption_hook
        self.pairs = noise.apply(pairs) if noise is not None else pairs
        self.noisy = noise.noisy.copy() if noise is not None else np.zeros(len(pairs), dtype=bool)  # (N,)
        self.pids = np.array([p.pid for p in pairs], dtype=np.int64)  # (N,)
        self.num_classes = int(self.pids.max()) + 1
        # Decoded images by path, kept when cache_images (each DataLoader worker fills its own copy).
        self._image_cache: dict[str, Image.Image] | None = {} if cache_images else None
        self.part_maps = part_maps
        self._part_cache: dict[str, np.ndarray] | None = {} if cache_images else None
        # Images read from disk every time (the real datasets): JPEGs decode with torchvision.io into
        # tensors the transforms take as they are; "pil" keeps PIL for them too.
        self.jpeg_decoder = "torchvision"
        self.text_aug = float(text_aug)  # RDE's --txt_aug probability (0 = off)
        self._batches: tuple[object, InMemoryBatches | None] | None = None  # (for which transform, loader)

    def load_batch(self, indices: Sequence[int], seeds: Sequence[int]) -> dict[str, torch.Tensor] | None:
        """The collated batch of items ``indices``, item ``k`` drawn as ``self[indices[k]]`` is after
        ``torch.manual_seed(seeds[k])``, built as whole-batch tensor operations
        (:class:`~tireid_lite.data.batched.InMemoryBatches`); ``None`` where only the per-item
        path applies (images not cached, a transform other than the kit's recipe, or text
        augmentation, whose draws only the per-item path makes)."""
        if self.text_aug > 0:
            return None
        if self._batches is None or self._batches[0] is not self.transform:
            self._batches = (self.transform, InMemoryBatches.for_dataset(self))
        batches = self._batches[1]
        return None if batches is None else batches.batch(indices, seeds)

    def _image(self, path: str) -> Image.Image | tv_tensors.Image:
        if self._image_cache is None:
            full = self.dataset.image_path(path)
            if self.jpeg_decoder == "torchvision" and full.suffix.lower() in JPEG_SUFFIXES:
                return read_jpeg_tensor(full)
            return read_image(full)
        if path not in self._image_cache:
            self._image_cache[path] = read_image_shared(self.dataset.image_path(path))
        return self._image_cache[path]

    def _part_map(self, path: str, image: Image.Image | tv_tensors.Image) -> np.ndarray:
        cache = self._part_cache
        if cache is not None and path in cache:
            return cache[path]
        part_map = self.part_maps.load(path, size=_image_size(image))  # (H, W) at the image's size
        if cache is not None:
            cache[path] = part_map
        return part_map

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        pair = self.pairs[index]
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        image = self._image(pair.path)
        part_map = self._part_map(pair.path, image) if self.part_maps is not None else None
        caption = pair.caption
        if rng.random() < self.flip_p:
            if isinstance(image, Image.Image):
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            else:
                image = tv_tensors.wrap(image.flip(-1), like=image)  # (3, H, W) uint8
            caption = mirror_caption(caption)
            part_map = part_map[:, ::-1] if part_map is not None else None
        caption_ids = self.tokenizer([caption])[0]  # (L,)
        extra: dict[str, torch.Tensor] = {}
        if part_map is None:
            pixels = self.transform(image)  # (3, H, W)
        else:
            with warnings.catch_warnings():  # erasing leaves masks alone, as wanted; torchvision says so
                warnings.filterwarnings("ignore", message="RandomErasing.*Mask", category=UserWarning)
                pixels, mask = self.transform(image, tv_tensors.Mask(torch.from_numpy(part_map.astype(np.int64))))
            extra["part_map"] = torch.as_tensor(mask, dtype=torch.long)  # (H, W)
        item = {
            "images": pixels,  # (3, H, W)
            "caption_ids": caption_ids,
            "pids": torch.tensor(pair.pid, dtype=torch.long),
            "image_ids": torch.tensor(pair.image_id, dtype=torch.long),
            "index": torch.tensor(pair.index, dtype=torch.long),
            "noisy": torch.tensor(bool(self.noisy[index])),
            **extra,
        }
        if self.caption_hook is not None:
            extra = self.caption_hook(caption, caption_ids, rng)
            clash = sorted(set(extra) & set(item))
            if clash:
                raise ConfigError(
                    f"caption_hook returned {', '.join(clash)}, which the dataset already provides; rename them"
                )
            item.update(extra)
        if self.text_aug > 0:  # drawn last, so that every other draw is the same with or without it
            aug_rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
            item["caption_ids"] = augment_caption_ids(caption_ids, self.tokenizer, self.text_aug, aug_rng)
        return item


def training_captions(train_set: TrainPairsDataset) -> list[str]:
    """Every caption the training set can yield: its captions and their mirrored versions, sorted, unique
    (what a per-caption hook such as key-phrase masking may be asked about)."""
    captions = {pair.caption for pair in train_set.pairs}
    return sorted(captions | {mirror_caption(caption) for caption in captions})


class GalleryDataset(Dataset):
    """Every image of an evaluation split, in file order: ``images``, ``pids``, ``image_ids``.

    ``cache_images=True`` keeps each transformed image after its first use (the test transform
    is deterministic), so evaluating every epoch decodes the split's images once.
    """

    def __init__(self, dataset: PedesDataset, split: str, transform: ImageTransform, *,
                 cache_images: bool = False) -> None:
        _check_split(dataset, split)
        eval_set = dataset.eval_set(split)
        self.dataset = dataset
        self.transform = transform
        self.paths = eval_set.gallery_paths
        self.pids = np.asarray(eval_set.gallery_pids, dtype=np.int64)  # (G,)
        self._cache: dict[int, torch.Tensor] | None = {} if cache_images else None

    def __len__(self) -> int:
        return len(self.paths)

    def _pixels(self, index: int) -> torch.Tensor:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        path = self.dataset.image_path(self.paths[index])
        pixels = image_pixels(path, self.transform, shared=self._cache is not None)  # (3, H, W)
        if self._cache is not None:
            self._cache[index] = pixels
        return pixels

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {
            "images": self._pixels(index),  # (3, H, W)
            "pids": torch.tensor(int(self.pids[index]), dtype=torch.long),
            "image_ids": torch.tensor(index, dtype=torch.long),
        }


class QueryDataset(Dataset):
    """Every caption of an evaluation split, tokenized once: ``caption_ids``, ``pids``, ``query_ids``."""

    def __init__(self, dataset: PedesDataset, split: str, tokenizer: Tokenizer) -> None:
        _check_split(dataset, split)
        eval_set = dataset.eval_set(split)
        self.captions = eval_set.query_captions
        self.pids = np.asarray(eval_set.query_pids, dtype=np.int64)  # (Q,)
        self.image_ids = np.asarray(eval_set.query_image_ids, dtype=np.int64)  # (Q,)
        self.caption_ids = tokenizer(self.captions)  # (Q, L)

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {
            "caption_ids": self.caption_ids[index],  # (L,)
            "pids": torch.tensor(int(self.pids[index]), dtype=torch.long),
            "query_ids": torch.tensor(index, dtype=torch.long),
        }
