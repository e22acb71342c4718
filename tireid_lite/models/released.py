"""The authors' released checkpoints (IRRA, RDE) as kit checkpoints that ``tireid eval`` scores.

    tireid import-checkpoint --from irra best.pth runs/irra_released.pt --clip-dir /models/clip --data-root /data/CUHK-PEDES
    tireid eval --checkpoint runs/irra_released.pt

IRRA (github.com/anosorae/IRRA) and RDE (github.com/QinYang79/RDE; KPDM's
release uses RDE's model) save ``{"model": state_dict, ...}`` (``utils/checkpoint.py``)
of a model whose ``base_model`` is OpenAI's CLIP with OpenAI's names
(``model/clip_model.py``). The kit rebuilds the paper's recipe
(:mod:`tireid_lite.recipes`) around the CLIP folder given (its architecture and
tokenizer) and fills it tensor by tensor:

=========================================================  =======================================
their key                                                   the kit's
=========================================================  =======================================
``base_model.visual.conv1.weight``                          ``image_tower.vit.patch_embed.proj.weight``
``base_model.visual.class_embedding`` (D,)                  ``image_tower.vit.cls_token`` (1, 1, D)
``base_model.visual.positional_embedding`` (1+N, D)         ``image_tower.vit.pos_embed`` (1, 1+N, D)
``base_model.visual.ln_pre / ln_post``                      ``image_tower.vit.norm_pre / norm``
``base_model.visual.transformer.resblocks.{i}.``            ``image_tower.vit.blocks.{i}.``
  ``attn.in_proj_* / attn.out_proj / ln_1 / ln_2``             ``attn.qkv / attn.proj / norm1 / norm2``
  ``mlp.c_fc / mlp.c_proj``                                    ``mlp.fc1 / mlp.fc2``
``base_model.visual.proj`` (D, E)                           ``image_tower.proj.weight`` (E, D)
``base_model.token_embedding / positional_embedding``       ``text_tower.encoder.embeddings.token_embedding / position_embedding``
``base_model.transformer.resblocks.{i}.attn.in_proj_*``     ``...layers.{i}.self_attn.{q,k,v}_proj`` (split in three)
``base_model.ln_final``, ``base_model.text_projection``     ``...final_layer_norm``, ``text_tower.proj.weight`` (transposed)
``classifier``                                              ``heads.id.classifier``
``cross_attn``, ``cross_modal_transformer.resblocks.{i}``    ``heads.mlm.cross.cross_attn``, ``heads.mlm.cross.layers.{i}``
``ln_pre_t / ln_pre_i / ln_post``                           ``heads.mlm.cross.norm_query / norm_context / norm_out``
``mlm_head.dense / ln / fc``                                ``heads.mlm.predict.net.0 / 2 / 3``
``visul_emb_layer.fc / .mlp.layers.{0,1} / .mlp.bns.0``     ``heads.tal.image_tse.fc / .mlp.{0,3} / .mlp.1``
``texual_emb_layer.linear / .mlp.layers.{0,1} / .mlp.bns.0``  ``heads.tal.text_tse.fc / .mlp.{0,3} / .mlp.1``
=========================================================  =======================================

Known keys that change nothing the kit computes are dropped: CLIP's
``logit_scale`` (the recipe's temperature is used), and in RDE's TSE the second
BatchNorm (``mlp.bns.1``, never called in its forward) and the image layer's
unused ``linear``. Any other key of theirs that finds no place, and any tensor
of the kit's model left unfilled or of another shape, is one error listing them.
Retrieval uses the towers (and RDE's TSE), so it is what the authors' model
computes, up to the kit's differences: fp32 instead of fp16 weights, and, for
IRRA's MLM module (not used in retrieval), GELU where IRRA has QuickGELU.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import torch
from torch import Tensor

from tireid_lite.checkpoint import save_checkpoint
from tireid_lite.config import Config, apply_overrides, load_recipe
from tireid_lite.errors import ConfigError, TIReIDError
from tireid_lite.models.tireid import TIReIDModel, build_model
from tireid_lite.text.tokenizers import CLIPBPETokenizer, tokenizer_files

SOURCES = ("irra", "rde")
IMPORT_FORMAT = 1

_BLOCK = {"ln_1": "norm1", "ln_2": "norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
          "attn.out_proj": "attn.proj", "attn.in_proj_weight": "attn.qkv.weight", "attn.in_proj_bias": "attn.qkv.bias"}
_TEXT_BLOCK = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
               "attn.out_proj": "self_attn.out_proj"}
_DROPPED = re.compile(r"^(base_model\.logit_scale|visul_emb_layer\.linear\.\w+|(visul|texual)_emb_layer\.mlp\.bns\.1\.\w+)$")
_TSE = {"fc": "fc", "linear": "fc", "mlp.layers.0": "mlp.0", "mlp.bns.0": "mlp.1", "mlp.layers.1": "mlp.3"}


def _their_state(path: Path) -> dict[str, Tensor]:
    """The state dict in a released file: ``{"model": ...}`` or a bare state dict, ``module.`` stripped."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"checkpoint {path} does not exist") from None
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a file that is not a checkpoint
        raise TIReIDError(f"cannot read {path} as a torch checkpoint of tensors ({type(err).__name__}: "
                          f"{str(err).splitlines()[0][:200]}); give the authors' .pth file") from None
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise TIReIDError(f"{path} holds no state dict of tensors (expected {{'model': state_dict}} as IRRA and "
                          "RDE save it, or a bare state dict)")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def _map_key(key: str, source: str) -> str | None:
    """The kit's name for one of their keys, ``None`` when it has no place (see the module docstring)."""
    vision = "base_model.visual."
    if key.startswith(vision):
        rest = key[len(vision):]
        fixed = {"conv1.weight": "vit.patch_embed.proj.weight", "class_embedding": "vit.cls_token",
                 "positional_embedding": "vit.pos_embed", "proj": "proj.weight"}
        if rest in fixed:
            return "image_tower." + fixed[rest]
        if m := re.match(r"^ln_(pre|post)\.(weight|bias)$", rest):
            return f"image_tower.vit.{'norm_pre' if m[1] == 'pre' else 'norm'}.{m[2]}"
        if m := re.match(r"^transformer\.resblocks\.(\d+)\.(.+)$", rest):
            return _block_key(f"image_tower.vit.blocks.{m[1]}.", m[2])
        return None
    if key.startswith("base_model."):
        rest = key[len("base_model."):]
        text = "text_tower.encoder."
        fixed = {"token_embedding.weight": text + "embeddings.token_embedding.weight",
                 "positional_embedding": text + "embeddings.position_embedding.weight",
                 "text_projection": "text_tower.proj.weight",
                 "ln_final.weight": text + "final_layer_norm.weight", "ln_final.bias": text + "final_layer_norm.bias"}
        if rest in fixed:
            return fixed[rest]
        if m := re.match(r"^transformer\.resblocks\.(\d+)\.(.+)$", rest):
            if m[2].startswith("attn.in_proj_"):
                return f"{text}encoder.layers.{m[1]}.self_attn.{{q,k,v}}_proj.{m[2].rsplit('_', 1)[1]}"
            for theirs, ours in _TEXT_BLOCK.items():
                if m[2].startswith(theirs + "."):
                    return f"{text}encoder.layers.{m[1]}.{ours}{m[2][len(theirs):]}"
        return None
    if source == "irra":
        if key.startswith("classifier."):
            return "heads.id." + key
        if key.startswith("cross_attn."):
            return "heads.mlm.cross." + key
        if m := re.match(r"^cross_modal_transformer\.resblocks\.(\d+)\.(.+)$", key):
            return _block_key(f"heads.mlm.cross.layers.{m[1]}.", m[2])
        if m := re.match(r"^(ln_pre_t|ln_pre_i|ln_post)\.(weight|bias)$", key):
            return f"heads.mlm.cross.{ {'ln_pre_t': 'norm_query', 'ln_pre_i': 'norm_context', 'ln_post': 'norm_out'}[m[1]] }.{m[2]}"
        if m := re.match(r"^mlm_head\.(dense|ln|fc)\.(weight|bias)$", key):
            return f"heads.mlm.predict.net.{ {'dense': 0, 'ln': 2, 'fc': 3}[m[1]] }.{m[2]}"
        return None
    if m := re.match(r"^(visul|texual)_emb_layer\.(.+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$", key):
        side = "image" if m[1] == "visul" else "text"
        if m[2] in _TSE and not (side == "image" and m[2] == "linear"):
            return f"heads.tal.{side}_tse.{_TSE[m[2]]}.{m[3]}"
    return None


