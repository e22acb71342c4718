"""The identity (ID) loss: both modalities classified by one shared identity classifier.

Taught in ``02_baseline_irra``. The classifier (a linear layer over the
training identities) lives in the model; this function takes its logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def id_loss(image_logits: Tensor, text_logits: Tensor, pids: Tensor) -> Tensor:
    r"""ID loss (instance loss, used by IRRA): the mean of the two modalities' cross-entropies.

    ``image_logits`` and ``text_logits`` are (B, C): one shared linear
    classifier W over the C training identities applied to the image and to
    the text global features; ``pids`` (B,) holds identities in 0..C-1::

        CE_img = -mean_i log softmax(W v_i)[pid_i]
        CE_txt = -mean_i log softmax(W t_i)[pid_i]
        L_id = (CE_img + CE_txt) / 2

    Sharing W pulls both modalities of one identity towards the same class
    prototype. Same definition as IRRA's. Taught in ``02_baseline_irra``.
    """
    if image_logits.dim() != 2 or image_logits.shape != text_logits.shape:
        raise ValueError(
            f"image_logits {tuple(image_logits.shape)} and text_logits {tuple(text_logits.shape)} "
            "must both be (B, C) logits of the same shared classifier"
        )
    batch, num_classes = image_logits.shape
    if pids.shape != (batch,):
        raise ValueError(f"pids must have shape ({batch},), one identity per pair, got {tuple(pids.shape)}")
    if not torch.compiler.is_compiling() and pids.numel() and bool(((pids < 0) | (pids >= num_classes)).any()):
        raise ValueError(
            f"pids range from {int(pids.min())} to {int(pids.max())} but the classifier has "
            f"{num_classes} classes; build it with num_classes = the number of training identities "
            "and pass the remapped pids 0..N-1"
        )
    ce_image = F.cross_entropy(image_logits, pids)
    ce_text = F.cross_entropy(text_logits, pids)
    return (ce_image + ce_text) / 2
