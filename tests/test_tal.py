"""Unit tests for tireid_lite.losses.tal: RDE's triplet alignment loss.

Expected values come from hand-worked cases (math module), from a plain numpy
re-implementation written with explicit loops, or, for gradients, from a torch
re-implementation written with loops; never from ``tal_loss`` itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tireid_lite.losses.tal import tal_loss

# --------------------------------------------------------------------------- references


def _tal_numpy(image: np.ndarray, text: np.ndarray, pids: np.ndarray, margin: float, tau: float) -> np.ndarray:
    """Per-pair TAL (image->text row i + text->image row i), written with loops."""
    image = image / np.linalg.norm(image, axis=1, keepdims=True)
    text = text / np.linalg.norm(text, axis=1, keepdims=True)
    batch = len(pids)
    per_pair = np.zeros(batch)
    for i in range(batch):
        # t2i: text i against every image j; i2t: image i against every text j
        for sims in ([text[i] @ image[j] for j in range(batch)], [image[i] @ text[j] for j in range(batch)]):
            positives = [j for j in range(batch) if pids[j] == pids[i]]
            negatives = [j for j in range(batch) if pids[j] != pids[i]]
            exps = [math.exp(sims[j] / tau) for j in positives]
            s_pos = sum(e / sum(exps) * sims[j] for e, j in zip(exps, positives))
            if not negatives:
                continue  # log of an empty sum is -inf: the hinge is 0
            s_neg = tau * math.log(sum(math.exp(sims[j] / tau) for j in negatives))
            per_pair[i] += max(0.0, margin - s_pos + s_neg)
    return per_pair


def _tal_torch_loops(image, text, pids, margin, tau, detach_alpha=True):
    """Mean TAL in torch with loops over rows; ``detach_alpha=False`` lets gradients through the weights."""
    image = image / image.norm(dim=1, keepdim=True)
    text = text / text.norm(dim=1, keepdim=True)
    batch = len(pids)
    total = 0.0
    for i in range(batch):
        for query, candidates in ((text[i], image), (image[i], text)):
            sims = candidates @ query  # (B,)
            pos = [j for j in range(batch) if pids[j] == pids[i]]
            neg = [j for j in range(batch) if pids[j] != pids[i]]
            alpha = torch.softmax(sims[pos] / tau, dim=0)
            if detach_alpha:
                alpha = alpha.detach()
            s_pos = (alpha * sims[pos]).sum()
            s_neg = tau * torch.log(torch.exp(sims[neg] / tau).sum())
            total = total + torch.clamp(margin - s_pos + s_neg, min=0)
    return total / batch


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("margin, tau", [(0.1, 0.015), (0.3, 0.1), (1.0, 1.0)])
def test_tal_matches_numpy_with_repeated_identities(batch64, margin, tau):
    image, text, pids = batch64
    expected = _tal_numpy(image.numpy(), text.numpy(), pids.numpy(), margin, tau)
    assert (expected > 0).any()  # the hinge is active somewhere, so the comparison means something
    per_pair = tal_loss(image, text, pids, margin=margin, tau=tau, reduction="none")
    assert per_pair.shape == (8,)
    np.testing.assert_allclose(per_pair.numpy(), expected, rtol=0, atol=1e-9)
    assert abs(tal_loss(image, text, pids, margin=margin, tau=tau).item() - expected.mean()) < 1e-9
    assert abs(tal_loss(image, text, pids, margin=margin, tau=tau, reduction="sum").item() - expected.sum()) < 1e-9


def test_tal_orthogonal_pairs_by_hand():
    # S = identity matrix, three identities: each row has S+ = 1 and two negatives at 0,
    # so each direction gives [m - 1 + tau log 2]_+ = 0.5 + 0.5 log 2 for m = 1.5, tau = 0.5.
    feats = torch.eye(3, dtype=torch.float64)
    per_pair = tal_loss(feats, feats, torch.tensor([0, 1, 2]), margin=1.5, tau=0.5, reduction="none")
    torch.testing.assert_close(per_pair, torch.full((3,), 2 * (0.5 + 0.5 * math.log(2)), dtype=torch.float64))
    # the default margin 0.1 is beaten by a gap of 1 - tau log 2: no loss at all
    assert tal_loss(feats, feats, torch.tensor([0, 1, 2])).item() == 0.0


def test_tal_softmax_weighted_positives_by_hand():
    # Images are the unit axes, so S_ij = text_i[j]; pairs 0 and 1 share an identity.
    image = torch.eye(3, dtype=torch.float64)
    text = torch.tensor([[0.6, 0.8, 0.0], [0.0, 0.6, 0.8], [0.8, 0.0, 0.6]], dtype=torch.float64)
    pids = torch.tensor([0, 0, 1])
    margin, tau = 1.0, 0.1

    def hinge(positive_sims, negative_sims):
        weights = [math.exp(s / tau) for s in positive_sims]
        s_pos = sum(w * s for w, s in zip(weights, positive_sims)) / sum(weights)
        s_neg = tau * math.log(sum(math.exp(s / tau) for s in negative_sims))
        return max(0.0, margin - s_pos + s_neg)

    # rows of S (text -> image) and of S^T (image -> text); positives are columns 0, 1 for pid 0
    t2i = [hinge([0.6, 0.8], [0.0]), hinge([0.0, 0.6], [0.8]), hinge([0.6], [0.8, 0.0])]
    i2t = [hinge([0.6, 0.0], [0.8]), hinge([0.8, 0.6], [0.0]), hinge([0.6], [0.0, 0.8])]
    expected = torch.tensor([a + b for a, b in zip(i2t, t2i)], dtype=torch.float64)
    torch.testing.assert_close(tal_loss(image, text, pids, margin, tau, reduction="none"), expected)
    # a worked number: row t2i 0 has S+ = 0.6/(1+e^2) + 0.8 e^2/(1+e^2) and one negative at 0
    assert abs(t2i[0] - (1 - (0.6 + 0.8 * math.exp(2)) / (1 + math.exp(2)))) < 1e-12


def test_tal_small_tau_tends_to_the_hardest_negative():
    gen = torch.Generator().manual_seed(3)
    image = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    text = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    pids = torch.arange(6)
    sims = torch.nn.functional.normalize(text, dim=1) @ torch.nn.functional.normalize(image, dim=1).t()
    hard = sims.masked_fill(torch.eye(6, dtype=torch.bool), -2).max(dim=1).values  # (6,) hardest negative image
    hard_t = sims.t().masked_fill(torch.eye(6, dtype=torch.bool), -2).max(dim=1).values
    expected = torch.relu(5.0 - sims.diag() + hard) + torch.relu(5.0 - sims.diag() + hard_t)
    per_pair = tal_loss(image, text, pids, margin=5.0, tau=1e-4, reduction="none")
    torch.testing.assert_close(per_pair, expected, atol=2e-3, rtol=0)  # tau log(#negatives) <= 2e-4 per row


def test_tal_without_negatives_is_zero_with_finite_gradients():
    gen = torch.Generator().manual_seed(4)
    image = torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    text = torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    loss = tal_loss(image, text, torch.tensor([5, 5, 5, 5]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() == 0


# --------------------------------------------------------------------------- gradients


def test_tal_gradient_does_not_flow_through_the_positive_weights(batch64):
    image, text, pids = batch64
    pids_list = pids.tolist()
    grads = {}
    for name, detach in (("detached", True), ("through", False)):
        img, txt = image.clone().requires_grad_(True), text.clone().requires_grad_(True)
        _tal_torch_loops(img, txt, pids_list, 0.3, 0.1, detach_alpha=detach).backward()
        grads[name] = (img.grad, txt.grad)
    img, txt = image.clone().requires_grad_(True), text.clone().requires_grad_(True)
    loss = tal_loss(img, txt, pids, margin=0.3, tau=0.1)
    loss.backward()
    reference = _tal_torch_loops(image, text, pids_list, 0.3, 0.1)
    assert abs(loss.item() - reference.item()) < 1e-12
    torch.testing.assert_close(img.grad, grads["detached"][0])
    torch.testing.assert_close(txt.grad, grads["detached"][1])
    # the check is sensitive: letting the gradient through the weights changes it
    assert (txt.grad - grads["through"][1]).abs().max() > 1e-3


# --------------------------------------------------------------------------- weights


def test_tal_weights_exclude_and_down_weight_pairs(batch64):
    image, text, pids = batch64
    per_pair = tal_loss(image, text, pids, reduction="none").numpy()
    weights = torch.tensor([1.0, 0.0, 1.0, 0.5, 0.0, 1.0, 1.0, 0.5], dtype=torch.float64)
    w = weights.numpy()
    expected_mean = (w * per_pair).sum() / w.sum()
    assert abs(tal_loss(image, text, pids, weights=weights).item() - expected_mean) < 1e-12
    assert abs(tal_loss(image, text, pids, weights=weights, reduction="sum").item() - (w * per_pair).sum()) < 1e-12
    np.testing.assert_allclose(
        tal_loss(image, text, pids, weights=weights, reduction="none").numpy(), w * per_pair, atol=1e-12
    )
    # dropping pairs is not removing them from the batch: they still serve as negatives elsewhere
    keep = w > 0
    alone = tal_loss(image[keep], text[keep], pids[keep], reduction="none").numpy()
    assert not np.allclose(alone, per_pair[keep])


def test_tal_all_zero_weights_give_zero_and_backward_works(batch64):
    image, text, pids = batch64
    image = image.clone().requires_grad_(True)
    loss = tal_loss(image, text, pids, weights=torch.zeros(8, dtype=torch.float64))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() == 0


def test_tal_ones_weights_equal_no_weights(batch64):
    image, text, pids = batch64
    plain = tal_loss(image, text, pids)
    weighted = tal_loss(image, text, pids, weights=torch.ones(8))
    assert abs(plain.item() - weighted.item()) < 1e-12


# --------------------------------------------------------------------------- dtypes and errors


def test_tal_bf16_inputs_are_computed_in_float32(batch64):
    image, text, pids = batch64
    image16, text16 = image.float().bfloat16(), text.float().bfloat16()
    reference = tal_loss(image16.float(), text16.float(), pids)
    loss = tal_loss(image16, text16, pids)
    assert loss.dtype == torch.float32
    assert abs(loss.item() - reference.item()) < 1e-5
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = tal_loss(image16.float(), text16.float(), pids)
    assert abs(under_autocast.item() - reference.item()) < 1e-5


def test_tal_rejects_bad_weights(batch64):
    image, text, pids = batch64
    with pytest.raises(ValueError, match=r"weights has shape \(3,\) but the batch holds 8 pairs"):
        tal_loss(image, text, pids, weights=torch.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        tal_loss(image, text, pids, weights=-torch.ones(8))
    with pytest.raises(ValueError, match="non-negative"):
        tal_loss(image, text, pids, weights=torch.full((8,), float("nan")))


def test_tal_rejects_bad_arguments(batch64):
    image, text, pids = batch64
    with pytest.raises(ValueError, match=r"pids must have shape \(8,\)"):
        tal_loss(image, text, pids[:5])
    with pytest.raises(ValueError, match="same shape"):
        tal_loss(image, text[:6], pids)
    with pytest.raises(ValueError, match="reduction"):
        tal_loss(image, text, pids, reduction="max")
    with pytest.raises(ValueError, match="tau"):
        tal_loss(image, text, pids, tau=0.0)
