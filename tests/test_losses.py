"""Unit tests for tireid_lite.losses: SDM, InfoNCE, ID, MLM.

Expected values come from hand-worked cases (math module) or from a plain
numpy re-implementation written with explicit loops, never from the losses
themselves.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tireid_lite.losses import (
    id_loss,
    infonce_loss,
    masked_accuracy,
    matching_distribution,
    mlm_loss,
    sdm_loss,
)

# --------------------------------------------------------------------------- numpy references


def _softmax(row: np.ndarray) -> np.ndarray:
    shifted = np.exp(row - row.max())
    return shifted / shifted.sum()


def _sdm_numpy(image: np.ndarray, text: np.ndarray, pids: np.ndarray, scale: float, eps: float = 1e-8):
    """Per-pair SDM terms (i2t row i + t2i row i), written with loops."""
    image = image / np.linalg.norm(image, axis=1, keepdims=True)
    text = text / np.linalg.norm(text, axis=1, keepdims=True)
    batch = len(pids)
    per_pair = np.zeros(batch)
    for i in range(batch):
        positives = np.array([pids[i] == pids[j] for j in range(batch)], dtype=float)
        q = positives / positives.sum()
        p_t2i = _softmax(np.array([scale * text[i] @ image[j] for j in range(batch)]))
        p_i2t = _softmax(np.array([scale * image[i] @ text[j] for j in range(batch)]))
        for p in (p_t2i, p_i2t):
            per_pair[i] += sum(p[j] * (math.log(p[j]) - math.log(q[j] + eps)) for j in range(batch))
    return per_pair


def _infonce_numpy(image: np.ndarray, text: np.ndarray, scale: float) -> np.ndarray:
    image = image / np.linalg.norm(image, axis=1, keepdims=True)
    text = text / np.linalg.norm(text, axis=1, keepdims=True)
    batch = image.shape[0]
    per_pair = np.zeros(batch)
    for i in range(batch):
        t2i = _softmax(np.array([scale * text[i] @ image[j] for j in range(batch)]))
        i2t = _softmax(np.array([scale * image[i] @ text[j] for j in range(batch)]))
        per_pair[i] = (-math.log(i2t[i]) - math.log(t2i[i])) / 2
    return per_pair


def _ce_numpy(logits_row: np.ndarray, target: int) -> float:
    top = logits_row.max()
    return float(-(logits_row[target] - top - math.log(np.exp(logits_row - top).sum())))


# --------------------------------------------------------------------------- matching_distribution


def test_matching_distribution_by_hand():
    q = matching_distribution(torch.tensor([5, 7, 5]))
    expected = torch.tensor([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    torch.testing.assert_close(q, expected)


def test_matching_distribution_rejects_matrix():
    with pytest.raises(ValueError, match="pids"):
        matching_distribution(torch.zeros(2, 2))


# --------------------------------------------------------------------------- SDM


@pytest.mark.parametrize("scale", [1.0, 20.0, 50.0])
def test_sdm_matches_numpy_with_repeated_identities(batch64, scale):
    image, text, pids = batch64
    expected = _sdm_numpy(image.numpy(), text.numpy(), pids.numpy(), scale)
    per_pair = sdm_loss(image, text, pids, scale, reduction="none")
    assert per_pair.shape == (8,)
    np.testing.assert_allclose(per_pair.numpy(), expected, rtol=0, atol=1e-6)
    assert abs(sdm_loss(image, text, pids, scale).item() - expected.mean()) < 1e-6


def test_sdm_two_pairs_of_different_people_by_hand():
    # s = identity matrix, scale 1: every row is softmax([1, 0]) against q = [1, 0].
    feats = torch.eye(2, dtype=torch.float64)
    p_pos, p_neg = math.e / (math.e + 1), 1 / (math.e + 1)
    row = p_pos * (math.log(p_pos) - math.log(1 + 1e-8)) + p_neg * (math.log(p_neg) - math.log(1e-8))
    loss = sdm_loss(feats, feats, torch.tensor([0, 1]), 1.0)
    assert abs(loss.item() - 2 * row) < 1e-9  # i2t row + t2i row, the same for both pairs


def test_sdm_two_pairs_of_one_person_by_hand():
    # Same similarities, but both pairs are one identity: q = [1/2, 1/2] in every row.
    feats = torch.eye(2, dtype=torch.float64)
    p_pos, p_neg = math.e / (math.e + 1), 1 / (math.e + 1)
    half = math.log(0.5 + 1e-8)
    row = p_pos * (math.log(p_pos) - half) + p_neg * (math.log(p_neg) - half)
    per_pair = sdm_loss(feats, feats, torch.tensor([4, 4]), 1.0, reduction="none")
    torch.testing.assert_close(per_pair, torch.full((2,), 2 * row, dtype=torch.float64))


def test_sdm_is_zero_for_perfectly_separated_features():
    # Every pair's image and text sit on their identity's axis; two identities appear twice.
    pids = torch.tensor([0, 0, 1, 2, 2, 3])
    feats = torch.nn.functional.one_hot(pids, 4).double()
    assert sdm_loss(feats, feats, pids, 100.0).abs().item() < 1e-6
    assert sdm_loss(feats, feats, pids, 1.0).item() > 0.1  # a soft scale cannot reach the target


def test_infonce_penalises_same_person_captions_that_sdm_accepts():
    # Same separated features: a text of a 2-pair identity sees two images at s = 1, so CE = log 2.
    pids = torch.tensor([0, 0, 1, 2, 2, 3])
    feats = torch.nn.functional.one_hot(pids, 4).double()
    expected = 4 / 6 * math.log(2)  # four pairs at log 2, two singletons at 0
    assert abs(infonce_loss(feats, feats, 100.0).item() - expected) < 1e-9


def test_sdm_accepts_tensor_scale_and_gradients_flow(batch64):
    image, text, pids = batch64
    image.requires_grad_(True)
    text.requires_grad_(True)
    scale = torch.tensor(20.0, dtype=torch.float64, requires_grad=True)
    loss = sdm_loss(image, text, pids, scale)
    assert abs(loss.item() - sdm_loss(image.detach(), text.detach(), pids, 20.0).item()) < 1e-12
    loss.backward()
    for grad in (image.grad, text.grad, scale.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_sdm_bf16_inputs_are_computed_in_float32(batch64):
    image, text, pids = batch64
    image16, text16 = image.float().bfloat16(), text.float().bfloat16()
    reference = sdm_loss(image16.float(), text16.float(), pids, 50.0)
    loss = sdm_loss(image16, text16, pids, 50.0)
    assert loss.dtype == torch.float32
    assert abs(loss.item() - reference.item()) < 1e-5
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = sdm_loss(image16.float(), text16.float(), pids, 50.0)
    assert abs(under_autocast.item() - reference.item()) < 1e-5


@pytest.mark.parametrize(
    "image_shape, text_shape, pid_count",
    [((4, 3), (4, 2), 4), ((4, 3), (4, 3), 3), ((4, 3, 2), (4, 3, 2), 4)],
)
def test_sdm_rejects_bad_shapes(image_shape, text_shape, pid_count):
    with pytest.raises(ValueError, match="shape"):
        sdm_loss(torch.randn(image_shape), torch.randn(text_shape), torch.arange(pid_count), 1.0)


def test_sdm_rejects_unknown_reduction(batch64):
    image, text, pids = batch64
    with pytest.raises(ValueError, match="reduction"):
        sdm_loss(image, text, pids, 1.0, reduction="sum")


# --------------------------------------------------------------------------- InfoNCE


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_infonce_matches_numpy(batch64, scale):
    image, text, _ = batch64
    expected = _infonce_numpy(image.numpy(), text.numpy(), scale)
    per_pair = infonce_loss(image, text, scale, reduction="none")
    np.testing.assert_allclose(per_pair.numpy(), expected, rtol=0, atol=1e-6)
    assert abs(infonce_loss(image, text, scale).item() - expected.mean()) < 1e-6


def test_infonce_uniform_similarities_give_log_batch():
    # All features equal: every softmax is uniform over B = 5, so each CE is log 5.
    feats = torch.ones(5, 3)
    assert abs(infonce_loss(feats, feats, 10.0).item() - math.log(5)) < 1e-5


def test_infonce_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        infonce_loss(torch.randn(4, 3), torch.randn(5, 3), 1.0)


# --------------------------------------------------------------------------- ID loss


def test_id_loss_by_hand():
    ln2, ln3 = math.log(2), math.log(3)
    image_logits = torch.tensor([[0.0, ln3], [ln2, 0.0]])  # CE: log(4/3), log(3/2)
    text_logits = torch.tensor([[0.0, 0.0], [0.0, ln3]])  # CE: log 2, log 4
    pids = torch.tensor([1, 0])
    # CE_img = log(2)/2, CE_txt = 3 log(2)/2, their mean is log 2.
    assert abs(id_loss(image_logits, text_logits, pids).item() - ln2) < 1e-6


def test_id_loss_matches_numpy_and_gradients_flow():
    gen = torch.Generator().manual_seed(1)
    image_logits = torch.randn(6, 9, generator=gen, requires_grad=True)
    text_logits = torch.randn(6, 9, generator=gen, requires_grad=True)
    pids = torch.tensor([0, 8, 3, 3, 5, 0])
    img_np, txt_np = image_logits.detach().numpy(), text_logits.detach().numpy()
    expected = np.mean(
        [(_ce_numpy(img_np[i], int(p)) + _ce_numpy(txt_np[i], int(p))) / 2 for i, p in enumerate(pids)]
    )
    loss = id_loss(image_logits, text_logits, pids)
    assert abs(loss.item() - expected) < 1e-6
    loss.backward()
    assert image_logits.grad.abs().sum() > 0 and text_logits.grad.abs().sum() > 0


def test_id_loss_rejects_pid_outside_classifier():
    with pytest.raises(ValueError, match="num_classes"):
        id_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 3]))


def test_id_loss_rejects_mismatched_logits():
    with pytest.raises(ValueError, match="shared classifier"):
        id_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.tensor([0, 1]))


# --------------------------------------------------------------------------- MLM


@pytest.fixture
def mlm_batch():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 6, 11, generator=gen)
    labels = torch.full((3, 6), -100)
    labels[0, 1], labels[0, 4], labels[1, 0], labels[2, 5], labels[2, 2] = 7, 0, 10, 3, 3
    return logits, labels


def _masked_ce_numpy(logits: torch.Tensor, labels: torch.Tensor) -> dict[tuple[int, int], float]:
    logits_np, labels_np = logits.detach().numpy(), labels.numpy()
    return {
        (b, t): _ce_numpy(logits_np[b, t], int(labels_np[b, t]))
        for b in range(labels_np.shape[0])
        for t in range(labels_np.shape[1])
        if labels_np[b, t] != -100
    }


def test_mlm_loss_is_mean_ce_over_masked_positions(mlm_batch):
    logits, labels = mlm_batch
    ce = _masked_ce_numpy(logits, labels)
    assert len(ce) == 5
    assert abs(mlm_loss(logits, labels).item() - np.mean(list(ce.values()))) < 1e-6


def test_mlm_loss_weighted_matches_numpy(mlm_batch):
    logits, labels = mlm_batch
    gen = torch.Generator().manual_seed(3)
    weights = torch.rand(3, 6, generator=gen) * 2
    ce = _masked_ce_numpy(logits, labels)
    w = {pos: float(weights[pos]) for pos in ce}
    expected = sum(w[pos] * ce[pos] for pos in ce) / sum(w.values())
    assert abs(mlm_loss(logits, labels, weights=weights).item() - expected) < 1e-6


def test_mlm_loss_all_ones_weights_equal_plain(mlm_batch):
    logits, labels = mlm_batch
    plain = mlm_loss(logits, labels)
    weighted = mlm_loss(logits, labels, weights=torch.ones(3, 6))
    assert abs(plain.item() - weighted.item()) < 1e-7


def test_mlm_loss_zero_weight_drops_that_position(mlm_batch):
    logits, labels = mlm_batch
    weights = torch.ones(3, 6)
    weights[2, 5] = 0.0
    without = labels.clone()
    without[2, 5] = -100
    assert abs(mlm_loss(logits, labels, weights=weights).item() - mlm_loss(logits, without).item()) < 1e-7


def test_mlm_loss_ignores_unmasked_logits(mlm_batch):
    logits, labels = mlm_batch
    scrambled = logits.clone()
    unmasked = labels == -100
    scrambled[unmasked] = torch.randn(int(unmasked.sum()), 11) * 100
    assert mlm_loss(scrambled, labels).item() == mlm_loss(logits, labels).item()


def test_mlm_loss_gradient_reaches_masked_positions_only(mlm_batch):
    logits, labels = mlm_batch
    logits.requires_grad_(True)
    mlm_loss(logits, labels).backward()
    grad_norm = logits.grad.abs().sum(dim=-1)  # (B, L)
    assert (grad_norm[labels == -100] == 0).all()
    assert (grad_norm[labels != -100] > 0).all()


def test_mlm_loss_without_masked_tokens_is_a_zero_with_graph():
    logits = torch.randn(2, 4, 5, requires_grad=True)
    labels = torch.full((2, 4), -100)
    for weights in (None, torch.ones(2, 4)):
        loss = mlm_loss(logits, labels, weights=weights)
        assert loss.item() == 0.0 and loss.requires_grad
        loss.backward()
        assert (logits.grad == 0).all()


def test_mlm_loss_custom_ignore_index():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[0, 2]])  # ignore position 0 by marking it with 0
    # Only position 1 counts: uniform logits over 3 tokens, CE = log 3.
    assert abs(mlm_loss(logits, labels, ignore_index=0).item() - math.log(3)) < 1e-6


def test_mlm_loss_rejects_bad_input(mlm_batch):
    logits, labels = mlm_batch
    with pytest.raises(ValueError, match=r"\(B, L, V\)"):
        mlm_loss(logits[0], labels)
    with pytest.raises(ValueError, match="weights must have the shape"):
        mlm_loss(logits, labels, weights=torch.ones(3, 5))
    with pytest.raises(ValueError, match="non-negative"):
        mlm_loss(logits, labels, weights=-torch.ones(3, 6))
    too_big = labels.clone()
    too_big[0, 0] = 11
    with pytest.raises(ValueError, match="vocabulary of 11"):
        mlm_loss(logits, too_big)


def test_masked_accuracy_by_hand():
    logits = torch.zeros(1, 4, 3)
    logits[0, 0, 2] = 1.0  # predicts 2, label 2: right
    logits[0, 1, 0] = 1.0  # predicts 0, label 1: wrong
    logits[0, 2, 1] = 1.0  # predicts 1, label 1: right
    logits[0, 3, 0] = 1.0  # unmasked, ignored
    labels = torch.tensor([[2, 1, 1, -100]])
    assert abs(masked_accuracy(logits, labels).item() - 2 / 3) < 1e-7
    assert masked_accuracy(logits, torch.full((1, 4), -100)).item() == 0.0


# --------------------------------------------------------------------------- FMLM (frequency-weighted MLM)

from tireid_lite.errors import ConfigError  # noqa: E402
from tireid_lite.losses.mlm import frequency_weights  # noqa: E402
from tireid_lite.text.corpus import corpus_token_counts  # noqa: E402
from tireid_lite.text.tokenizers import WordTokenizer  # noqa: E402


def test_frequency_weights_by_hand():
    # Counts of ids 0..3: id 0 never seen, so the median is over {4, 1, 16}: 4.
    # u = (f / 4) ** -0.5: id 1 -> 1, id 2 -> (1/4) ** -0.5 = 2, id 3 -> (16/4) ** -0.5 = 0.5.
    # Masked ids 1, 2, 3, 3: u = 1, 2, 0.5, 0.5, whose mean is already 1.
    counts = np.array([0, 4, 1, 16])
    labels = torch.tensor([[-100, 1, 2], [3, 3, -100]])
    weights = frequency_weights(labels, counts, alpha=0.5)
    assert torch.allclose(weights, torch.tensor([[0.0, 1.0, 2.0], [0.5, 0.5, 0.0]]))
    # Masked ids 1, 2 only: u = 1, 2 -> normalised to mean 1: 2/3, 4/3.
    weights = frequency_weights(torch.tensor([[1, 2, -100]]), counts, alpha=0.5)
    assert torch.allclose(weights, torch.tensor([[2 / 3, 4 / 3, 0.0]]))


def test_frequency_weights_clip_before_normalising():
    # Median of {1, 100, 10000} is 100. id 1: (1/100) ** -0.5 = 10 -> clipped to 5; id 2: 1;
    # id 3: (10000/100) ** -0.5 = 0.1 -> clipped to 0.2; id 0 (count 0): infinite -> 5.
    # u = 5, 1, 0.2, 5 (sum 11.2), times 4 / 11.2.
    counts = torch.tensor([0, 1, 100, 10_000])
    weights = frequency_weights(torch.tensor([[1, 2, 3, 0]]), counts, alpha=0.5, w_min=0.2, w_max=5.0)
    expected = torch.tensor([[5.0, 1.0, 0.2, 5.0]]) * 4 / 11.2
    assert torch.allclose(weights, expected)
    assert abs(weights.mean().item() - 1.0) < 1e-6


def test_frequency_weights_median_of_an_even_number_of_counts():
    # Seen counts {1, 3, 5, 100}: median (3 + 5) / 2 = 4. alpha = 1: id 2 -> 4/3, id 4 -> 4/100 = 0.04.
    counts = np.array([0, 1, 3, 5, 100])
    weights = frequency_weights(torch.tensor([[2, 4]]), counts, alpha=1.0, w_min=0.01)
    u = np.array([4 / 3, 0.04])
    assert np.allclose(weights.numpy(), [u * 2 / u.sum()], atol=1e-6)


def test_alpha_zero_gives_plain_mlm(mlm_batch):
    logits, labels = mlm_batch
    counts = torch.tensor([0, 3, 50, 7, 1, 1, 900, 2, 0, 12, 4])
    weights = frequency_weights(labels, counts, alpha=0.0)
    assert torch.equal(weights, (labels != -100).float())
    plain = mlm_loss(logits, labels)
    assert abs(mlm_loss(logits, labels, weights=weights).item() - plain.item()) < 1e-7


def test_fmlm_loss_matches_numpy(mlm_batch):
    logits, labels = mlm_batch  # masked ids 7, 0, 10, 3, 3
    counts = np.array([2, 5, 5, 8, 5, 5, 5, 32, 5, 5, 0])
    # Seen counts: 2, 8, 32 and seven 5s -> median 5. alpha 0.5, clip [0.1, 10]:
    # id 7 -> (32/5) ** -0.5, id 0 -> (2/5) ** -0.5, id 10 (unseen) -> 10, id 3 -> (8/5) ** -0.5.
    u = {7: (32 / 5) ** -0.5, 0: (2 / 5) ** -0.5, 10: 10.0, 3: (8 / 5) ** -0.5}
    ce = _masked_ce_numpy(logits, labels)
    w = {pos: u[int(labels[pos])] for pos in ce}
    expected = sum(w[pos] * ce[pos] for pos in ce) / sum(w.values())
    assert abs(mlm_loss(logits, labels, weights=frequency_weights(labels, counts, alpha=0.5)).item() - expected) < 1e-6
    logits.requires_grad_(True)
    mlm_loss(logits, labels, weights=frequency_weights(labels, counts)).backward()
    assert (logits.grad.abs().sum(dim=-1)[labels == -100] == 0).all()


def test_frequency_weights_without_masked_positions_are_zero():
    weights = frequency_weights(torch.full((2, 3), -100), np.array([1, 2, 3]))
    assert weights.shape == (2, 3) and (weights == 0).all()


def test_frequency_weights_reject_bad_input():
    labels = torch.tensor([[1, -100]])
    counts = np.array([1, 2, 3])
    with pytest.raises(ConfigError, match="alpha=-0.5"):
        frequency_weights(labels, counts, alpha=-0.5)
    with pytest.raises(ConfigError, match=r"clip range \[2.0, 10.0\]"):
        frequency_weights(labels, counts, w_min=2.0)
    with pytest.raises(ValueError, match="covers 3 ids"):
        frequency_weights(torch.tensor([[5]]), counts)
    with pytest.raises(ValueError, match="all zero"):
        frequency_weights(labels, np.zeros(3))
    with pytest.raises(ValueError, match="non-negative counts"):
        frequency_weights(labels, np.array([1, -2, 3]))
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        frequency_weights(torch.tensor([1, 2]), counts)


class _ListTokenizer:
    """Encodes a caption as the ids written in it: "3 3 5" -> [SOT=0, 3, 3, 5, EOT=1]."""

    vocab_size = 7

    def encode_batch(self, texts):
        return [[0, *map(int, text.split()), 1] for text in texts]


def test_corpus_token_counts_by_hand():
    counts = corpus_token_counts(_ListTokenizer(), ["3 3 5", "2 3", "6"], chunk=2)
    assert counts.tolist() == [0, 0, 1, 3, 0, 1, 1]  # start/end tokens not counted
    with pytest.raises(ConfigError, match="keeps no word counts"):
        corpus_token_counts(_ListTokenizer())


def test_corpus_token_counts_equal_the_word_tokenizers_own():
    captions = ["A man in a red coat.", "a woman in a red dress", "The man carries a bag.", "A red bag"]
    tok = WordTokenizer.train(captions, min_freq=2)  # rare words go to [UNK], counted there
    assert np.array_equal(corpus_token_counts(tok, captions), tok.word_counts)
    own = corpus_token_counts(tok)
    assert np.array_equal(own, tok.word_counts) and own is not tok.word_counts
