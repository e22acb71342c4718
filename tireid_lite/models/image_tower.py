"""The image tower: a timm Vision Transformer at the pedestrian's native 3:1 input.

IRRA (and every method built on it) encodes a pedestrian with CLIP's ViT-B/16
at 384x128 pixels: stride 16 gives a 24x8 grid of patches, and every token
leaves the tower through CLIP's final LayerNorm and output projection, so the
class token is the global image feature and the patch tokens are the local
ones. The ``cpu`` profile keeps the same architecture at toy size (96x32
pixels, patch 8, width 128, 4 layers) and trains it from scratch; the ``gpu``
profile loads CLIP's weights (see :mod:`tireid_lite.models.clip_weights`).

The layout is CLIP's in timm's terms: a bias-free patch embedding, a LayerNorm
on the embedded tokens before the first block (``norm_pre``, CLIP's
``ln_pre``), pre-norm blocks with QuickGELU, LayerNorm eps 1e-5, the final
LayerNorm on every token (CLIP's ``ln_post``) and a bias-free projection.

The tower runs timm's blocks itself so that it can also return each layer's
softmax attention map (timm's fused attention does not expose it); masked
image modelling replaces chosen patch embeddings by a learned mask token
before the position embedding is added (as in BEiT and SimMIM).

Taught in notebook 02 (baseline); the attention maps are used in the KPDM
notebooks (03-05) and the mask token in notebook 06 (BiLMa).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block, VisionTransformer
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from tireid_lite.errors import ConfigError

# The cpu profile's tiny tower; a pretrained tower takes these from its checkpoint.
TINY_IMAGE_ARCH = {"patch_size": 8, "width": 128, "depth": 4, "heads": 4, "out_dim": 128}


@dataclass
class TowerOutput:
    """What a tower returns.

    ``tokens``: (B, T, out_dim), every token after the final norm and the output
    projection (image: the class token first, then the patches row by row).
    ``attentions``: when asked for, one (B, heads, T, T) softmax map per layer,
    rows are queries and columns keys; otherwise ``None``.
    """

    tokens: Tensor
    attentions: list[Tensor] | None = None


class ImageTower(nn.Module):
    """CLIP-style ViT over (B, 3, H, W) images returning all projected tokens.

    Build it with :func:`build_image_tower`. Attributes: ``img_size`` (H, W),
    ``grid_size`` (rows, cols), ``num_patches``, ``patch_size``, ``width``,
    ``depth``, ``num_heads``, ``out_dim`` and ``mask_token`` (a (1, 1, width)
    parameter, or ``None`` when built without one).
    """

    def __init__(
        self,
        *,
        img_size: tuple[int, int],
        patch_size: int,
        width: int,
        depth: int,
        heads: int,
        out_dim: int,
        mlp_ratio: float = 4.0,
        act_layer: str = "quick_gelu",
        norm_eps: float = 1e-5,
        mask_token: bool = False,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.vit = VisionTransformer(
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=width,
            depth=depth,
            num_heads=heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=True,
            pre_norm=True,  # CLIP's ln_pre; also makes the patch embedding bias-free
            final_norm=True,  # CLIP's ln_post, applied here to every token
            global_pool="token",
            num_classes=0,
            norm_layer=partial(nn.LayerNorm, eps=norm_eps),
            act_layer=act_layer,
            drop_path_rate=drop_path,
        )
        self.proj = nn.Linear(width, out_dim, bias=False)
        nn.init.normal_(self.proj.weight, std=width**-0.5)  # CLIP's init of its projection
        if mask_token:
            self.mask_token: nn.Parameter | None = nn.Parameter(torch.zeros(1, 1, width))
            trunc_normal_(self.mask_token, std=0.02)
        else:
            self.mask_token = None
        self.img_size = (int(img_size[0]), int(img_size[1]))
        self.grid_size = tuple(int(n) for n in self.vit.patch_embed.grid_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.patch_size = int(patch_size)
        self.width = int(width)
        self.depth = int(depth)
        self.num_heads = int(heads)
        self.out_dim = int(out_dim)
        self.grad_checkpointing = False  # recompute each block in the backward pass (model.grad_checkpointing)

    def forward(
        self,
        images: Tensor,
        patch_mask: Tensor | None = None,
        return_attention: bool = False,
    ) -> TowerOutput:
        """Encode ``images`` (B, 3, H, W) into ``TowerOutput.tokens`` (B, 1+N, out_dim).

        ``patch_mask`` (B, N) bool replaces the ``True`` patches by the mask token
        (the tower must be built with ``mask_token=True``). With
        ``return_attention=True`` each layer's (B, heads, 1+N, 1+N) attention
        map comes back too; the tokens are the same either way.
        """
        self._check_images(images)
        x = self.vit.patch_embed(images)  # (B, N, W)
        if patch_mask is not None:
            x = self._replace_masked(x, patch_mask)
        cls = self.vit.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, W)
        x = torch.cat([cls.to(x.dtype), x], dim=1) + self.vit.pos_embed  # (B, 1+N, W)
        x = self.vit.pos_drop(x)
        x = self.vit.norm_pre(x)
        attentions: list[Tensor] | None = [] if return_attention else None
        recompute = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.vit.blocks:
            if attentions is None:
                x = checkpoint(block, x, use_reentrant=False) if recompute else block(x)
            else:
                if recompute:
                    x, weights = checkpoint(block_with_attention, block, x, use_reentrant=False)
                else:
                    x, weights = block_with_attention(block, x)
                attentions.append(weights)
        x = self.vit.norm(x)
        tokens = self.proj(x)  # (B, 1+N, out_dim)
        return TowerOutput(tokens=tokens, attentions=attentions)

    def _check_images(self, images: Tensor) -> None:
        expected = (3, *self.img_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"the image tower takes images of shape (B, {expected[0]}, {expected[1]}, {expected[2]}), "
                f"got {tuple(images.shape)}; resize the images to {self.img_size[0]}x{self.img_size[1]} "
                "or build the tower with that img_size"
            )

    def _replace_masked(self, x: Tensor, patch_mask: Tensor) -> Tensor:
        if self.mask_token is None:
            raise ValueError(
                "patch_mask was given but the image tower has no mask token; build it with mask_token=True"
            )
        if patch_mask.dtype != torch.bool or tuple(patch_mask.shape) != tuple(x.shape[:2]):
            raise ValueError(
                f"patch_mask must be a bool tensor of shape (B, num_patches) = {tuple(x.shape[:2])}, "
                f"got {patch_mask.dtype} {tuple(patch_mask.shape)}"
            )
        keep = ~patch_mask.unsqueeze(-1)  # (B, N, 1)
        return torch.where(keep, x, self.mask_token.to(x.dtype))  # (B, N, W)


def block_with_attention(block: Block, x: Tensor) -> tuple[Tensor, Tensor]:
    """Run one timm ``Block`` on ``x`` (B, T, W) and also return its attention map.

    The computation is the block's own (same weights, same order of
    operations), written out so the softmax weights (B, heads, T, T) can be
    kept. Dropout on the attention weights, if any, applies to the values
    only: the returned map is the softmax itself.
    """
    attn = block.attn
    batch, num_tokens, _ = x.shape
    y = block.norm1(x)
    qkv = attn.qkv(y).reshape(batch, num_tokens, 3, attn.num_heads, attn.head_dim)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, T, head_dim)
    q, k = attn.q_norm(q), attn.k_norm(k)
    weights = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, heads, T, T)
    y = attn.attn_drop(weights) @ v  # (B, heads, T, head_dim)
    y = y.transpose(1, 2).reshape(batch, num_tokens, attn.attn_dim)  # (B, T, W)
    y = attn.proj_drop(attn.proj(attn.norm(y)))
    x = x + block.drop_path1(block.ls1(y))
    x = x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))
    return x, weights


def build_image_tower(
    *,
    img_size: tuple[int, int] = (96, 32),
    patch_size: int | None = None,
    width: int | None = None,
    depth: int | None = None,
    heads: int | None = None,
    out_dim: int | None = None,
    pretrained_dir: str | Path | None = None,
    mask_token: bool = False,
    drop_path: float = 0.0,
) -> ImageTower:
    """Build the image tower, tiny from scratch or from a local CLIP checkpoint.

    From scratch, unset sizes take the cpu profile's values (patch 8, width
    128, depth 4, heads 4, out_dim 128). With ``pretrained_dir`` (a directory
    written by ``data_setup/get_clip.py``) the sizes come from the checkpoint:
    leave them unset or give the checkpoint's values; the position embeddings
    are resized to ``img_size``'s patch grid. The mask token, when asked for,
    is new and stays randomly initialised. Taught in notebook 02 (baseline).
    """
    given = {"patch_size": patch_size, "width": width, "depth": depth, "heads": heads, "out_dim": out_dim}
    extra: dict = {}
    if pretrained_dir is None:
        arch = {name: value if value is not None else TINY_IMAGE_ARCH[name] for name, value in given.items()}
    else:
        from tireid_lite.models.clip_weights import clip_vision_arch

        arch, extra = clip_vision_arch(pretrained_dir)
        for name, value in given.items():
            if value is not None and value != arch[name]:
                raise ConfigError(
                    f"{name}={value} disagrees with the CLIP checkpoint in {pretrained_dir} ({name}={arch[name]}); "
                    f"leave {name} unset or set it to {arch[name]}"
                )
    _check_geometry(img_size, arch)
    if not 0.0 <= drop_path < 1.0:
        raise ConfigError(f"drop_path={drop_path} is not a rate; use a value in [0, 1)")
    tower = ImageTower(img_size=tuple(img_size), mask_token=mask_token, drop_path=drop_path, **arch, **extra)
    if pretrained_dir is not None:
        from tireid_lite.models.clip_weights import load_clip_vision_into_timm

        load_clip_vision_into_timm(tower, pretrained_dir)
    return tower


def _check_geometry(img_size: tuple[int, int], arch: dict) -> None:
    if not isinstance(img_size, (tuple, list)) or len(img_size) != 2 or min(img_size) <= 0:
        raise ConfigError(f"img_size={img_size} must be (height, width) in pixels, e.g. (96, 32)")
    patch = arch["patch_size"]
    if img_size[0] % patch or img_size[1] % patch:
        raise ConfigError(
            f"img_size={tuple(img_size)} is not a multiple of patch_size={patch}; "
            f"use a size divisible by {patch}, e.g. ({patch * 12}, {patch * 4})"
        )
    if arch["width"] % arch["heads"]:
        raise ConfigError(
            f"width={arch['width']} is not divisible by heads={arch['heads']}; choose heads that divide the width"
        )
