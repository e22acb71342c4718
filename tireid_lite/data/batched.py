"""Batched loading of in-memory training images: a whole batch in a few tensor operations.

The per-item path of :class:`~tireid_lite.data.torch_data.TrainPairsDataset` runs
torchvision's v2 pipeline on one PIL image at a time, tokenises one caption at a time
and sets up two random generators per item: about 0.6 ms per item, a fifth of a
cpu-profile iteration at batch 64. When the decoded images are kept in memory
(``data.cache_images``) and the transform is the kit's own recipe
(:func:`~tireid_lite.data.transforms.build_transforms`), :class:`InMemoryBatches`
builds the same batch from one uint8 tensor of every training image:

* per item, only the random draws: the item's torch generator (seeded as the per-item
  path seeds the global one) gives the numpy seed, the crop offsets and the erasing
  rectangle in the order torchvision draws them; the numpy generator (the batch's
  generators built at once, :func:`~tireid_lite.checkpoint.numpy_generators`) gives the
  flip and is handed to the caption hook, exactly as in the per-item path;
* per batch: pad and random crop as one slice per item of the padded image store
  (channels first, mirrored where flipped) stacked, the conversion to float and the
  normalisation, random erasing as one masked fill, the token ids gathered from every
  caption and its mirror tokenised once, the part maps cropped as their images.

So a batch holds the same tensors as the per-item path gives (equal up to float rounding
of the normalisation, tested), and resume stays exact. Any other transform, or images
of several sizes, keeps the per-item path (:meth:`InMemoryBatches.for_dataset` says
``None``). Taught in ``02_baseline_irra`` (the training loader).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from tireid_lite.checkpoint import numpy_generators
from tireid_lite.data.transforms import mirror_caption

NUMPY_SEED_HIGH = 2**62  # the per-item path's numpy seed: torch.randint(0, 2**62) from the item's generator


@dataclass(frozen=True)
class Recipe:
    """The settings of a :func:`~tireid_lite.data.transforms.build_transforms` train pipeline."""

    size: tuple[int, int]  # (H, W)
    pad: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    erase_p: float  # 0: no erasing step
    erase_scale: tuple[float, float] = (0.02, 0.4)
    erase_ratio: tuple[float, float] = (0.3, 3.3)
    erase_value: tuple[float, ...] = ()


def read_recipe(transform: object) -> Recipe | None:
    """The :class:`Recipe` of ``transform`` when it is exactly the kit's train pipeline, else ``None``.

    Accepted: ``Compose([Resize, (Pad(p) constant 0, RandomCrop(size)), ToImage, ToDtype(float32, scale),
    Normalize, (RandomErasing with a fixed value), ToPureTensor])``, the steps in brackets optional.
    """
    steps = list(getattr(transform, "transforms", ())) if isinstance(transform, v2.Compose) else []
    if not steps or not isinstance(steps[0], v2.Resize) or len(steps[0].size or ()) != 2:
        return None
    size = (int(steps[0].size[0]), int(steps[0].size[1]))
    rest = steps[1:]
    pad = 0
    if rest and isinstance(rest[0], v2.Pad):
        if len(rest) < 2 or not _plain_pad_and_crop(rest[0], rest[1], size):
            return None
        padding = rest[0].padding
        pad = int(padding[0] if isinstance(padding, (list, tuple)) else padding)
        rest = rest[2:]
    if len(rest) < 4 or not isinstance(rest[0], v2.ToImage) or not isinstance(rest[1], v2.ToDtype):
        return None
    if rest[1].dtype != torch.float32 or not rest[1].scale or not isinstance(rest[2], v2.Normalize):
        return None
    normalize = rest[2]
    if normalize.inplace:
        return None
    mean, std = tuple(float(v) for v in normalize.mean), tuple(float(v) for v in normalize.std)
    rest = rest[3:]
    erase: dict = {"erase_p": 0.0}
    if rest and isinstance(rest[0], v2.RandomErasing):
        erasing = rest[0]
        if erasing.value is None or len(erasing.value) not in (1, 3) or erasing.inplace:
            return None
        value = tuple(float(v) for v in erasing.value)
        erase = {"erase_p": float(erasing.p), "erase_scale": tuple(float(v) for v in erasing.scale),
                 "erase_ratio": tuple(float(v) for v in erasing.ratio), "erase_value": value * (3 // len(value))}
        rest = rest[1:]
    if len(rest) != 1 or not isinstance(rest[0], v2.ToPureTensor) or len(mean) != 3 or len(std) != 3:
        return None
    return Recipe(size=size, pad=pad, mean=mean, std=std, **erase)


def _plain_pad_and_crop(pad: v2.Pad, crop: v2.RandomCrop, size: tuple[int, int]) -> bool:
    """A constant zero pad by the same margin on every side, then a crop back to ``size``."""
    padding = pad.padding if isinstance(pad.padding, (list, tuple)) else [pad.padding]
    fill = pad.fill if not isinstance(pad.fill, dict) else None
    return (
        isinstance(crop, v2.RandomCrop)
        and pad.padding_mode == "constant" and fill in (0, 0.0, None) and pad.fill is not None
        and len({int(p) for p in padding}) == 1 and len(padding) in (1, 2, 4)
        and tuple(int(s) for s in crop.size) == size and crop.padding is None and not crop.pad_if_needed
    )


class InMemoryBatches:
    """Every training image decoded once into a padded uint8 tensor; batches built from it.

    Built by :meth:`for_dataset` from a :class:`TrainPairsDataset` whose images are cached
    and whose transform is the kit's recipe. :meth:`batch` takes the items' indices and
    their seeds (what :class:`~tireid_lite.train.build.SeededItems` seeds the global
    generator with in the per-item path) and returns the collated batch.
    """

    def __init__(self, train_set: Dataset, recipe: Recipe) -> None:
        self.train_set = train_set
        self.recipe = recipe
        height, width = recipe.size
        pad = recipe.pad
        paths = sorted({pair.path for pair in train_set.pairs})
        slot = {path: i for i, path in enumerate(paths)}
        self.slots = [slot[pair.path] for pair in train_set.pairs]  # (N,): each pair's image in the store
        store = torch.zeros(len(paths), 3, height + 2 * pad, width + 2 * pad, dtype=torch.uint8)  # (S, 3, Hp, Wp)
        parts = None
        if train_set.part_maps is not None:
            parts = torch.zeros(len(paths), height + 2 * pad, width + 2 * pad, dtype=torch.uint8)  # (S, Hp, Wp)
        for i, path in enumerate(paths):
            image = train_set._image(path)
            pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)  # (3, H, W)
            store[i, :, pad:pad + height, pad:pad + width] = pixels
            if parts is not None:
                part_map = train_set._part_map(path, image)  # (H, W) uint8
                parts[i, pad:pad + height, pad:pad + width] = torch.from_numpy(np.ascontiguousarray(part_map))
        self.store = store
        self.parts = parts
        pairs = train_set.pairs
        self.pids = torch.tensor([pair.pid for pair in pairs], dtype=torch.long)  # (N,)
        self.image_ids = torch.tensor([pair.image_id for pair in pairs], dtype=torch.long)  # (N,)
        self.pair_index = torch.tensor([pair.index for pair in pairs], dtype=torch.long)  # (N,)
        self.mean = torch.as_tensor(recipe.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.as_tensor(recipe.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.erase_value = torch.tensor(recipe.erase_value or (0.0, 0.0, 0.0), dtype=torch.float32)  # (3,)
        self._log_ratio = torch.log(torch.tensor(recipe.erase_ratio))  # float32, as torchvision keeps it
        captions = [pair.caption for pair in train_set.pairs]
        mirrored = [mirror_caption(caption) for caption in captions]
        self.caption_ids = train_set.tokenizer(captions)  # (N, L): every caption tokenised once
        self.mirrored_ids = self.caption_ids.clone()  # (N, L): and its mirrored version
        sided = [i for i, (caption, flipped) in enumerate(zip(captions, mirrored)) if caption != flipped]
        if sided:  # only captions that name a side change when mirrored
            self.mirrored_ids[sided] = train_set.tokenizer([mirrored[i] for i in sided])
        self.mirrored = mirrored
        train_set._image_cache.clear()  # the store holds the pixels now; the per-item path re-reads if used
        if train_set._part_cache is not None:
            train_set._part_cache.clear()

    @classmethod
    def for_dataset(cls, train_set: Dataset) -> InMemoryBatches | None:
        """The batched loader of ``train_set``, or ``None`` when the per-item path must be kept: images
        not cached, a transform other than the kit's recipe, or an image not of the recipe's size."""
        if train_set._image_cache is None:
            return None
        recipe = read_recipe(train_set.transform)
        if recipe is None:
            return None
        height, width = recipe.size
        for path in {pair.path for pair in train_set.pairs}:
            image = train_set._image(path)
            if (image.height, image.width) != (height, width) or image.mode != "RGB":
                return None
        return cls(train_set, recipe)

    def _draw(self, seed: int, generator: torch.Generator) -> tuple[int, int, int, tuple | None]:
        """One item's torch draws, in the per-item path's order: numpy seed, crop (top, left), erasing."""
        generator.manual_seed(seed)
        numpy_seed = int(torch.randint(0, NUMPY_SEED_HIGH, (1,), generator=generator).item())
        recipe = self.recipe
        top = left = 0
        if recipe.pad > 0:  # torchvision draws top, then left; one call of two draws takes the same two
            top, left = torch.randint(0, 2 * recipe.pad + 1, (2,), generator=generator).tolist()
        erase = None
        if recipe.erase_p > 0 and not torch.rand(1, generator=generator) >= recipe.erase_p:
            erase = self._erase_box(generator)
        return numpy_seed, top, left, erase

    def _erase_box(self, generator: torch.Generator) -> tuple[int, int, int, int] | None:
        """torchvision's RandomErasing rectangle (i, j, h, w), drawn with ``generator``; None: whole image
        (torchvision then leaves the image as it is)."""
        img_h, img_w = self.recipe.size
        area = img_h * img_w
        low, high = self.recipe.erase_scale
        for _ in range(10):
            erase_area = area * torch.empty(1).uniform_(low, high, generator=generator).item()
            log_ratio = torch.empty(1).uniform_(float(self._log_ratio[0]), float(self._log_ratio[1]),
                                                generator=generator)
            aspect_ratio = torch.exp(log_ratio).item()
            h = round(math.sqrt(erase_area * aspect_ratio))
            w = round(math.sqrt(erase_area / aspect_ratio))
            if not (h < img_h and w < img_w):
                continue
            i = int(torch.randint(0, img_h - h + 1, size=(1,), generator=generator).item())
            j = int(torch.randint(0, img_w - w + 1, size=(1,), generator=generator).item())
            return i, j, h, w
        return None

    def batch(self, indices: Sequence[int], seeds: Sequence[int]) -> dict[str, torch.Tensor]:
        """The collated batch of training items ``indices``, item ``k`` drawn from ``seeds[k]``.

        Runs on one thread: its operations are small, and a second thread gains little on a quiet
        machine but loses much on a busy one (as in a DataLoader worker, which torch also keeps
        to one thread)."""
        with _one_thread():
            return self._batch(indices, seeds)

    def _batch(self, indices: Sequence[int], seeds: Sequence[int]) -> dict[str, torch.Tensor]:
        ds = self.train_set
        count = len(indices)
        generator = torch.Generator()
        numpy_seeds = np.empty(count, dtype=np.int64)  # (B,)
        tops, lefts, boxes = [0] * count, [0] * count, [None] * count
        for k, seed in enumerate(seeds):
            numpy_seeds[k], tops[k], lefts[k], boxes[k] = self._draw(int(seed), generator)
        rngs = numpy_generators(numpy_seeds)  # each item's numpy generator, as default_rng(seed) makes it
        flips = [rng.random() < ds.flip_p for rng in rngs]
        index_t = torch.as_tensor(np.asarray(indices, dtype=np.int64))  # (B,)
        pixels, part_map = self._crops(index_t.tolist(), tops, lefts, flips)
        images = pixels.to(torch.float32).mul_(1.0 / 255).sub_(self.mean).div_(self.std)  # (B, 3, H, W)
        if any(box is not None for box in boxes):
            images = self._erase(images, boxes)
        flip_t = torch.as_tensor(flips)  # (B,)
        caption_ids = torch.where(flip_t[:, None], self.mirrored_ids[index_t], self.caption_ids[index_t])  # (B, L)
        batch = {
            "images": images,  # (B, 3, H, W)
            "caption_ids": caption_ids,
            "pids": self.pids[index_t],  # (B,)
            "image_ids": self.image_ids[index_t],
            "index": self.pair_index[index_t],
            "noisy": torch.as_tensor(ds.noisy[index_t.numpy()].astype(bool)),  # (B,)
        }
        if part_map is not None:
            batch["part_map"] = part_map.long()  # (B, H, W)
        if ds.caption_hook is not None:
            captions = [self.mirrored[i] if flip else ds.pairs[i].caption for i, flip in zip(index_t.tolist(), flips)]
            batch.update(self._hook_outputs(captions, caption_ids, rngs, set(batch)))
        return batch

    def _crops(self, indices: list[int], tops: list[int], lefts: list[int], flips: list[bool]):
        """Each item's crop of its padded image (and part map), mirrored where flipped: (B, 3, H, W) uint8
        and (B, H, W) uint8 or None.

        A crop at ``left`` of the mirrored padded image is the mirror of the crop at ``Wp - W - left``
        of the padded image, so every item is one slice of the store, mirrored if flipped, and the
        batch one stack (cheaper here than a gather over every pixel)."""
        height, width = self.recipe.size
        free = self.store.shape[-1] - width  # Wp - W: the last left offset
        where = [(self.slots[index], top, free - left if flip else left, flip)
                 for index, top, left, flip in zip(indices, tops, lefts, flips)]
        crops = [(self.store[slot, :, top:top + height, left:left + width], flip) for slot, top, left, flip in where]
        pixels = torch.stack([crop.flip(-1) if flip else crop for crop, flip in crops])  # (B, 3, H, W)
        parts = None
        if self.parts is not None:
            crops = [(self.parts[slot, top:top + height, left:left + width], flip) for slot, top, left, flip in where]
            parts = torch.stack([crop.flip(-1) if flip else crop for crop, flip in crops])  # (B, H, W)
        return pixels, parts

    def _erase(self, images: torch.Tensor, boxes: list) -> torch.Tensor:
        """Fill each item's erasing rectangle with the erasing value, as one masked write."""
        height, width = self.recipe.size
        box = torch.tensor([b if b is not None else (0, 0, 0, 0) for b in boxes])  # (B, 4): i, j, h, w
        r = torch.arange(height)[None, :]
        c = torch.arange(width)[None, :]
        in_rows = (r >= box[:, :1]) & (r < box[:, :1] + box[:, 2:3])  # (B, H)
        in_cols = (c >= box[:, 1:2]) & (c < box[:, 1:2] + box[:, 3:4])  # (B, W)
        inside = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # (B, 1, H, W)
        return torch.where(inside, self.erase_value.view(1, 3, 1, 1), images)

    def _hook_outputs(self, captions: list[str], caption_ids: torch.Tensor, rngs: list, taken: set[str]):
        """The caption hook called per item with its own generator (as in the per-item path), stacked."""
        from tireid_lite.errors import ConfigError

        hook = self.train_set.caption_hook
        mask_batch = getattr(hook, "mask_batch", None)
        if mask_batch is not None:
            stacked = mask_batch(captions, caption_ids, rngs)
        else:
            outputs = [hook(c, ids, rng) for c, ids, rng in zip(captions, caption_ids, rngs)]
            stacked = {key: torch.stack([out[key] for out in outputs]) for key in outputs[0]}
        clash = sorted(set(stacked) & taken)
        if clash:
            raise ConfigError(
                f"caption_hook returned {', '.join(clash)}, which the dataset already provides; rename them"
            )
        return stacked


@contextlib.contextmanager
def _one_thread():
    """Torch's intra-op threads set to one inside the block, restored afterwards."""
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads > 1:
            torch.set_num_threads(threads)
