"""Patch importance, token selection and RDE's token-selection embedding.

The attention maps below are written by hand (2 layers, 1 head, the class
token and 3 patches) and every expected score is worked out by hand in the
comments, rollout's matrix products included.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tireid_lite.errors import ConfigError
from tireid_lite.models.image_tower import build_image_tower
from tireid_lite.models.patch_importance import (
    attention_rollout,
    cls_attention,
    gather_tokens,
    keep_mask,
    num_kept,
    patch_importance,
    select_patches,
)
from tireid_lite.models.text_tower import build_text_tower
from tireid_lite.models.token_selection import TokenSelectionEmbedding, select_text_tokens

# Layer 1 and layer 2, rows are queries (token 0 = class token, 1..3 = patches); each row sums to 1.
A1 = [
    [0.40, 0.10, 0.30, 0.20],
    [0.25, 0.25, 0.25, 0.25],
    [0.10, 0.20, 0.30, 0.40],
    [0.00, 0.50, 0.50, 0.00],
]
A2 = [
    [0.20, 0.50, 0.10, 0.20],
    [0.50, 0.50, 0.00, 0.00],
    [0.00, 0.00, 1.00, 0.00],
    [0.25, 0.25, 0.25, 0.25],
]


def hand_maps() -> list[torch.Tensor]:
    """The two layers as the tower returns them: each (B=1, heads=1, 4, 4)."""
    return [torch.tensor(A1).view(1, 1, 4, 4), torch.tensor(A2).view(1, 1, 4, 4)]


# ---------------------------------------------------------------- importance scores


def test_mean_cls_attention_over_the_last_layers():
    # layers=2: ((0.1 + 0.5) / 2, (0.3 + 0.1) / 2, (0.2 + 0.2) / 2)
    torch.testing.assert_close(cls_attention(hand_maps(), layers=2), torch.tensor([[0.3, 0.2, 0.2]]))
    # layers=1: the last layer's class row without its first column
    torch.testing.assert_close(cls_attention(hand_maps(), layers=1), torch.tensor([[0.5, 0.1, 0.2]]))


def test_mean_cls_attention_averages_heads():
    uniform = torch.full((4, 4), 0.25)
    two_heads = [torch.stack([torch.tensor(a), uniform]).unsqueeze(0) for a in (A1, A2)]  # each (1, 2, 4, 4)
    # last layer, heads (A2, uniform): ((0.5 + 0.25) / 2, (0.1 + 0.25) / 2, (0.2 + 0.25) / 2)
    torch.testing.assert_close(cls_attention(two_heads, layers=1), torch.tensor([[0.375, 0.175, 0.225]]))


def test_rollout_with_the_residual_identity_by_hand():
    # A1' = A1 / 2 + I / 2            A2' = A2 / 2 + I / 2 (rows already sum to 1)
    #   [0.7,   0.05,  0.15,  0.1  ]    [0.6,   0.25,  0.05,  0.1  ]
    #   [0.125, 0.625, 0.125, 0.125]    [0.25,  0.75,  0.0,   0.0  ]
    #   [0.05,  0.1,   0.65,  0.2  ]    [0.0,   0.0,   1.0,   0.0  ]
    #   [0.0,   0.25,  0.25,  0.5  ]    [0.125, 0.125, 0.125, 0.625]
    # class row of A2' @ A1' = 0.6 * A1'[0] + 0.25 * A1'[1] + 0.05 * A1'[2] + 0.1 * A1'[3]
    #   = [0.42, 0.03, 0.09, 0.06] + [0.03125, 0.15625, 0.03125, 0.03125]
    #   + [0.0025, 0.005, 0.0325, 0.01] + [0.0, 0.025, 0.025, 0.05]
    #   = [0.45375, 0.21625, 0.17875, 0.15125]
    expected = torch.tensor([[0.21625, 0.17875, 0.15125]])
    torch.testing.assert_close(attention_rollout(hand_maps(), layers=2), expected)
    torch.testing.assert_close(patch_importance(hand_maps(), 2, method="rollout"), expected)
    # one layer: the class row of A2' alone
    torch.testing.assert_close(attention_rollout(hand_maps(), layers=1), torch.tensor([[0.25, 0.05, 0.1]]))


def test_rollout_without_the_residual_by_hand():
    # class row of A2 @ A1 = 0.2 * A1[0] + 0.5 * A1[1] + 0.1 * A1[2] + 0.2 * A1[3]
    #   = [0.08, 0.02, 0.06, 0.04] + [0.125, 0.125, 0.125, 0.125] + [0.01, 0.02, 0.03, 0.04] + [0.0, 0.1, 0.1, 0.0]
    #   = [0.215, 0.265, 0.315, 0.205]
    expected = torch.tensor([[0.265, 0.315, 0.205]])
    torch.testing.assert_close(attention_rollout(hand_maps(), layers=2, residual=False), expected)


def test_rollout_renormalises_rows():
    # the layer-2 map scaled by 3 (rows sum to 3): without the residual, renormalising undoes the scale
    scaled = [hand_maps()[0], 3 * hand_maps()[1]]
    torch.testing.assert_close(attention_rollout(scaled, layers=1, residual=False), torch.tensor([[0.5, 0.1, 0.2]]))


def test_rollout_matches_a_numpy_product_on_random_maps():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 2, 3, 6, 6))  # (layers, B, heads, T, T)
    maps = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    product = np.broadcast_to(np.eye(6), (2, 6, 6))
    for layer in maps[1:]:  # the last two layers
        mixed = 0.5 * layer.mean(1) + 0.5 * np.eye(6)
        product = mixed @ product
    got = attention_rollout([torch.from_numpy(m) for m in maps], layers=2)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), product[:, 0, 1:], atol=1e-12)


def test_half_precision_maps_are_scored_in_float32():
    scores = cls_attention([m.half() for m in hand_maps()], layers=2)
    assert scores.dtype == torch.float32


# ---------------------------------------------------------------- selection and gathering


@pytest.mark.parametrize(
    "num_tokens, ratio, expected",
    [(3, 0.5, 2), (5, 0.5, 3), (4, 0.5, 2), (48, 0.5, 24), (192, 0.5, 96), (10, 0.3, 3), (10, 0.25, 3),
     (75, 0.3, 23), (10, 0.01, 1), (7, 1.0, 7), (1, 0.5, 1)],
)
def test_kept_count_rounds_half_up_and_keeps_at_least_one(num_tokens, ratio, expected):
    assert num_kept(num_tokens, ratio) == expected


def test_select_patches_keeps_the_top_scores_in_spatial_order():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7, 0.3], [0.6, 0.0, 0.2, 0.1, 0.8]])
    # K = round(2.5) = 3: row 0 keeps 0.9, 0.7, 0.5 at 1, 3, 2; row 1 keeps 0.8, 0.6, 0.2 at 4, 0, 2
    assert select_patches(scores, 0.5).tolist() == [[1, 2, 3], [0, 2, 4]]
    # K = round(2.0) = 2
    assert select_patches(scores, 0.4).tolist() == [[1, 3], [0, 4]]
    assert select_patches(scores, 1.0).tolist() == [[0, 1, 2, 3, 4]] * 2
    assert select_patches(scores, 0.01).tolist() == [[1], [4]]


def test_select_patches_breaks_ties_towards_the_earlier_patch():
    # mean scores of the hand maps (0.3, 0.2, 0.2), K = round(1.5) = 2: patch 0, then the tie goes to patch 1
    keep_idx = select_patches(cls_attention(hand_maps(), layers=2), 0.5)
    assert keep_idx.tolist() == [[0, 1]] and keep_idx.dtype == torch.long
    assert select_patches(torch.zeros(1, 4), 0.5).tolist() == [[0, 1]]


def test_gather_tokens_with_and_without_the_class_token():
    tokens = torch.tensor([[[0.0, 1.0], [10.0, 11.0], [20.0, 21.0], [30.0, 31.0]]])  # (1, 1+3, 2): [10t, 10t+1]
    keep_idx = torch.tensor([[0, 2]])  # patches 0 and 2 are tokens 1 and 3
    with_cls = torch.tensor([[[0.0, 1.0], [10.0, 11.0], [30.0, 31.0]]])
    torch.testing.assert_close(gather_tokens(tokens, keep_idx), with_cls)
    torch.testing.assert_close(gather_tokens(tokens, keep_idx, with_cls=False), with_cls[:, 1:])


def test_gather_tokens_passes_gradients_to_the_kept_tokens_only():
    tokens = torch.randn(2, 1 + 5, 3, requires_grad=True)
    gather_tokens(tokens, torch.tensor([[1, 4], [0, 2]])).sum().backward()
    used = torch.tensor([[1, 0, 1, 0, 0, 1], [1, 1, 0, 1, 0, 0]], dtype=torch.float32)  # class token + kept patches
    torch.testing.assert_close(tokens.grad, used.unsqueeze(-1).expand(2, 6, 3))


def test_keep_mask_marks_the_kept_patches():
    keep_idx = torch.tensor([[0, 2], [1, 2]])
    assert keep_mask(keep_idx, 3).tolist() == [[True, False, True], [False, True, True]]
    valid = torch.tensor([[True, False], [True, True]])
    assert keep_mask(keep_idx, 3, keep_valid=valid).tolist() == [[True, False, False], [False, True, True]]
    # an index listed as valid and again as filler stays kept
    assert keep_mask(torch.tensor([[1, 1]]), 3, torch.tensor([[True, False]])).tolist() == [[False, True, False]]


# ---------------------------------------------------------------- errors


def test_layers_outside_the_depth_are_config_errors():
    for layers in (0, 3, -1):
        with pytest.raises(ConfigError, match=rf"layers={layers} is not a layer count in 1\.\.2 .* between 1 and 2"):
            cls_attention(hand_maps(), layers=layers)
    with pytest.raises(ConfigError, match="layers=3 is not a layer count"):
        attention_rollout(hand_maps(), layers=3)
    with pytest.raises(ConfigError, match="layers=1.5"):
        patch_importance(hand_maps(), 1.5)


def test_bad_method_and_ratio_are_config_errors():
    with pytest.raises(ConfigError, match="method='max' is not a patch-importance method; use one of 'mean', 'rollout"):
        patch_importance(hand_maps(), 1, method="max")
    for ratio in (0, 0.0, 1.5, -0.2):
        with pytest.raises(ConfigError, match=rf"ratio={ratio} is not a keep ratio; use a value in \(0, 1\]"):
            select_patches(torch.zeros(1, 4), ratio)


def test_malformed_maps_and_indices_are_clear_errors():
    with pytest.raises(ValueError, match="return_attention=True"):
        cls_attention([], layers=1)
    with pytest.raises(ValueError, match="return_attention=True"):
        cls_attention(None, layers=1)
    with pytest.raises(ValueError, match=r"attention map 0 must be \(B, heads, 1\+N, 1\+N\)"):
        cls_attention([torch.zeros(1, 4, 4)], layers=1)
    with pytest.raises(ValueError, match="map 1 has shape .* but map 0 has"):
        cls_attention([torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 5, 5)], layers=1)
    with pytest.raises(ValueError, match=r"outside the patch range 0\.\.2"):
        gather_tokens(torch.zeros(1, 4, 2), torch.tensor([[0, 3]]))
    with pytest.raises(ValueError, match=r"keep_idx must be an integer tensor of shape \(B, K\) with B = 1"):
        gather_tokens(torch.zeros(1, 4, 2), torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match="keep_idx must be an integer tensor"):
        keep_mask(torch.tensor([[0.0, 1.0]]), 3)
    with pytest.raises(ValueError, match=r"scores must be \(B, N\)"):
        select_patches(torch.zeros(4), 0.5)


# ---------------------------------------------------------------- text selection


def text_rows() -> tuple[torch.Tensor, torch.Tensor]:
    """Two captions of padded length 8: start, 4 words, end / start, 1 word, end; padding scores high."""
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]])
    attn_row = torch.tensor(
        [[0.30, 0.10, 0.40, 0.05, 0.15, 0.00, 0.90, 0.90], [0.50, 0.20, 0.30, 0.90, 0.90, 0.90, 0.90, 0.90]]
    )
    return attn_row, attention_mask


def test_text_selection_skips_padding_and_the_end_tokens():
    attn_row, attention_mask = text_rows()
    keep_idx, keep_valid = select_text_tokens(attn_row, attention_mask, 0.5)
    # K = round(0.5 * (8 - 2)) = 3. Row 0: words 1..4 score 0.1, 0.4, 0.05, 0.15 -> 2, 4, 1 -> [1, 2, 4].
    # Row 1: one candidate (word 1), then two filler entries marked invalid.
    assert keep_idx.shape == keep_valid.shape == (2, 3)
    assert keep_idx[0].tolist() == [1, 2, 4] and keep_valid[0].tolist() == [True, True, True]
    assert keep_idx[1, 0].item() == 1 and keep_valid[1].tolist() == [True, False, False]
    assert int(keep_idx.min()) >= 0 and int(keep_idx.max()) < 8
    assert keep_mask(keep_idx, 8, keep_valid).tolist() == [
        [False, True, True, False, True, False, False, False],
        [False, True, False, False, False, False, False, False],
    ]


def test_text_selection_can_keep_the_end_tokens():
    attn_row, attention_mask = text_rows()
    keep_idx, keep_valid = select_text_tokens(attn_row, attention_mask.bool(), 0.5, skip_ends=False)
    # K = round(0.5 * 8) = 4. Row 0: 0.4, 0.3, 0.15, 0.1 at 2, 0, 4, 1; row 1: its 3 tokens and one filler
    assert keep_idx[0].tolist() == [0, 1, 2, 4] and keep_valid[0].all()
    assert keep_idx[1, :3].tolist() == [0, 1, 2] and keep_valid[1].tolist() == [True, True, True, False]


def test_text_selection_errors():
    with pytest.raises(ValueError, match=r"must both be \(B, L\)"):
        select_text_tokens(torch.zeros(2, 5), torch.ones(2, 4), 0.5)
    with pytest.raises(ValueError, match="skip_ends=False"):
        select_text_tokens(torch.zeros(1, 2), torch.ones(1, 2), 0.5)
    with pytest.raises(ConfigError, match="ratio=2 is not a keep ratio"):
        select_text_tokens(torch.zeros(1, 5), torch.ones(1, 5), 2)


# ---------------------------------------------------------------- token-selection embedding


def test_tse_shapes_and_default_hidden_width():
    torch.manual_seed(0)
    tse = TokenSelectionEmbedding(16, 32)
    assert tse.hidden == 16 and tse.mlp[0].out_features == 16
    assert tse(torch.randn(3, 5, 16)).shape == (3, 32)
    assert TokenSelectionEmbedding(16, 8, hidden=24).mlp[0].out_features == 24


def test_tse_recomputed_with_numpy():
    torch.manual_seed(0)
    tse = TokenSelectionEmbedding(6, 4, hidden=5)
    tokens = torch.randn(2, 3, 6)
    with torch.no_grad():
        got = tse(tokens).numpy()
    w = {name: p.detach().numpy() for name, p in tse.named_parameters()}
    x = tokens.numpy()
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    hidden = np.maximum(x @ w["mlp.0.weight"].T + w["mlp.0.bias"], 0.0)
    per_token = hidden @ w["mlp.2.weight"].T + w["mlp.2.bias"] + x @ w["fc.weight"].T + w["fc.bias"]  # (2, 3, 4)
    np.testing.assert_allclose(got, per_token.max(axis=1), atol=1e-6)


def test_tse_is_blind_to_the_tokens_scale():
    torch.manual_seed(0)
    tse = TokenSelectionEmbedding(8, 8)
    tokens = torch.randn(2, 4, 8)
    torch.testing.assert_close(tse(3.0 * tokens), tse(tokens))


def test_tse_max_pool_ignores_padded_entries():
    torch.manual_seed(0)
    tse = TokenSelectionEmbedding(8, 12)
    tokens = torch.randn(2, 4, 8)
    padding = torch.tensor([[False, False, True, True], [False, True, False, True]])
    changed = tokens.clone()
    changed[padding] = 100.0 * torch.randn(int(padding.sum()), 8)
    torch.testing.assert_close(tse(changed, padding), tse(tokens, padding), atol=0, rtol=0)
    assert not torch.allclose(tse(changed), tse(tokens))  # without the mask the change shows
    # a padded row pools only its valid entries: the same as passing them alone
    torch.testing.assert_close(tse(tokens, padding)[0], tse(tokens[:1, :2])[0])


def test_tse_row_of_padding_only_gives_zeros():
    tse = TokenSelectionEmbedding(4, 6)
    out = tse(torch.randn(2, 3, 4), torch.tensor([[True, True, True], [False, True, True]]))
    torch.testing.assert_close(out[0], torch.zeros(6))
    assert torch.isfinite(out).all()


def test_tse_gradients_reach_every_weight_and_only_the_valid_tokens():
    torch.manual_seed(0)
    tse = TokenSelectionEmbedding(8, 8)
    tokens = torch.randn(2, 4, 8, requires_grad=True)
    padding = torch.tensor([[False, False, True, True], [False, False, False, True]])
    out = tse(tokens, padding)
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tse.parameters())
    assert torch.isfinite(tokens.grad).all()
    assert tokens.grad[padding].abs().sum() == 0
    assert tokens.grad[~padding].abs().sum() > 0


def test_tse_errors():
    tse = TokenSelectionEmbedding(8, 8)
    with pytest.raises(ValueError, match=r"tokens must be \(B, K, 8\), got shape \(2, 3, 5\)"):
        tse(torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="pass ~keep_valid"):
        tse(torch.zeros(2, 3, 8), torch.zeros(2, 3))
    with pytest.raises(ConfigError, match="embed_dim=0 is not a width"):
        TokenSelectionEmbedding(8, 0)


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize("method", ["mean", "rollout"])
def test_tiny_image_tower_attention_feeds_patch_selection(method):
    torch.manual_seed(0)
    tower = build_image_tower(img_size=(32, 16), patch_size=8, width=16, depth=2, heads=2, out_dim=16).eval()
    images = torch.randn(3, 3, 32, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = tower(images, return_attention=True)
    scores = patch_importance(out.attentions, layers=2, method=method)  # (B, N), N = 4 x 2 patches
    assert scores.shape == (3, 8) and (scores >= 0).all() and (scores.sum(1) <= 1 + 1e-6).all()
    keep_idx = select_patches(scores, 0.5)
    assert keep_idx.shape == (3, 4)
    for row, kept in zip(scores, keep_idx):
        assert kept.tolist() == sorted(set(kept.tolist())) and 0 <= int(kept.min()) and int(kept.max()) < 8
        dropped = [j for j in range(8) if j not in kept.tolist()]
        assert row[kept].min() >= row[dropped].max()
    kept_tokens = gather_tokens(out.tokens, keep_idx)  # (B, 1+K, D)
    assert kept_tokens.shape == (3, 1 + 4, 16)
    torch.testing.assert_close(kept_tokens[:, 0], out.tokens[:, 0])
    local = TokenSelectionEmbedding(16, 16)(gather_tokens(out.tokens, keep_idx, with_cls=False))
    assert local.shape == (3, 16)


def test_tiny_text_tower_attention_feeds_text_selection():
    torch.manual_seed(0)
    tower = build_text_tower(kind="clip", vocab_size=40, max_length=10, width=16, depth=2, heads=2, out_dim=16).eval()
    ids = torch.tensor([[1, 7, 8, 9, 2, 0, 0, 0, 0, 0], [1, 5, 2, 0, 0, 0, 0, 0, 0, 0]])
    attention_mask = (ids != 0).long()
    with torch.no_grad():
        out = tower.encode(ids, attention_mask, return_attention=True)
    end = attention_mask.sum(1) - 1  # (B,) position of the end token
    attn_row = out.attentions[-1].mean(1)[torch.arange(2), end]  # (B, L): the end token's row, heads averaged
    keep_idx, keep_valid = select_text_tokens(attn_row, attention_mask, 0.5)  # K = round(0.5 * 8) = 4
    assert keep_idx.shape == (2, 4)
    assert keep_idx[0][keep_valid[0]].tolist() == [1, 2, 3] and keep_idx[1][keep_valid[1]].tolist() == [1]
    selected = out.tokens.gather(1, keep_idx.unsqueeze(-1).expand(-1, -1, 16))  # (B, K, D)
    assert TokenSelectionEmbedding(16, 8)(selected, ~keep_valid).shape == (2, 8)
