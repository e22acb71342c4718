"""The image and text towers built from scratch (pretrained loading: test_clip_weights.py).

Expected values are worked out by hand or recomputed with numpy from the
towers' own weights, never taken from the function under test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tireid_lite.errors import ConfigError
from tireid_lite.models.towers import TowerOutput, build_image_tower, build_text_tower, pool_at
from tireid_lite.models.text_tower import used_length

SMALL_IMAGE = dict(img_size=(24, 8), patch_size=4, width=32, depth=2, heads=4, out_dim=16)
SMALL_TEXT = dict(vocab_size=40, max_length=10, width=32, depth=2, heads=4, out_dim=16)


def images(batch: int = 2, size: tuple[int, int] = (24, 8), seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


def caption_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Ids (3, 10) with end token 2 and padding 0; columns 8 and 9 are padding in every row."""
    ids = torch.tensor(
        [
            [1, 7, 8, 9, 2, 0, 0, 0, 0, 0],
            [1, 5, 6, 2, 0, 0, 0, 0, 0, 0],
            [1, 11, 12, 13, 14, 15, 16, 2, 0, 0],
        ]
    )
    return ids, (torch.arange(10) <= (ids == 2).int().argmax(1, keepdim=True)).long()


# ---------------------------------------------------------------- image tower


def test_cpu_profile_image_tower_geometry():
    torch.manual_seed(0)
    tower = build_image_tower()
    assert tower.grid_size == (12, 4) and tower.num_patches == 48 and tower.patch_size == 8
    assert (tower.width, tower.depth, tower.num_heads, tower.out_dim) == (128, 4, 4, 128)
    assert tower.mask_token is None
    out = tower(images(2, (96, 32)))
    assert isinstance(out, TowerOutput) and out.attentions is None
    assert out.tokens.shape == (2, 1 + 48, 128)


def test_clip_layout_pre_norm_bias_free_patches_quick_gelu():
    tower = build_image_tower(**SMALL_IMAGE)
    assert isinstance(tower.vit.norm_pre, torch.nn.LayerNorm) and tower.vit.norm_pre.eps == 1e-5
    assert tower.vit.patch_embed.proj.bias is None and tower.proj.bias is None
    x = torch.linspace(-3, 3, 7)
    torch.testing.assert_close(tower.vit.blocks[0].mlp.act(x), x * torch.sigmoid(1.702 * x))


def test_attention_maps_leave_the_tokens_unchanged():
    torch.manual_seed(0)
    tower = build_image_tower(**SMALL_IMAGE).eval()
    x = images()
    plain = tower(x)
    with_maps = tower(x, return_attention=True)
    torch.testing.assert_close(with_maps.tokens, plain.tokens, atol=1e-6, rtol=0)
    assert len(with_maps.attentions) == 2
    for weights in with_maps.attentions:
        assert weights.shape == (2, 4, 1 + 12, 1 + 12)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 13))


def test_first_layer_attention_recomputed_with_numpy():
    torch.manual_seed(0)
    tower = build_image_tower(**SMALL_IMAGE).eval()
    captured = {}
    tower.vit.norm_pre.register_forward_hook(lambda module, args, out: captured.setdefault("x", out))
    x = images()
    weights = tower(x, return_attention=True).attentions[0].detach().numpy()
    block_input = captured["x"].detach().numpy()  # (B, T, W): the first block's input
    block = tower.vit.blocks[0]
    g, b = block.norm1.weight.detach().numpy(), block.norm1.bias.detach().numpy()
    mean = block_input.mean(-1, keepdims=True)
    var = block_input.var(-1, keepdims=True)
    normed = (block_input - mean) / np.sqrt(var + 1e-5) * g + b
    qkv = normed @ block.attn.qkv.weight.detach().numpy().T + block.attn.qkv.bias.detach().numpy()  # (B, T, 3W)
    q, k = qkv[..., :32], qkv[..., 32:64]
    q = q.reshape(2, 13, 4, 8).transpose(0, 2, 1, 3)  # (B, heads, T, 8)
    k = k.reshape(2, 13, 4, 8).transpose(0, 2, 1, 3)
    logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(8)
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(weights, expected, atol=1e-5)


def test_masking_every_patch_erases_the_image():
    torch.manual_seed(0)
    tower = build_image_tower(**SMALL_IMAGE, mask_token=True).eval()
    all_masked = torch.ones(1, 12, dtype=torch.bool)
    first = tower(images(1, seed=1), patch_mask=all_masked).tokens
    second = tower(images(1, seed=2), patch_mask=all_masked).tokens
    torch.testing.assert_close(first, second, atol=0, rtol=0)  # nothing of either image is left
    unmasked = tower(images(1, seed=1)).tokens
    none_masked = tower(images(1, seed=1), patch_mask=torch.zeros(1, 12, dtype=torch.bool)).tokens
    torch.testing.assert_close(none_masked, unmasked, atol=0, rtol=0)
    assert not torch.allclose(first, unmasked)


