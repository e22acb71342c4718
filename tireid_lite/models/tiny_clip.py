"""A tiny CLIP checkpoint written the way ``CLIPModel.save_pretrained`` writes OpenAI's, for the gpu path on CPU.

The gpu profile loads CLIP ViT-B/16 from a local folder (config, weights,
``vocab.json`` and ``merges.txt``). :func:`write_tiny_clip` writes a folder of
exactly that layout with tiny random widths, so that tests and the cpu run of
notebook ``09_gpu_training`` go through the same code as a GPU run: the CLIP
tokenizer, the mapping of the checkpoint's vision tensors into the timm tower
(position embeddings resized to 384x128), the text tower, bf16 autocast and a
recipe file. Its BPE vocabulary holds every printable ASCII character (alone
and word-final) plus a few merges, so any English caption tokenizes; nothing
it learns means anything.

    write_tiny_clip("/tmp/clip-tiny")   # then --set model.pretrained_dir=/tmp/clip-tiny
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import torch

from tireid_lite.errors import ConfigError

# Merges that always apply (the last one's token becomes IRRA's <|mask|>, see CLIPBPETokenizer).
MERGES = (("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("i", "n"), ("q", "z"))
TINY_CLIP_SIZES = {"vision_width": 32, "vision_layers": 2, "vision_heads": 2, "patch_size": 16, "image_size": 32,
                   "text_width": 32, "text_layers": 2, "text_heads": 2, "positions": 77, "projection_dim": 32}


def tiny_clip_vocab() -> dict[str, int]:
    """The BPE vocabulary: printable ASCII characters, each alone and with ``</w>``, the merges, the specials."""
    chars = [chr(c) for c in range(33, 127)]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    for a, b in MERGES:
        vocab[a + b] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


def write_tiny_clip(out: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a tiny random CLIP checkpoint (``save_pretrained`` layout) with its tokenizer files to ``out``.

    ``out`` must be absent or an empty folder; the files are written beside it and
    renamed into place. The same ``seed`` gives the same weights."""
    from transformers import CLIPConfig, CLIPModel

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} already exists and is not an empty folder; give write_tiny_clip a new folder")
    vocab = tiny_clip_vocab()
    s = TINY_CLIP_SIZES
    config = CLIPConfig(
        vision_config={"hidden_size": s["vision_width"], "intermediate_size": 4 * s["vision_width"],
                       "num_hidden_layers": s["vision_layers"], "num_attention_heads": s["vision_heads"],
                       "image_size": s["image_size"], "patch_size": s["patch_size"],
                       "projection_dim": s["projection_dim"]},
        text_config={"vocab_size": len(vocab), "hidden_size": s["text_width"], "intermediate_size": 4 * s["text_width"],
                     "num_hidden_layers": s["text_layers"], "num_attention_heads": s["text_heads"],
                     "max_position_embeddings": s["positions"], "bos_token_id": vocab["<|startoftext|>"],
                     "eos_token_id": vocab["<|endoftext|>"], "pad_token_id": vocab["<|endoftext|>"],
                     "projection_dim": s["projection_dim"]},
        projection_dim=s["projection_dim"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config).eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.{uuid.uuid4().hex}.partial"
    try:
        model.save_pretrained(staging)
        (staging / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (staging / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in MERGES) + "\n",
                                            encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
