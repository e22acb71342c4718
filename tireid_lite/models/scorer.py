"""Scoring: the embeddings a model offers combined into one similarity, and an optional second stage.

A model's retrieval features are its embeddings side by side: the global one
first, then one per head that adds an embedding (RDE's and KPDM's
token-selection embedding, later part embeddings), each a *view* of width D.
The :class:`Scorer` knows the views and combines them::

    sim(q, g) = sum_v w_v cos(t_v(q), i_v(g)) / sum_v w_v          (Q, G)

With one view this is the plain cosine similarity of IRRA; with the global
view and the TSE at weight 1 each it is RDE's (S_bge + S_tse) / 2.

The second stage (:func:`rerank_top_k`) takes each query's top k by that
similarity and orders them again by a head's :meth:`~tireid_lite.models.head.Head.rerank`
scores (CADA's image-text matching); the rest of the gallery keeps its
first-stage order below them. It returns an order-preserving score matrix,
so the metrics are computed on the final order. Taught in
``02_baseline_irra`` (the scorer) and ``07_cada_dual_association`` (re-ranking).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from tireid_lite.errors import ConfigError


@dataclass(frozen=True)
class View:
    """One embedding of the retrieval features: its name, width and weight in the similarity."""

    name: str
    dim: int
    weight: float = 1.0


class Scorer:
    """Combine the views of retrieval features into one similarity (see the module docstring)."""

    def __init__(self, views: list[View]) -> None:
        if not views:
            raise ValueError("a scorer needs at least one view (the global embedding)")
        names = [view.name for view in views]
        if len(set(names)) != len(names):
            raise ValueError(f"view names must be distinct, got {names}")
        if any(view.weight < 0 for view in views) or sum(view.weight for view in views) <= 0:
            raise ValueError(f"view weights must be non-negative with a positive sum, got {views}")
        self.views = list(views)

    @property
    def dim(self) -> int:
        """The width of the retrieval features: the views' widths added up."""
        return sum(view.dim for view in self.views)

    def split(self, feats: Tensor) -> dict[str, Tensor]:
        """Features (N, F) as ``{view name: (N, D_v)}``, in view order (one view: the features whole)."""
        if len(self.views) == 1:
            return {self.views[0].name: feats}
        if feats.shape[-1] != self.dim:
            raise ValueError(
                f"features of width {feats.shape[-1]} do not match the scorer's views "
                f"({', '.join(f'{v.name} {v.dim}' for v in self.views)}: {self.dim} in all)"
            )
        parts = torch.split(feats, [view.dim for view in self.views], dim=-1)
        return {view.name: part for view, part in zip(self.views, parts)}

    def view_similarities(self, text_feats: Tensor, image_feats: Tensor) -> dict[str, Tensor]:
        """The cosine similarity (Q, G) of every query and gallery item in each view."""
        texts, images = self.split(text_feats.float()), self.split(image_feats.float())
        return {name: F.normalize(texts[name], dim=-1) @ F.normalize(images[name], dim=-1).t() for name in texts}

    def similarity(self, text_feats: Tensor, image_feats: Tensor) -> Tensor:
        """The weighted mean of the views' cosine similarities: (Q, G)."""
        sims = self.view_similarities(text_feats, image_feats)
        if len(self.views) == 1:
            return sims[self.views[0].name]
        total = sum(view.weight * sims[view.name] for view in self.views)
        return total / sum(view.weight for view in self.views)


def order_scores(order: Tensor) -> Tensor:
    """Scores (Q, G) that rank each row's gallery items in ``order`` (Q, G): the first gets G, the last 1."""
    num = order.shape[1]
    ranks = torch.arange(num, 0, -1, dtype=torch.float32, device=order.device).expand_as(order)  # (Q, G)
    return torch.empty(order.shape, dtype=torch.float32, device=order.device).scatter_(1, order, ranks)


def rerank_top_k(sim: Tensor, k: int, score_fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Re-rank each query's top ``k`` gallery items by ``score_fn``; the rest keep their order below.

    ``sim`` (Q, G) is the first stage's similarity; ``score_fn(candidates,
    scores)`` receives the top-k gallery indices (Q, k), best first, with
    their similarities (Q, k) and returns new scores (Q, k), higher first
    (ties keep the first stage's order). Returns scores (Q, G) whose order
    per row is the final ranking (see :func:`order_scores`), for
    :func:`~tireid_lite.eval.metrics.retrieval_metrics`.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"rerank k={k!r} must be a positive number of gallery items (CADA uses 32)")
    num_gallery = sim.shape[1]
    k = min(k, num_gallery)
    order = torch.sort(sim, dim=1, descending=True, stable=True).indices  # (Q, G) first-stage order
    candidates, rest = order[:, :k], order[:, k:]  # (Q, k), (Q, G - k)
    new = score_fn(candidates, sim.gather(1, candidates))
    if new.shape != candidates.shape:
        raise ValueError(f"a re-ranker must return scores of shape {tuple(candidates.shape)}, got {tuple(new.shape)}")
    within = torch.sort(new.float(), dim=1, descending=True, stable=True).indices  # (Q, k)
    final = torch.cat([candidates.gather(1, within), rest], dim=1)  # (Q, G)
    return order_scores(final)