def test_mask_token_replaces_the_patch_embedding_before_positions():
    torch.manual_seed(0)
    tower = build_image_tower(**SMALL_IMAGE, mask_token=True).eval()
    captured = {}
    tower.vit.norm_pre.register_forward_pre_hook(lambda module, args: captured.setdefault("x", args[0]))
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[0, 3] = True
    tower(images(), patch_mask=mask)
    embedded = captured["x"].detach()  # (B, 1+N, W): class + patches, with positions added
    expected = tower.mask_token.detach()[0, 0] + tower.vit.pos_embed.detach()[0, 1 + 3]
    torch.testing.assert_close(embedded[0, 1 + 3], expected, atol=1e-6, rtol=0)
    assert not torch.allclose(embedded[1, 1 + 3], expected)


def test_mask_token_learns_when_used():
    tower = build_image_tower(**SMALL_IMAGE, mask_token=True)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[:, :4] = True
    tower(images(), patch_mask=mask).tokens.sum().backward()
    assert tower.mask_token.grad is not None and tower.mask_token.grad.abs().sum() > 0
    unused = [name for name, p in tower.named_parameters() if p.grad is None]
    assert unused == []


def test_drop_path_is_random_in_training_only():
    tower = build_image_tower(**SMALL_IMAGE, drop_path=0.5)
    x = images(4)
    torch.manual_seed(0)
    first = tower(x).tokens
    second = tower(x).tokens
    assert not torch.allclose(first, second)
    tower.eval()
    torch.testing.assert_close(tower(x).tokens, tower(x).tokens, atol=0, rtol=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(img_size=(96, 30)), "not a multiple of patch_size=8"),
        (dict(width=130), "not divisible by heads=4"),
        (dict(drop_path=1.0), "drop_path=1.0"),
        (dict(img_size=(96,)), "must be \\(height, width\\)"),
        (dict(img_size=96), "must be \\(height, width\\)"),
    ],
)
def test_image_builder_rejects_bad_sizes(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        build_image_tower(**kwargs)


def test_image_forward_rejects_bad_inputs():
    tower = build_image_tower(**SMALL_IMAGE)
    with pytest.raises(ValueError, match=r"images of shape \(B, 3, 24, 8\), got \(2, 3, 16, 8\)"):
        tower(images(2, (16, 8)))
    with pytest.raises(ValueError, match="build it with mask_token=True"):
        tower(images(), patch_mask=torch.zeros(2, 12, dtype=torch.bool))
    masked = build_image_tower(**SMALL_IMAGE, mask_token=True)
    with pytest.raises(ValueError, match=r"bool tensor of shape \(B, num_patches\) = \(2, 12\)"):
        masked(images(), patch_mask=torch.zeros(2, 12))
    with pytest.raises(ValueError, match=r"got torch.bool \(2, 13\)"):
        masked(images(), patch_mask=torch.zeros(2, 13, dtype=torch.bool))


# ---------------------------------------------------------------- pool_at and used_length


def test_pool_at_takes_the_first_end_token():
    tokens = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)  # token t of row b: 12b + 3t + (0, 1, 2)
    ids = torch.tensor([[5, 9, 2, 2], [2, 7, 2, 0]])
    expected = torch.tensor([[6.0, 7.0, 8.0], [12.0, 13.0, 14.0]])
    torch.testing.assert_close(pool_at(tokens, ids, eot_id=2), expected)


def test_pool_at_rejects_rows_without_an_end_token():
    with pytest.raises(ValueError, match=r"rows \[1\] of ids have no end token 2"):
        pool_at(torch.zeros(2, 3, 4), torch.tensor([[1, 2, 0], [1, 3, 0]]), eot_id=2)
    with pytest.raises(ValueError, match="disagree"):
        pool_at(torch.zeros(2, 3, 4), torch.tensor([[1, 2]]), eot_id=2)


def test_used_length_counts_up_to_the_last_real_column():
    assert used_length(torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])) == 3
    assert used_length(torch.tensor([[0, 1, 1, 0]])) == 3  # left padding is kept
    assert used_length(torch.tensor([[True, True]])) == 2
    assert used_length(torch.zeros(2, 4)) == 1


# ---------------------------------------------------------------- text tower


@pytest.mark.parametrize("kind", ["bert", "clip"])
def test_text_tower_shapes_and_sizes(kind):
    tower = build_text_tower(kind=kind, **SMALL_TEXT)
    ids, mask = caption_batch()
    tokens = tower(ids, mask)
    assert tokens.shape == (3, 10, 16)
    assert (tower.kind, tower.width, tower.depth, tower.num_heads) == (kind, 32, 2, 4)
    assert (tower.out_dim, tower.max_length, tower.vocab_size) == (16, 10, 40)
    assert pool_at(tokens, ids, eot_id=2).shape == (3, 16)


