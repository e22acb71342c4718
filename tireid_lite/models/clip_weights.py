"""Local CLIP checkpoints: check a directory, read its tensors, fill the towers.

The ``gpu`` profile starts from OpenAI's CLIP ViT-B/16 as the Hugging Face
``transformers`` library saves it (``CLIPModel.save_pretrained``; fetched by
``data_setup/get_clip.py``). Its vision half is mapped into the timm
Vision Transformer of :class:`~tireid_lite.models.image_tower.ImageTower`:

==============================================  ===========================
checkpoint (``vision_model.`` prefix)           image tower
==============================================  ===========================
``embeddings.class_embedding`` (D,)             ``vit.cls_token`` (1, 1, D)
``embeddings.patch_embedding.weight``           ``vit.patch_embed.proj.weight``
``embeddings.position_embedding.weight``        ``vit.pos_embed``, resized
``pre_layrnorm``                                ``vit.norm_pre``
``encoder.layers.{i}.layer_norm1 / 2``          ``vit.blocks.{i}.norm1 / 2``
``encoder.layers.{i}.self_attn.{q,k,v}_proj``   ``vit.blocks.{i}.attn.qkv`` (q, k, v stacked)
``encoder.layers.{i}.self_attn.out_proj``       ``vit.blocks.{i}.attn.proj``
``encoder.layers.{i}.mlp.fc1 / fc2``            ``vit.blocks.{i}.mlp.fc1 / fc2``
``post_layernorm``                              ``vit.norm``
``visual_projection.weight`` (no prefix)        ``proj.weight``
==============================================  ===========================

CLIP was trained on square 224x224 images (a 14x14 grid at patch 16); the
pedestrian tower sees 384x128 (24x8), so the grid of position embeddings is
resized with bicubic interpolation while the class token's embedding is kept
as it is. The text half loads into ``transformers``' own ``CLIPTextModel``
(same names, no mapping needed) plus ``text_projection``.

Loading is strict both ways: every checkpoint tensor of the half being loaded
must find a place and every tower tensor must be filled (the image tower's
mask token, which CLIP does not have, is the one exception); anything else
is one :class:`~tireid_lite.errors.TIReIDError` naming the tensors.

Taught in notebook 09 (full GPU training).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor, nn

from tireid_lite.errors import TIReIDError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("vocab.json", "merges.txt")
FETCH_HINT = "run `python data_setup/get_clip.py --out DIR` (on a machine with internet) and pass that DIR"

VISION_PREFIXES = ("vision_model.", "visual_projection.")
TEXT_PREFIXES = ("text_model.", "text_projection.")

# Image tower tensors that a CLIP checkpoint does not provide (new modules).
NEW_IMAGE_TOWER_TENSORS = frozenset({"mask_token"})

_STEM_NAMES = {
    "vision_model.embeddings.patch_embedding.weight": "vit.patch_embed.proj.weight",
    "vision_model.pre_layrnorm.weight": "vit.norm_pre.weight",
    "vision_model.pre_layrnorm.bias": "vit.norm_pre.bias",
    "vision_model.post_layernorm.weight": "vit.norm.weight",
    "vision_model.post_layernorm.bias": "vit.norm.bias",
    "visual_projection.weight": "proj.weight",
}
_CLASS_EMBEDDING = "vision_model.embeddings.class_embedding"
_POSITION_EMBEDDING = "vision_model.embeddings.position_embedding.weight"
_LAYER_NAMES = {
    "layer_norm1": "norm1",
    "layer_norm2": "norm2",
    "self_attn.out_proj": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_LAYER_KEY = re.compile(r"^vision_model\.encoder\.layers\.(\d+)\.")
_ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu": "gelu"}  # transformers name -> timm name


def check_clip_dir(path: str | Path) -> Path:
    """Return ``path`` as a ``Path`` if it holds a complete CLIP checkpoint.

    Complete means: ``config.json`` with a ``vision_config`` and a
    ``text_config``, a weights file (``model.safetensors`` or
    ``pytorch_model.bin``) and the tokenizer's ``vocab.json`` and
    ``merges.txt``. Otherwise one ``TIReIDError`` lists everything missing.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise TIReIDError(f"CLIP checkpoint directory {root} does not exist; {FETCH_HINT}")
    missing: list[str] = []
    config_file = root / "config.json"
    if not config_file.is_file():
        missing.append("config.json")
    else:
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            missing.append(f"a readable config.json ({err})")
        else:
            for key in ("vision_config", "text_config"):
                if not isinstance(config, dict) or not isinstance(config.get(key), dict):
                    missing.append(f"'{key}' in config.json")
    if not any((root / name).is_file() for name in WEIGHT_FILES):
        missing.append("a weights file (model.safetensors or pytorch_model.bin)")
    missing.extend(name for name in TOKENIZER_FILES if not (root / name).is_file())
    if missing:
        raise TIReIDError(f"{root} is not a complete CLIP checkpoint: missing {', '.join(missing)}; {FETCH_HINT}")
    return root


