"""`tireid import-checkpoint`: IRRA's and RDE's released state dicts (their key names, tiny shapes) into
the kit's model, scored by `tireid eval`; unknown and missing keys are one error listing them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tireid_lite import cli
from tireid_lite.data.fixtures import write_fixture
from tireid_lite.errors import TIReIDError
from tireid_lite.models.released import map_state
from tireid_lite.models.tiny_clip import (
    TINY_CLIP_SIZES,
    tiny_clip_vocab,
    write_tiny_clip,
)
from tireid_lite.models.trained import load_trained

W = TINY_CLIP_SIZES["vision_width"]  # vision and text widths and the projection are all 32 here
E = TINY_CLIP_SIZES["projection_dim"]
LAYERS = TINY_CLIP_SIZES["vision_layers"]
POSITIONS = 1 + (384 // 16) * (128 // 16)  # IRRA stores the position embeddings already resized to 24x8
CLASSES = 7


def _block(prefix: str, width: int) -> dict[str, tuple[int, ...]]:
    """One CLIP residual attention block with OpenAI's names (IRRA's model/clip_model.py)."""
    return {f"{prefix}attn.in_proj_weight": (3 * width, width), f"{prefix}attn.in_proj_bias": (3 * width,),
            f"{prefix}attn.out_proj.weight": (width, width), f"{prefix}attn.out_proj.bias": (width,),
            f"{prefix}ln_1.weight": (width,), f"{prefix}ln_1.bias": (width,),
            f"{prefix}mlp.c_fc.weight": (4 * width, width), f"{prefix}mlp.c_fc.bias": (4 * width,),
            f"{prefix}mlp.c_proj.weight": (width, 4 * width), f"{prefix}mlp.c_proj.bias": (width,),
            f"{prefix}ln_2.weight": (width,), f"{prefix}ln_2.bias": (width,)}


def clip_shapes() -> dict[str, tuple[int, ...]]:
    vocab = len(tiny_clip_vocab())
    shapes = {"base_model.visual.class_embedding": (W,), "base_model.visual.positional_embedding": (POSITIONS, W),
              "base_model.visual.conv1.weight": (W, 3, 16, 16), "base_model.visual.ln_pre.weight": (W,),
              "base_model.visual.ln_pre.bias": (W,), "base_model.visual.ln_post.weight": (W,),
              "base_model.visual.ln_post.bias": (W,), "base_model.visual.proj": (W, E),
              "base_model.token_embedding.weight": (vocab, W), "base_model.positional_embedding": (77, W),
              "base_model.ln_final.weight": (W,), "base_model.ln_final.bias": (W,),
              "base_model.text_projection": (W, E), "base_model.logit_scale": ()}
    for i in range(LAYERS):
        shapes.update(_block(f"base_model.visual.transformer.resblocks.{i}.", W))
        shapes.update(_block(f"base_model.transformer.resblocks.{i}.", W))
    return shapes


def irra_shapes() -> dict[str, tuple[int, ...]]:
    vocab = len(tiny_clip_vocab())
    shapes = clip_shapes()
    shapes.update({"classifier.weight": (CLASSES, E), "classifier.bias": (CLASSES,),
                   "cross_attn.in_proj_weight": (3 * E, E), "cross_attn.in_proj_bias": (3 * E,),
                   "cross_attn.out_proj.weight": (E, E), "cross_attn.out_proj.bias": (E,),
                   "mlm_head.dense.weight": (E, E), "mlm_head.dense.bias": (E,), "mlm_head.ln.weight": (E,),
                   "mlm_head.ln.bias": (E,), "mlm_head.fc.weight": (vocab, E), "mlm_head.fc.bias": (vocab,)})
    for name in ("ln_pre_t", "ln_pre_i", "ln_post"):
        shapes.update({f"{name}.weight": (E,), f"{name}.bias": (E,)})
    for i in range(4):  # --cmt_depth 4
        shapes.update(_block(f"cross_modal_transformer.resblocks.{i}.", E))
    return shapes


def rde_shapes() -> dict[str, tuple[int, ...]]:
    shapes = clip_shapes()
    for layer, first in (("visul_emb_layer", "fc"), ("texual_emb_layer", "linear")):
        shapes.update({f"{layer}.{first}.weight": (1024, E), f"{layer}.{first}.bias": (1024,),
                       f"{layer}.mlp.layers.0.weight": (512, E), f"{layer}.mlp.layers.0.bias": (512,),
                       f"{layer}.mlp.layers.1.weight": (1024, 512), f"{layer}.mlp.layers.1.bias": (1024,)})
        for k, width in ((0, 512), (1, 1024)):
            shapes.update({f"{layer}.mlp.bns.{k}.weight": (width,), f"{layer}.mlp.bns.{k}.bias": (width,),
                           f"{layer}.mlp.bns.{k}.running_mean": (width,), f"{layer}.mlp.bns.{k}.running_var": (width,)})
    shapes.update({"visul_emb_layer.linear.weight": (1024, E), "visul_emb_layer.linear.bias": (1024,)})
    return shapes


def random_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {k: (torch.randn(s, generator=gen) * 0.05).half() for k, s in shapes.items()}  # IRRA saves fp16
    for key in list(state):
        if "running_var" in key:
            state[key] = state[key].abs() + 1
        if "running_mean" in key:
            state[key.replace("running_mean", "num_batches_tracked")] = torch.tensor(1000)
    return state


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("released")
    clip = write_tiny_clip(base / "clip")
    root = write_fixture("cuhk-pedes", base / "cuhk", ids_per_split={"train": 2, "val": 1, "test": 2},
                         images_per_id=2, size=(384, 128))
    return clip, root


@pytest.mark.parametrize("source,shapes", [("irra", irra_shapes), ("rde", rde_shapes)])
def test_released_checkpoint_imports_and_is_scored(source, shapes, inputs, tmp_path, capsys):
    clip, root = inputs
    state = random_state(shapes())
    path = tmp_path / "best.pth"
    torch.save({"model": state, "epoch": 60}, path)  # as the authors' Checkpointer saves it
    out = tmp_path / "imported.pt"
    assert cli.main(["import-checkpoint", "--from", source, str(path), str(out), "--clip-dir", str(clip),
                     "--data-root", str(root)]) == 0
    assert "tireid eval --checkpoint" in capsys.readouterr().out
    model = load_trained(out).model
    kit = model.state_dict()
    half = state["base_model.visual.conv1.weight"].float()
    assert torch.equal(kit["image_tower.vit.patch_embed.proj.weight"], half)
    assert torch.equal(kit["image_tower.vit.pos_embed"][0], state["base_model.visual.positional_embedding"].float())
    assert torch.equal(kit["image_tower.proj.weight"], state["base_model.visual.proj"].float().t())
    qkv = state["base_model.transformer.resblocks.1.attn.in_proj_weight"].float()
    assert torch.equal(kit["text_tower.encoder.encoder.layers.1.self_attn.k_proj.weight"], qkv[W:2 * W])
    if source == "irra":
        assert torch.equal(kit["heads.mlm.cross.norm_query.weight"], state["ln_pre_t.weight"].float())
        assert torch.equal(kit["heads.id.classifier.weight"], state["classifier.weight"].float())
    else:
        assert torch.equal(kit["heads.tal.text_tse.fc.weight"], state["texual_emb_layer.linear.weight"].float())
        assert torch.equal(kit["heads.tal.image_tse.mlp.1.running_var"],
                           state["visul_emb_layer.mlp.bns.0.running_var"].float())
    assert cli.main(["eval", "--checkpoint", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(printed[printed.index("{"):])
    assert set(metrics) == {"R1", "R5", "R10", "mAP", "mINP"} and 0 <= metrics["R1"] <= 100


def test_unknown_missing_and_misshapen_keys_are_one_error(inputs, tmp_path):
    clip, _ = inputs
    from tireid_lite.config import apply_overrides, load_recipe
    from tireid_lite.models import build_model
    from tireid_lite.text.tokenizers import CLIPBPETokenizer

    cfg = apply_overrides(load_recipe("irra"), [f"model.pretrained_dir={clip}"])
    target = build_model(cfg, CLIPBPETokenizer.from_pretrained(clip), CLASSES).state_dict()
    state = random_state(irra_shapes())
    del state["base_model.ln_final.bias"], state["mlm_head.fc.bias"]
    state["prompt_learner.ctx"] = torch.zeros(4, E)
    state["base_model.visual.ln_pre.weight"] = torch.zeros(W + 1)
    with pytest.raises(TIReIDError) as err:
        map_state(state, "irra", target)
    message = str(err.value)
    assert "1 of its keys have no place in the kit: prompt_learner.ctx" in message
    assert ("2 tensors of the kit's model are not in it: heads.mlm.predict.net.3.bias, "
            "text_tower.encoder.final_layer_norm.bias") in message
    assert "1 shapes differ: image_tower.vit.norm_pre.weight (33,)" in message
    assert "\n" not in message


def test_a_file_that_is_not_a_checkpoint_is_one_error(inputs, tmp_path):
    clip, _ = inputs
    bad = tmp_path / "notes.pth"
    bad.write_text("not a checkpoint")
    from tireid_lite.models.released import import_released

    with pytest.raises(TIReIDError, match=r"cannot read .*notes.pth as a torch checkpoint"):
        import_released("irra", bad, tmp_path / "out.pt", clip_dir=str(clip))
    assert not (tmp_path / "out.pt").exists()