def _block_key(prefix: str, rest: str) -> str | None:
    for theirs, ours in _BLOCK.items():
        if rest == theirs or rest.startswith(theirs + "."):
            return prefix + ours + rest[len(theirs):]
    return None


def map_state(state: dict[str, Tensor], source: str, target: dict[str, Tensor]) -> dict[str, Tensor]:
    """Their ``state`` as the kit's state dict shaped like ``target``; one error listing every key of
    theirs without a place, every kit tensor left unfilled and every shape that disagrees."""
    if source not in SOURCES:
        raise ConfigError(f"--from {source!r}: the kit imports {', '.join(SOURCES)}")
    mapped: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if _DROPPED.match(key):
            continue
        name = _map_key(key, source)
        if name is None:
            unknown.append(key)
        elif "{q,k,v}" in name:
            for part, chunk in zip("qkv", value.chunk(3, dim=0)):
                mapped[name.replace("{q,k,v}", part)] = chunk
        elif name == "image_tower.vit.cls_token":
            mapped[name] = value.reshape(1, 1, -1)
        elif name == "image_tower.vit.pos_embed":
            mapped[name] = value.unsqueeze(0)
        elif name in ("image_tower.proj.weight", "text_tower.proj.weight"):
            mapped[name] = value.t()
        else:
            mapped[name] = value
    # the kit's own MIM token (not in CLIP) and BatchNorm's step counter (unused in eval) may be absent
    optional = {k for k in target if k.endswith(("mask_token", "num_batches_tracked"))}
    missing = sorted(k for k in target if k not in mapped and k not in optional)
    extra = sorted(k for k in mapped if k not in target)
    shapes = sorted(f"{k} {tuple(mapped[k].shape)} vs the kit's {tuple(target[k].shape)}"
                    for k in mapped if k in target and mapped[k].shape != target[k].shape)
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} of its keys have no place in the kit: {_few(unknown)}")
    if extra:
        problems.append(f"{len(extra)} keys map to tensors the {source} recipe's model lacks: {_few(extra)}")
    if missing:
        problems.append(f"{len(missing)} tensors of the kit's model are not in it: {_few(missing)}")
    if shapes:
        problems.append(f"{len(shapes)} shapes differ: {_few(shapes)}")
    if problems:
        raise TIReIDError(f"this is not a released {source.upper()} checkpoint the kit can import: " + "; ".join(problems)
                          + f"; give the authors' {source.upper()} .pth and the CLIP folder it was trained from")
    out = {k: v.to(target[k].dtype) for k, v in mapped.items()}
    for key in optional - set(out):
        out[key] = target[key]
    return out