def load_clip_config(clip_dir: str | Path):
    """The checkpoint's ``transformers.CLIPConfig`` (after :func:`check_clip_dir`)."""
    from transformers import CLIPConfig

    root = check_clip_dir(clip_dir)
    return CLIPConfig.from_json_file(str(root / "config.json"))


def clip_vision_arch(clip_dir: str | Path) -> tuple[dict, dict]:
    """The image tower's sizes from a CLIP checkpoint's config.

    Returns ``(arch, extra)``: ``arch`` holds ``patch_size``, ``width``,
    ``depth``, ``heads`` and ``out_dim``; ``extra`` holds ``mlp_ratio``,
    ``act_layer`` (timm's name) and ``norm_eps``.
    """
    config = load_clip_config(clip_dir)
    vision = config.vision_config
    act = _ACTIVATIONS.get(vision.hidden_act)
    if act is None:
        raise TIReIDError(
            f"{clip_dir}/config.json: vision hidden_act '{vision.hidden_act}' has no timm counterpart here; "
            f"use a checkpoint with one of {sorted(_ACTIVATIONS)}"
        )
    arch = {
        "patch_size": int(vision.patch_size),
        "width": int(vision.hidden_size),
        "depth": int(vision.num_hidden_layers),
        "heads": int(vision.num_attention_heads),
        "out_dim": int(config.projection_dim),
    }
    extra = {
        "mlp_ratio": vision.intermediate_size / vision.hidden_size,
        "act_layer": act,
        "norm_eps": float(vision.layer_norm_eps),
    }
    return arch, extra


def read_clip_tensors(clip_dir: str | Path, prefixes: tuple[str, ...]) -> dict[str, Tensor]:
    """The checkpoint's tensors whose names start with one of ``prefixes``.

    ``position_ids`` index buffers, which older checkpoints saved beside the
    weights, are left out: they are not weights.
    """
    root = check_clip_dir(clip_dir)
    path = next(root / name for name in WEIGHT_FILES if (root / name).is_file())

    def wanted(key: str) -> bool:
        return key.startswith(prefixes) and not key.endswith(".position_ids")

    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as handle:
                return {key: handle.get_tensor(key) for key in handle.keys() if wanted(key)}
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the readers raise many types for a damaged file
        raise TIReIDError(f"could not read the weights file {path} ({err}); fetch the checkpoint again") from err
    return {key: value for key, value in state.items() if wanted(key)}


def resize_clip_pos_embed(pos_embed: Tensor, grid_size: tuple[int, int]) -> Tensor:
    """Resize CLIP's (1 + G*G, D) position embeddings to a (rows, cols) grid.

    Returns (1, 1 + rows*cols, D): the class token's row unchanged, then the
    G x G grid resampled bicubically (anti-aliased when shrinking) to
    rows x cols, row by row like the patches. Taught in notebook 09.
    """
    num_grid = pos_embed.shape[0] - 1
    side = math.isqrt(num_grid)
    if pos_embed.dim() != 2 or side * side != num_grid:
        raise TIReIDError(
            f"CLIP position embedding of shape {tuple(pos_embed.shape)} is not a class token plus a square grid; "
            "use a checkpoint saved by transformers' CLIPModel"
        )
    from timm.layers import resample_abs_pos_embed

    return resample_abs_pos_embed(
        pos_embed.unsqueeze(0),  # (1, 1 + G*G, D)
        new_size=[int(grid_size[0]), int(grid_size[1])],
        old_size=[side, side],
        num_prefix_tokens=1,
        interpolation="bicubic",
    )  # (1, 1 + rows*cols, D)


