"""Fetch or check the local CLIP checkpoint that the ``gpu`` profile starts from.

    python data_setup/get_clip.py --out DIR     # download (needs internet)
    python data_setup/get_clip.py --check DIR   # check a directory, print what it holds

The download takes from the Hugging Face Hub only what the kit reads: the
config, one weights file (``model.safetensors`` when the repository has one,
else ``pytorch_model.bin``) and the tokenizer files. It is written to a
temporary directory beside DIR and renamed to DIR once complete, so DIR is
never half-written; a DIR that already holds a complete checkpoint is kept.
On a machine without internet, run the download elsewhere and copy DIR over.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from tireid_lite.errors import TIReIDError
from tireid_lite.models.clip_weights import TOKENIZER_FILES, WEIGHT_FILES, check_clip_dir, load_clip_config

DEFAULT_MODEL = "openai/clip-vit-base-patch16"
DEFAULT_OUT = Path("data") / "clip-vit-base-patch16"
# Tokenizer and image-processor files also taken when the repository has them.
OPTIONAL_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "preprocessor_config.json")


def describe_clip_dir(path: str | Path) -> list[str]:
    """Lines saying what a complete checkpoint directory holds (checked first)."""
    root = check_clip_dir(path)
    config = load_clip_config(root)  # transformers fills in what config.json leaves at its defaults
    vision, text = config.vision_config, config.text_config
    weights = next(root / name for name in WEIGHT_FILES if (root / name).is_file())
    processor_files = [name for name in sorted(os.listdir(root)) if name in TOKENIZER_FILES + OPTIONAL_FILES]
    return [
        f"CLIP checkpoint: {root}",
        f"  weights: {weights.name} ({weights.stat().st_size / 2**20:.1f} MiB)",
        f"  vision: {vision.hidden_size} wide, {vision.num_hidden_layers} layers, {vision.num_attention_heads} heads, "
        f"patch {vision.patch_size}, trained at {vision.image_size}x{vision.image_size}",
        f"  text: {text.hidden_size} wide, {text.num_hidden_layers} layers, {text.num_attention_heads} heads, "
        f"{text.vocab_size} tokens, {text.max_position_embeddings} positions",
        f"  projection: {config.projection_dim}",
        f"  tokenizer and processor files: {', '.join(processor_files)}",
    ]


def download_clip(model: str, out: Path) -> Path:
    """Download ``model`` from the Hub into ``out`` (atomically); return ``out``."""
    if out.exists() and not out.is_dir():
        raise TIReIDError(f"--out {out} is a file; give a directory to download into")
    if out.exists() and any(out.iterdir()):
        try:
            return check_clip_dir(out)
        except TIReIDError as err:
            raise TIReIDError(
                f"{out} exists but is not a complete CLIP checkpoint ({err}); remove it or pick another --out"
            ) from None
    try:
        from huggingface_hub import HfApi, snapshot_download
        from huggingface_hub.errors import RepositoryNotFoundError
    except ImportError as err:
        raise TIReIDError(
            f"downloading needs huggingface_hub ({err}); install it with `pip install huggingface_hub`"
        ) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    print(f"downloading {model} from the Hugging Face Hub into {out} ...", file=sys.stderr)
    try:
        files = set(HfApi().list_repo_files(model))
        weights = next((name for name in WEIGHT_FILES if name in files), None)
        if weights is None:
            raise TIReIDError(f"{model} on the Hub has no {' or '.join(WEIGHT_FILES)}; pick a transformers CLIP model")
        wanted = ["config.json", weights, *TOKENIZER_FILES, *(name for name in OPTIONAL_FILES if name in files)]
        snapshot_download(repo_id=model, local_dir=partial, allow_patterns=wanted)
        check_clip_dir(partial)
        shutil.rmtree(partial / ".cache", ignore_errors=True)  # the Hub client's download bookkeeping
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(partial, out)
    except RepositoryNotFoundError:
        raise TIReIDError(f"the Hub has no model '{model}'; check the --model name (e.g. {DEFAULT_MODEL})") from None
    except TIReIDError:
        raise
    except Exception as err:  # the Hub client's network errors change type across its versions
        raise TIReIDError(
            f"could not download {model} from the Hugging Face Hub ({type(err).__name__}: {err}); "
            "without internet, run this script with --out DIR on a machine that has it, copy DIR here "
            "and check it with --check DIR"
        ) from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="get_clip.py", description="Fetch or check the local CLIP checkpoint for the gpu profile."
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--out", type=Path, metavar="DIR", help=f"download into this directory (default: {DEFAULT_OUT})"
    )
    action.add_argument(
        "--check", type=Path, metavar="DIR", help="check a checkpoint directory and print what it holds"
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"Hub model to download (default: {DEFAULT_MODEL})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.check is not None:
            print("\n".join(describe_clip_dir(args.check)))
            return 0
        out = download_clip(args.model, args.out if args.out is not None else DEFAULT_OUT)
        print("\n".join(describe_clip_dir(out)))
        return 0
    except TIReIDError as err:
        print(f"get_clip.py: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
