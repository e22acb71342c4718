"""Image transforms (IRRA's recipe) and the caption mirror that keeps flipped pairs true.

Taught in ``01_data`` (what the model sees, and why flips mirror captions).

Train: resize to ``(H, W)``, pad 10 pixels and crop back to ``(H, W)`` at random,
to-tensor, normalise with CLIP's mean/std, random erasing (p 0.5, 2-40% of the area).
Test: resize, to-tensor, normalise. Like IRRA, random erasing fills with the raw CLIP mean
values *after* normalisation (a light grey, not the mean colour).

Horizontal flips: flipping an image moves a bag "on the left shoulder" to the right
shoulder, so a flipped image no longer matches its caption word for word. IRRA flips the
image only; the kit flips the pair: :class:`~tireid_lite.data.torch_data.TrainPairsDataset`
decides the flip per item, flips the image and rewrites the caption with
:func:`mirror_caption`, which swaps left/right (and lefthand/righthand, leftmost/rightmost,
...) while keeping the case. That is why :func:`build_transforms` leaves the flip out by
default; ``flip=True`` adds an image-only flip for pipelines without captions. The swap
is lexical: a rare "left" meaning "went away" is swapped as well.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import torch
from torchvision.transforms import v2

from tireid_lite.errors import ConfigError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_SIDE_WORD = re.compile(r"\b(left|right)(hand|handed|most|ward|wards|side|sided)?\b", re.IGNORECASE)
_SWAP = {"left": "right", "right": "left"}


def _same_case(word: str, like: str) -> str:
    """``word`` written in the case pattern of ``like`` (UPPER, Title or lower)."""
    if like.isupper():
        return word.upper()
    if like[0].isupper():
        return word.capitalize()
    return word.lower()


def mirror_caption(text: str) -> str:
    """The caption of the horizontally flipped image: left and right swapped, case kept.

    >>> mirror_caption("A bag on her Left shoulder, phone in the right-hand pocket")
    'A bag on her Right shoulder, phone in the left-hand pocket'
    """

    def swap(match: re.Match[str]) -> str:
        side, suffix = match.group(1), match.group(2) or ""
        return _same_case(_SWAP[side.lower()], side) + suffix

    return _SIDE_WORD.sub(swap, text)


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"image size {size!r} is not (height, width); use e.g. (384, 128)") from err
    if height <= 0 or width <= 0 or (height, width) != tuple(size):
        raise ConfigError(f"image size {size!r} must be two positive integers (height, width), e.g. (384, 128)")
    return height, width


def build_transforms(
    size: Sequence[int] = (384, 128),
    train: bool = True,
    flip: bool = False,
    *,
    pad: int = 10,
    erase_p: float = 0.5,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> Callable[..., torch.Tensor]:
    """PIL image -> normalised ``(3, H, W)`` float tensor, IRRA's train or test recipe.

    ``flip`` adds an image-only horizontal flip (p 0.5) to the train recipe; leave it off
    when the images go through :class:`TrainPairsDataset`, which flips image and caption
    together. ``pad=0`` drops the pad-and-crop step, ``erase_p=0`` the random erasing.
    """
    height, width = _check_size(size)
    if pad < 0:
        raise ConfigError(f"pad={pad!r} is negative; use 0 to turn the pad-and-crop step off")
    if not 0.0 <= erase_p <= 1.0:
        raise ConfigError(f"erase_p={erase_p!r} is not a probability in [0, 1]")
    resize = v2.Resize((height, width), antialias=True)
    to_float = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    if not train:
        compose = v2.Compose([resize, *to_float, v2.ToPureTensor()])
        # deterministic: the same file gives the same tensor, so datasets may share the result
        compose.shared_cache_key = f"test-recipe:{size[0]}x{size[1]}"
        return compose
    steps: list[Callable] = [resize]
    if flip:
        steps.append(v2.RandomHorizontalFlip(0.5))
    if pad > 0:
        steps += [v2.Pad(pad), v2.RandomCrop((height, width))]
    steps += to_float
    if erase_p > 0:
        steps.append(v2.RandomErasing(p=erase_p, scale=(0.02, 0.4), value=list(mean)))
    steps.append(v2.ToPureTensor())
    return v2.Compose(steps)


def has_horizontal_flip(transform: Callable) -> bool:
    """True when ``transform`` (or a ``Compose`` inside it) contains a random horizontal flip."""
    from torchvision import transforms as v1

    if isinstance(transform, (v2.RandomHorizontalFlip, v1.RandomHorizontalFlip)):
        return True
    inner = getattr(transform, "transforms", None)
    return isinstance(inner, (list, tuple)) and any(has_horizontal_flip(t) for t in inner)


def denormalize(
    images: torch.Tensor,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> torch.Tensor:
    """Undo the normalisation for plotting: ``(3, H, W)`` or ``(B, 3, H, W)`` in [0, 1]."""
    if images.ndim not in (3, 4) or images.shape[-3] != 3:
        raise ValueError(f"expected images of shape (3, H, W) or (B, 3, H, W), got {tuple(images.shape)}")
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return (images * std_t + mean_t).clamp(0.0, 1.0)