def clip_vision_to_tower_state(ckpt: Mapping[str, Tensor], grid_size: tuple[int, int]) -> dict[str, Tensor]:
    """Rename CLIP vision tensors into :class:`ImageTower` state-dict names.

    ``ckpt`` holds the ``vision_model.*`` and ``visual_projection.weight``
    tensors; q/k/v projections are stacked into timm's ``qkv`` and the
    position embeddings resized to ``grid_size``. A tensor this mapping does
    not know is an error.
    """
    state: dict[str, Tensor] = {}
    used: set[str] = set()

    def move(source: str, target: str, convert=lambda t: t) -> None:
        if source in ckpt:
            state[target] = convert(ckpt[source])
            used.add(source)

    for source, target in _STEM_NAMES.items():
        move(source, target)
    move(_CLASS_EMBEDDING, "vit.cls_token", lambda t: t.reshape(1, 1, -1))  # (D,) -> (1, 1, D)
    move(_POSITION_EMBEDDING, "vit.pos_embed", lambda t: resize_clip_pos_embed(t, grid_size))
    layer_ids = sorted({int(match.group(1)) for key in ckpt if (match := _LAYER_KEY.match(key))})
    for i in layer_ids:
        source, target = f"vision_model.encoder.layers.{i}.", f"vit.blocks.{i}."
        for clip_name, timm_name in _LAYER_NAMES.items():
            for param in ("weight", "bias"):
                move(f"{source}{clip_name}.{param}", f"{target}{timm_name}.{param}")
        for param in ("weight", "bias"):
            parts = [f"{source}self_attn.{name}_proj.{param}" for name in ("q", "k", "v")]
            if all(part in ckpt for part in parts):
                state[f"{target}attn.qkv.{param}"] = torch.cat([ckpt[part] for part in parts], dim=0)  # (3D, ...)
                used.update(parts)
    unknown = sorted(set(ckpt) - used)
    if unknown:
        raise TIReIDError(
            f"the CLIP checkpoint has vision tensors the image tower cannot place: {_few(unknown)}; "
            "use a checkpoint saved by transformers' CLIPModel"
        )
    return state


def load_clip_vision_into_timm(tower: nn.Module, clip_dir: str | Path) -> None:
    """Fill an :class:`ImageTower` with the vision half of a local CLIP checkpoint.

    Every vision tensor of the checkpoint is used and every tower tensor
    except the mask token is filled, with matching shapes; otherwise one
    ``TIReIDError`` names the tensors. The tower's own ``img_size`` decides
    the resized position-embedding grid. Taught in notebook 09.
    """
    ckpt = read_clip_tensors(clip_dir, VISION_PREFIXES)
    if not ckpt:
        raise TIReIDError(f"the CLIP checkpoint in {clip_dir} has no vision tensors; {FETCH_HINT}")
    state = clip_vision_to_tower_state(ckpt, tower.grid_size)
    load_exactly(tower, state, source=f"the CLIP checkpoint in {clip_dir}", skip=NEW_IMAGE_TOWER_TENSORS)


def load_clip_text_weights(text_model: nn.Module, projection: nn.Linear, clip_dir: str | Path) -> None:
    """Fill a ``transformers.CLIPTextModel`` and its projection from a local CLIP checkpoint.

    The model must be built from the checkpoint's own text config (same
    vocabulary size); every ``text_model.*`` tensor and ``text_projection``
    are used and every model tensor filled.
    """
    ckpt = read_clip_tensors(clip_dir, TEXT_PREFIXES)
    source = f"the CLIP checkpoint in {clip_dir}"
    body = {key[len("text_model."):]: value for key, value in ckpt.items() if key.startswith("text_model.")}
    head = {key[len("text_projection."):]: value for key, value in ckpt.items() if key.startswith("text_projection.")}
    load_exactly(text_model, body, source=source, prefix="text_model.")
    load_exactly(projection, head, source=source, prefix="text_projection.")


def load_exactly(
    module: nn.Module,
    state: Mapping[str, Tensor],
    *,
    source: str,
    skip: frozenset[str] = frozenset(),
    prefix: str = "",
) -> None:
    """``module.load_state_dict(state)`` after checking names and shapes both ways.

    ``skip`` names module tensors that ``state`` need not fill; ``prefix`` is
    only for messages (the checkpoint's name for ``module``).
    """
    own = {key: value for key, value in module.state_dict().items() if key not in skip}
    unfilled = sorted(set(own) - set(state))
    unplaced = sorted(set(state) - set(own))
    if unfilled or unplaced:
        parts = []
        if unfilled:
            parts.append(f"model tensors it does not have: {_few(unfilled, prefix)}")
        if unplaced:
            parts.append(f"tensors the model has no place for: {_few(unplaced, prefix)}")
        raise TIReIDError(
            f"{source} does not match the model ({'; '.join(parts)}); "
            "build the model from the same checkpoint (pretrained_dir=...)"
        )
    wrong = [
        f"{prefix}{key} {tuple(state[key].shape)} vs {tuple(own[key].shape)}"
        for key in sorted(own)
        if tuple(state[key].shape) != tuple(own[key].shape)
    ]
    if wrong:
        raise TIReIDError(
            f"{source} has tensors of the wrong shape (checkpoint vs model): {_few(wrong)}; "
            "build the model from the same checkpoint (pretrained_dir=...)"
        )
    with torch.no_grad():
        module.load_state_dict(
            {key: value.to(own[key].dtype) for key, value in state.items()}, strict=not skip
        )


def _few(names: list[str], prefix: str = "", limit: int = 4) -> str:
    shown = ", ".join(prefix + name for name in names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"
