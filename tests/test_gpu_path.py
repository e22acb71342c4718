"""The gpu path on CPU: a paper's recipe file, a CUHK-PEDES root in its native format at 384x128, and a
CLIP checkpoint written by ``save_pretrained`` (tiny widths) go through the code a GPU run uses: the
CLIP tokenizer, the weight mapping into the towers, bf16 autocast, one short training, evaluation,
a hard crash and an exact resume, then ``tireid eval`` on the best checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tireid_lite import cli
from tireid_lite.checkpoint import load_checkpoint
from tireid_lite.config import apply_overrides, load_recipe
from tireid_lite.data.fixtures import write_fixture
from tireid_lite.models.clip_weights import read_clip_tensors
from tireid_lite.models.tiny_clip import write_tiny_clip
from tireid_lite.text.tokenizers import CLIPBPETokenizer
from tireid_lite.train.trainer import CRASH_ENV, CRASH_EXIT_CODE, Trainer

STEPS_PER_EPOCH = 2  # 4 identities x 2 images x 2 captions = 16 pairs, batch 8


@pytest.fixture(scope="module", autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def gpu_inputs(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("gpu_path")
    clip = write_tiny_clip(base / "clip")
    root = write_fixture("cuhk-pedes", base / "cuhk", ids_per_split={"train": 4, "val": 2, "test": 2},
                         images_per_id=2, size=(384, 128))
    return root, clip


def _args(root: Path, clip: Path) -> list[str]:
    sets = [f"model.pretrained_dir={clip}", "train.num_epochs=2", "train.warmup_epochs=0.5", "train.batch_size=8",
            "data.num_workers=0", "train.amp=bf16", "train.log_every=1", "train.threads=2"]
    return ["--recipe", "irra", "--data-root", str(root), "--device", "cpu", *(x for s in sets for x in ("--set", s))]


def test_the_recipe_builds_the_clip_model_with_bf16(gpu_inputs, tmp_path):
    root, clip = gpu_inputs
    cfg = apply_overrides(load_recipe("irra"), [f"data.root={root}", f"model.pretrained_dir={clip}",
                                                "train.amp=bf16", "train.batch_size=8", "train.warmup_epochs=0",
                                                "data.num_workers=0"])
    trainer = Trainer(cfg, tmp_path / "run", device="cpu")
    assert isinstance(trainer.data.tokenizer, CLIPBPETokenizer)
    assert trainer.amp_dtype == torch.bfloat16
    assert tuple(trainer.data.image_size) == (384, 128)
    vision = read_clip_tensors(clip, ("vision_model.",))
    tower = trainer.raw_model.image_tower.vit
    assert torch.equal(tower.patch_embed.proj.weight, vision["vision_model.embeddings.patch_embedding.weight"])
    assert tower.pos_embed.shape[1] == 1 + 24 * 8  # CLIP's 2x2 grid resized to 384x128 at patch 16
    text = read_clip_tensors(clip, ("text_model.",))
    embeddings = dict(trainer.raw_model.text_tower.named_parameters())
    token_embedding = next(v for k, v in embeddings.items() if k.endswith("token_embedding.weight"))
    assert torch.equal(token_embedding, text["text_model.embeddings.token_embedding.weight"])
    eps = {group["eps"] for group in trainer.optimizer.param_groups}
    assert eps == {1e-3}


def test_gpu_path_trains_evaluates_and_resumes_exactly(gpu_inputs, tmp_path, capsys):
    root, clip = gpu_inputs
    ref = tmp_path / "ref"
    assert cli.main(["train", *_args(root, clip), "--out", str(ref)]) == 0
    printed = capsys.readouterr().out
    ref_metrics = json.loads(printed[printed.index("{"):])
    assert set(ref_metrics) == {"R1", "R5", "R10", "mAP", "mINP"}
    assert load_checkpoint(ref / "last.pt")["step"] == 2 * STEPS_PER_EPOCH

    crashed = tmp_path / "crashed"
    env = {**os.environ, CRASH_ENV: str(STEPS_PER_EPOCH + 1), "TIREID_PROGRESS": "0"}
    result = subprocess.run([sys.executable, "-m", "tireid_lite.cli", "train", *_args(root, clip), "--out", str(crashed)],
                            check=False, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == CRASH_EXIT_CODE, result.stderr
    assert load_checkpoint(crashed / "last.pt")["epoch"] == 1
    assert cli.main(["train", "--out", str(crashed), "--resume", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{"):]) == ref_metrics
    resumed, uninterrupted = load_checkpoint(crashed / "last.pt"), load_checkpoint(ref / "last.pt")
    for name, tensor in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name

    assert cli.main(["eval", "--checkpoint", str(ref / "best.pt"), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    evaluated = json.loads(printed[printed.index("{"):])
    assert evaluated == pytest.approx(ref_metrics)


def test_rde_recipe_runs_the_gpu_path_with_checkpointing(gpu_inputs, tmp_path):
    """RDE's recipe (TSE 1024 wide with BatchNorm at lr 1e-3, CCD from the first epoch, text augmentation)
    with gradient checkpointing over CLIP's towers, which then must recompute the attention maps it reads."""
    root, clip = gpu_inputs
    cfg = apply_overrides(load_recipe("rde"), [
        f"data.root={root}", f"model.pretrained_dir={clip}", "train.num_epochs=1", "train.warmup_epochs=0",
        "train.batch_size=8", "data.num_workers=0", "train.amp=bf16", "model.grad_checkpointing=true"])
    trainer = Trainer(cfg, tmp_path / "rde", device="cpu")
    lrs = {round(group["lr"], 8) for group in trainer.optimizer.param_groups}
    assert 1e-3 in lrs and 2e-5 in lrs  # the TSE layers, and the biases at lr x 2
    metrics = trainer.fit()
    assert set(metrics) == {"R1", "R5", "R10", "mAP", "mINP"}
    assert trainer.history[0]["epoch"] == 1 and trainer.step == STEPS_PER_EPOCH