def _few(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def import_released(source: str, path: str | os.PathLike[str], out: str | os.PathLike[str], *, clip_dir: str,
                    overrides: list[str] = ()) -> tuple[Config, TIReIDModel]:
    """Write the authors' checkpoint ``path`` as a kit checkpoint ``out`` (what ``tireid eval`` reads)."""
    out = Path(out)
    if out.exists():
        raise ConfigError(f"{out} exists; give a new file for the imported checkpoint (nothing is overwritten)")
    if source not in SOURCES:
        raise ConfigError(f"--from {source!r}: the kit imports {', '.join(SOURCES)}")
    state = _their_state(Path(path))
    cfg = apply_overrides(load_recipe(source), [f"model.pretrained_dir={clip_dir}", *overrides])
    tokenizer = CLIPBPETokenizer.from_pretrained(clip_dir, max_length=cfg.data.max_length)
    classifier = state.get("classifier.weight", state.get("module.classifier.weight"))
    num_classes = int(classifier.shape[0]) if classifier is not None else 1
    model = build_model(cfg, tokenizer, num_classes)
    model.load_state_dict(map_state(state, source, model.state_dict()))
    save_checkpoint(out, {"format": IMPORT_FORMAT, "model": model.state_dict(), "config": cfg.to_dict(),
                          "tokenizer": tokenizer_files(tokenizer), "num_classes": num_classes, "epoch": 0,
                          "imported_from": str(Path(path).resolve())})
    return cfg, model


# --------------------------------------------------------------------------- `tireid import-checkpoint`


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", choices=SOURCES, required=True,
                        help="whose checkpoint: irra (IRRA) or rde (RDE; KPDM's release uses RDE's model)")
    parser.add_argument("file", type=Path, help="the authors' released .pth")
    parser.add_argument("out", type=Path, help="the kit checkpoint to write (then `tireid eval --checkpoint OUT`)")
    parser.add_argument("--clip-dir", required=True, help="the local CLIP ViT-B/16 folder (data_setup/get_clip.py)")
    parser.add_argument("--data-root", default=None, help="data.root recorded in the checkpoint (for tireid eval)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. --set data.dataset=icfg-pedes")


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.data_root is not None:
        overrides.insert(0, f"data.root={Path(args.data_root).expanduser().resolve()}")
    cfg, model = import_released(args.source, args.file, args.out, clip_dir=args.clip_dir, overrides=overrides)
    count = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {args.source.upper()}'s weights in the kit's {cfg.model.method} model "
          f"({count / 1e6:.1f} M parameters); score it with `tireid eval --checkpoint {args.out}`")
    return 0