def test_cpu_profile_text_tower_is_a_tiny_bert_without_pooler_or_dropout():
    tower = build_text_tower(vocab_size=100, max_length=64)
    config = tower.encoder.config
    assert (tower.kind, tower.width, tower.depth, tower.num_heads, tower.out_dim) == ("bert", 128, 3, 4, 128)
    assert config.hidden_dropout_prob == 0.0 and config.attention_probs_dropout_prob == 0.0
    assert tower.encoder.pooler is None


@pytest.mark.parametrize("kind, bidirectional", [("bert", True), ("clip", False)])
def test_bert_looks_both_ways_and_clip_only_back(kind, bidirectional):
    torch.manual_seed(0)
    tower = build_text_tower(kind=kind, **SMALL_TEXT).eval()
    ids, mask = caption_batch()
    changed = ids.clone()
    changed[0, 3] = 30  # a later word of caption 0
    before, after = tower(ids, mask), tower(changed, mask)
    earlier_moved = not torch.allclose(before[0, 1], after[0, 1])
    assert earlier_moved == bidirectional
    torch.testing.assert_close(before[1:], after[1:], atol=1e-6, rtol=0)  # other captions untouched


@pytest.mark.parametrize("kind", ["bert", "clip"])
def test_padding_is_ignored_and_returned_as_zeros(kind):
    torch.manual_seed(0)
    tower = build_text_tower(kind=kind, **SMALL_TEXT).eval()
    ids, mask = caption_batch()
    tokens = tower(ids, mask)
    # Independent path: the whole padded length through the encoder, then the projection.
    full = tower.proj(tower.encoder(input_ids=ids, attention_mask=mask).last_hidden_state)
    real = mask.bool()
    torch.testing.assert_close(tokens[real], full[real], atol=1e-5, rtol=0)
    assert torch.all(tokens[:, 8:] == 0)  # columns 8 and 9 are padding in every row
    repadded = ids.masked_fill(~real, 17)
    torch.testing.assert_close(tower(repadded, mask)[real], tokens[real], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["bert", "clip"])
def test_text_attention_maps(kind):
    torch.manual_seed(0)
    tower = build_text_tower(kind=kind, **SMALL_TEXT).eval()
    ids, mask = caption_batch()
    out = tower.encode(ids, mask, return_attention=True)
    torch.testing.assert_close(out.tokens, tower(ids, mask), atol=1e-5, rtol=0)
    assert tower.encoder.config._attn_implementation == "sdpa"  # restored after the call
    assert len(out.attentions) == 2
    first = out.attentions[0]
    assert first.shape == (3, 4, 10, 10)
    real = mask.bool()
    row_sums = first.sum(-1).transpose(1, 2)  # (B, L queries, heads)
    torch.testing.assert_close(row_sums[real], torch.ones(int(real.sum()), 4))
    assert torch.all(first[:, :, 8:] == 0) and torch.all(first[:, :, :, 8:] == 0)  # all-padding columns
    # caption 1 has 4 real tokens: no query attends to its padding keys
    assert torch.all(first[1, :, :4, 4:] == 0)
    if kind == "clip":  # causal: the first token sees only itself
        torch.testing.assert_close(first[:, :, 0, 0], torch.ones(3, 4))


def test_all_text_parameters_learn():
    tower = build_text_tower(**SMALL_TEXT)
    ids, mask = caption_batch()
    pool_at(tower(ids, mask), ids, eot_id=2).sum().backward()
    assert [name for name, p in tower.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kind="gpt"), "kind 'gpt' is unknown; use one of bert, clip"),
        (dict(width=30), "width=30 is not divisible by heads=4"),
        (dict(vocab_size=0), "must both be positive"),
    ],
)
def test_text_builder_rejects_bad_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        build_text_tower(**{**SMALL_TEXT, **kwargs})


def test_text_forward_rejects_bad_inputs():
    tower = build_text_tower(**SMALL_TEXT)
    ids, mask = caption_batch()
    with pytest.raises(ValueError, match=r"range over \[0, 40\] but the text tower's vocabulary has 40"):
        tower(ids.masked_fill(ids == 9, 40), mask)
    with pytest.raises(ValueError, match="length 12 but the text tower holds 10 positions"):
        tower(torch.ones(1, 12, dtype=torch.long), torch.ones(1, 12))
    with pytest.raises(ValueError, match="one mask value per token"):
        tower(ids, mask[:, :5])
    with pytest.raises(ValueError, match="integer tensor"):
        tower(ids.float(), mask)
