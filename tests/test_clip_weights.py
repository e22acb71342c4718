"""Local CLIP checkpoints: directory check, vision mapping into timm, text loading, get_clip.py.

Expected values come from transformers' own CLIP (an independent implementation)
run on a tiny random checkpoint saved the way ``CLIPModel.save_pretrained`` does.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel

from tireid_lite.errors import ConfigError, TIReIDError
from tireid_lite.models.clip_weights import (
    check_clip_dir,
    clip_vision_arch,
    clip_vision_to_tower_state,
    load_clip_text_weights,
    load_clip_vision_into_timm,
    read_clip_tensors,
    resize_clip_pos_embed,
)
from tireid_lite.models.image_tower import build_image_tower
from tireid_lite.models.text_tower import build_text_tower, pool_at

REPO = Path(__file__).resolve().parents[1]
VOCAB, EOS, BOS, PAD = 99, 98, 97, 0
PROJ = 32


def tiny_clip_config() -> CLIPConfig:
    return CLIPConfig(
        vision_config=dict(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            image_size=32, patch_size=8, projection_dim=PROJ,
        ),
        text_config=dict(
            vocab_size=VOCAB, hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=16, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD, projection_dim=PROJ,
        ),
        projection_dim=PROJ,
    )


def write_tokenizer_files(root: Path) -> None:
    (root / "vocab.json").write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2}))
    (root / "merges.txt").write_text("#version: 0.2\n")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> tuple[Path, CLIPModel]:
    """A random tiny CLIP saved to disk, and the model that wrote it (eager attention)."""
    torch.manual_seed(0)
    model = CLIPModel(tiny_clip_config()).eval()
    root = tmp_path_factory.mktemp("tiny_clip")
    model.save_pretrained(root)
    write_tokenizer_files(root)
    model.set_attn_implementation("eager")
    return root, model


def text_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two captions: BOS, ordinary tokens, EOS, then padding (EOS is the largest id)."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.full((2, 12), PAD, dtype=torch.long)
    ids[:, 0] = BOS
    ids[0, 1:7] = torch.randint(1, BOS, (6,), generator=gen)
    ids[0, 7] = EOS
    ids[1, 1:11] = torch.randint(1, BOS, (10,), generator=gen)
    ids[1, 11] = EOS
    mask = (torch.arange(12) <= torch.tensor([[7], [11]])).long()
    return ids, mask


# ---------------------------------------------------------------- check_clip_dir


def test_check_clip_dir_accepts_a_complete_checkpoint(tiny_clip):
    root, _ = tiny_clip
    assert check_clip_dir(str(root)) == root


def test_check_clip_dir_names_everything_missing(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"vision_config": {}}))
    (tmp_path / "vocab.json").write_text("{}")
    with pytest.raises(TIReIDError) as err:
        check_clip_dir(tmp_path)
    message = str(err.value)
    for expected in ("'text_config'", "model.safetensors or pytorch_model.bin", "merges.txt", "get_clip.py --out"):
        assert expected in message
    assert "vocab.json" not in message.split("missing")[1].split(";")[0]


def test_check_clip_dir_rejects_a_missing_directory(tmp_path):
    with pytest.raises(TIReIDError, match="does not exist"):
        check_clip_dir(tmp_path / "nowhere")


def test_check_clip_dir_rejects_unreadable_config(tiny_clip, tmp_path):
    root, _ = tiny_clip
    for name in ("model.safetensors", "vocab.json", "merges.txt"):
        shutil.copy(root / name, tmp_path / name)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(TIReIDError, match="readable config.json"):
        check_clip_dir(tmp_path)


# ---------------------------------------------------------------- vision


def test_clip_vision_arch_reads_the_config(tiny_clip):
    arch, extra = clip_vision_arch(tiny_clip[0])
    assert arch == {"patch_size": 8, "width": 64, "depth": 2, "heads": 4, "out_dim": PROJ}
    assert extra == {"mlp_ratio": 2.0, "act_layer": "quick_gelu", "norm_eps": 1e-5}


def test_square_tower_matches_transformers_clip(tiny_clip):
    root, hf = tiny_clip
    tower = build_image_tower(img_size=(32, 32), pretrained_dir=root).eval()
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = tower(images, return_attention=True)
        expected_cls = hf.get_image_features(pixel_values=images).pooler_output  # (3, 32)
        hf_out = hf.vision_model(pixel_values=images, output_attentions=True)
        expected_tokens = hf.visual_projection(hf.vision_model.post_layernorm(hf_out.last_hidden_state))
    assert out.tokens.shape == (3, 1 + 16, PROJ)
    torch.testing.assert_close(out.tokens[:, 0], expected_cls, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.tokens, expected_tokens, atol=1e-5, rtol=0)
    assert len(out.attentions) == len(hf_out.attentions) == 2
    for ours, theirs in zip(out.attentions, hf_out.attentions):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_three_to_one_tower_resizes_position_embeddings(tiny_clip):
    root, hf = tiny_clip
    tower = build_image_tower(img_size=(48, 16), pretrained_dir=root)
    assert tower.grid_size == (6, 2)
    pos = tower.vit.pos_embed.detach()
    assert pos.shape == (1, 1 + 6 * 2, 64)
    source = hf.vision_model.embeddings.position_embedding.weight.detach()  # (1 + 4*4, 64)
    torch.testing.assert_close(pos[0, 0], source[0], atol=0, rtol=0)  # class token kept as is
    grid = source[1:].reshape(1, 4, 4, 64).permute(0, 3, 1, 2)  # (1, D, 4, 4)
    expected = F.interpolate(grid, size=(6, 2), mode="bicubic", align_corners=False, antialias=True)
    torch.testing.assert_close(pos[0, 1:], expected.permute(0, 2, 3, 1).reshape(12, 64), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        tower.vit.cls_token.detach().flatten(), hf.vision_model.embeddings.class_embedding.detach(), atol=0, rtol=0
    )
    assert tower(torch.randn(2, 3, 48, 16)).tokens.shape == (2, 13, PROJ)


def test_pretrained_tower_keeps_a_new_mask_token(tiny_clip):
    tower = build_image_tower(img_size=(32, 32), pretrained_dir=tiny_clip[0], mask_token=True)
    assert tower.mask_token.shape == (1, 1, 64)


def test_builder_rejects_sizes_that_disagree_with_the_checkpoint(tiny_clip):
    with pytest.raises(ConfigError, match="width=128 disagrees"):
        build_image_tower(img_size=(32, 32), width=128, pretrained_dir=tiny_clip[0])
    with pytest.raises(ConfigError, match="not a multiple of patch_size=8"):
        build_image_tower(img_size=(36, 16), pretrained_dir=tiny_clip[0])


def test_loading_into_a_shallower_tower_names_the_unplaced_layer(tiny_clip):
    tower = build_image_tower(img_size=(32, 32), patch_size=8, width=64, depth=1, heads=4, out_dim=PROJ)
    with pytest.raises(TIReIDError, match=r"no place for: vit\.blocks\.1\."):
        load_clip_vision_into_timm(tower, tiny_clip[0])


def test_loading_into_a_deeper_tower_names_the_unfilled_layer(tiny_clip):
    tower = build_image_tower(img_size=(32, 32), patch_size=8, width=64, depth=3, heads=4, out_dim=PROJ)
    with pytest.raises(TIReIDError, match=r"does not have: vit\.blocks\.2\."):
        load_clip_vision_into_timm(tower, tiny_clip[0])


def test_loading_into_a_wider_tower_names_the_wrong_shapes(tiny_clip):
    tower = build_image_tower(img_size=(32, 32), patch_size=8, width=128, depth=2, heads=4, out_dim=PROJ)
    with pytest.raises(TIReIDError, match=r"wrong shape .*\(64,\) vs \(128,\)"):
        load_clip_vision_into_timm(tower, tiny_clip[0])


def test_unknown_vision_tensor_is_an_error(tiny_clip):
    ckpt = read_clip_tensors(tiny_clip[0], ("vision_model.", "visual_projection."))
    ckpt["vision_model.encoder.layers.0.self_attn.gate.weight"] = torch.zeros(64, 64)
    with pytest.raises(TIReIDError, match="cannot place: vision_model.encoder.layers.0.self_attn.gate.weight"):
        clip_vision_to_tower_state(ckpt, (4, 4))


def test_qkv_is_q_k_v_stacked(tiny_clip):
    ckpt = read_clip_tensors(tiny_clip[0], ("vision_model.", "visual_projection."))
    state = clip_vision_to_tower_state(ckpt, (4, 4))
    layer = "vision_model.encoder.layers.1.self_attn."
    qkv = state["vit.blocks.1.attn.qkv.weight"]
    assert qkv.shape == (3 * 64, 64)
    for i, name in enumerate(("q", "k", "v")):
        torch.testing.assert_close(qkv[64 * i : 64 * (i + 1)], ckpt[f"{layer}{name}_proj.weight"], atol=0, rtol=0)


def test_resize_rejects_a_non_square_grid():
    with pytest.raises(TIReIDError, match="square grid"):
        resize_clip_pos_embed(torch.zeros(1 + 12, 8), (6, 2))


def test_bin_checkpoint_reads_like_safetensors(tiny_clip, tmp_path):
    root, _ = tiny_clip
    shutil.copy(root / "config.json", tmp_path / "config.json")
    write_tokenizer_files(tmp_path)
    expected = read_clip_tensors(root, ("vision_model.", "visual_projection."))
    # Older checkpoints also saved position_ids buffers; they are not weights.
    legacy = dict(expected, **{"vision_model.embeddings.position_ids": torch.arange(17)[None]})
    torch.save(legacy, tmp_path / "pytorch_model.bin")
    got = read_clip_tensors(tmp_path, ("vision_model.", "visual_projection."))
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, atol=0, rtol=0)


def test_damaged_weights_file_is_one_clear_error(tiny_clip, tmp_path):
    root, _ = tiny_clip
    shutil.copy(root / "config.json", tmp_path / "config.json")
    write_tokenizer_files(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(TIReIDError, match="could not read the weights file .*model.safetensors"):
        read_clip_tensors(tmp_path, ("vision_model.",))


# ---------------------------------------------------------------- text


def test_pretrained_clip_text_matches_transformers_clip(tiny_clip):
    root, hf = tiny_clip
    tower = build_text_tower(kind="clip", vocab_size=VOCAB, max_length=12, pretrained_dir=root).eval()
    ids, mask = text_batch()
    with torch.no_grad():
        ours = pool_at(tower(ids, mask), ids, EOS)  # (2, 32)
        expected = hf.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
    assert (tower.width, tower.depth, tower.num_heads, tower.out_dim) == (48, 2, 4, PROJ)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_larger_vocabulary_adds_rows_and_keeps_the_rest(tiny_clip):
    root, hf = tiny_clip
    tower = build_text_tower(kind="clip", vocab_size=VOCAB + 1, max_length=16, pretrained_dir=root).eval()
    assert tower.vocab_size == VOCAB + 1
    table = tower.encoder.get_input_embeddings().weight.detach()
    torch.testing.assert_close(table[:VOCAB], hf.text_model.embeddings.token_embedding.weight.detach(), atol=0, rtol=0)
    ids, mask = text_batch()
    with torch.no_grad():
        ours = pool_at(tower(ids, mask), ids, EOS)
        expected = hf.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    ids[0, 3] = VOCAB  # the new token is usable
    assert torch.isfinite(tower(ids, mask)).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kind="clip", vocab_size=VOCAB - 1, max_length=16), "below the CLIP checkpoint's 99 tokens"),
        (dict(kind="clip", vocab_size=VOCAB, max_length=17), "exceeds the 16 positions"),
        (dict(kind="clip", vocab_size=VOCAB, max_length=16, width=64), "width=64 disagrees"),
        (dict(kind="bert", vocab_size=VOCAB, max_length=16), "use kind='clip'"),
    ],
)
def test_pretrained_text_rejects_mismatches(tiny_clip, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        build_text_tower(pretrained_dir=tiny_clip[0], **kwargs)


def test_text_weights_into_a_different_model_is_one_clear_error(tiny_clip):
    config = CLIPTextConfig(**{**tiny_clip[1].config.text_config.to_dict(), "num_hidden_layers": 1})
    with pytest.raises(TIReIDError, match=r"no place for: text_model\.encoder\.layers\.1\."):
        load_clip_text_weights(CLIPTextModel(config), torch.nn.Linear(48, PROJ, bias=False), tiny_clip[0])


# ---------------------------------------------------------------- data_setup/get_clip.py


@pytest.fixture(scope="module")
def get_clip():
    spec = importlib.util.spec_from_file_location("get_clip", REPO / "data_setup" / "get_clip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_get_clip_check_prints_what_it_found(get_clip, tiny_clip, capsys):
    assert get_clip.main(["--check", str(tiny_clip[0])]) == 0
    out = capsys.readouterr().out
    assert "weights: model.safetensors" in out
    assert "vision: 64 wide, 2 layers, 4 heads, patch 8, trained at 32x32" in out
    assert "text: 48 wide, 2 layers, 4 heads, 99 tokens, 16 positions" in out
    assert "tokenizer and processor files: merges.txt, vocab.json" in out


def test_get_clip_check_fails_on_an_incomplete_directory(get_clip, tiny_clip, tmp_path, capsys):
    shutil.copy(tiny_clip[0] / "config.json", tmp_path / "config.json")
    assert get_clip.main(["--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing a weights file" in err and "vocab.json, merges.txt" in err


def test_get_clip_reports_an_unreachable_hub_in_one_line(get_clip, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise huggingface_hub.errors.OfflineModeIsEnabled("Cannot reach https://huggingface.co: offline")

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", offline)
    out = tmp_path / "clip"
    assert get_clip.main(["--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "could not download openai/clip-vit-base-patch16" in err and "copy DIR here" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing half-written


def test_get_clip_keeps_a_complete_directory_without_the_hub(get_clip, tiny_clip, monkeypatch, capsys):
    import huggingface_hub

    def must_not_be_called(*args, **kwargs):
        raise AssertionError("the Hub was contacted for a complete directory")

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", must_not_be_called)
    assert get_clip.main(["--out", str(tiny_clip[0])]) == 0
    assert "weights: model.safetensors" in capsys.readouterr().out


def test_get_clip_refuses_to_overwrite_an_unrelated_directory(get_clip, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert get_clip.main(["--out", str(tmp_path)]) == 1
    assert "remove it or pick another --out" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"
