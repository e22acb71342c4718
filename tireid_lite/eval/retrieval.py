"""Text-to-image retrieval evaluation: features of the gallery and the queries, scores, metrics.

The protocol is IRRA's: every caption of a split is a query, every image of the
split is in the gallery, and a gallery image matches a query when it shows the
same identity. The model encodes both sides (``encode_images``,
``encode_texts``), scores every query against every image (``similarity``,
``(Q, G)``, its scorer), optionally re-ranks each query's top k with its
second stage (``rerank_k``, :func:`rerank`), and
:func:`~tireid_lite.eval.metrics.retrieval_metrics` turns the final order
into R@1/5/10, mAP and mINP. Under ``torchrun`` each process encodes a
contiguous share of each set and the shares are gathered, so every process ends
with the same metrics. Taught in ``02_baseline_irra``.
"""

from __future__ import annotations

import contextlib
from typing import Literal, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from tireid_lite.eval.metrics import retrieval_metrics
from tireid_lite.progress import progress
from tireid_lite.distributed import all_gather_cat, rank, shard_range, world_size
from tireid_lite.errors import ConfigError
from tireid_lite.heap import release_freed_memory
from tireid_lite.models.head import RerankInputs
from tireid_lite.models.scorer import rerank_top_k

FeatureKind = Literal["images", "texts"]


class EvalData(Protocol):
    """What :func:`evaluate` needs from the data: gallery and query sets per split, each with ``pids``."""

    def gallery(self, split: str) -> Dataset: ...

    def queries(self, split: str) -> Dataset: ...


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def extract_features(
    model: nn.Module,
    loader: DataLoader,
    kind: FeatureKind,
    *,
    device: str | torch.device = "cpu",
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Global features of every item of ``loader``, in order: ``(N, D)`` float32 on ``device``.

    ``kind="images"`` reads ``batch["images"]`` through ``model.encode_images``;
    ``kind="texts"`` reads ``batch["caption_ids"]`` through ``model.encode_texts``.
    """
    if kind not in ("images", "texts"):
        raise ValueError(f"kind must be 'images' or 'texts', got {kind!r}")
    device = torch.device(device)
    key, encode = ("images", model.encode_images) if kind == "images" else ("caption_ids", model.encode_texts)
    feats = []
    with torch.inference_mode(), _autocast(device, amp_dtype):
        for batch in progress(loader, desc=f"{kind} features", total=len(loader)):
            feats.append(encode(batch[key].to(device, non_blocking=True)).float())  # (B, D)
    if not feats:
        raise ValueError(f"the {kind} loader yielded no batches; the split is empty")
    return torch.cat(feats)  # (N, D)


def _sharded_loader(dataset: Dataset, batch_size: int, num_workers: int, pin_memory: bool) -> DataLoader:
    if len(dataset) < world_size():
        raise ValueError(
            f"cannot share {len(dataset)} items among {world_size()} processes; evaluate with fewer processes"
        )
    share = Subset(dataset, shard_range(len(dataset), rank(), world_size()))
    return DataLoader(share, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=pin_memory)


def evaluate(
    model: nn.Module,
    data: EvalData,
    split: str = "test",
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    *,
    amp_dtype: torch.dtype | None = None,
    num_workers: int = 0,
    rerank_k: int = 0,
) -> dict[str, float]:
    """R1, R5, R10, mAP and mINP (percent) of ``model`` on ``split`` of ``data``.

    ``rerank_k > 0`` re-orders each query's top ``rerank_k`` gallery images
    with the model's second stage (:func:`rerank`); the metrics are computed on
    the final order. The model is put in eval mode for the duration and given
    back in the mode it was in. Under ``torchrun`` every process must call this
    (the features are gathered).
    """
    sim, q_pids, g_pids = score_split(model, data, split, batch_size, device, amp_dtype=amp_dtype,
                                      num_workers=num_workers, rerank_k=rerank_k)
    return retrieval_metrics(sim, q_pids, g_pids)


def score_split(
    model: nn.Module,
    data: EvalData,
    split: str = "test",
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    *,
    amp_dtype: torch.dtype | None = None,
    num_workers: int = 0,
    rerank_k: int = 0,
) -> tuple[torch.Tensor, object, object]:
    """The final scores (Q, G) of ``split`` (after re-ranking when ``rerank_k > 0``) with the queries' and
    the gallery's identities: what :func:`evaluate` reduces to metrics, and what per-query metrics and
    paired comparisons read (:func:`~tireid_lite.eval.metrics.per_query_metrics`)."""
    device = torch.device(device)
    gallery, queries = data.gallery(split), data.queries(split)
    pin = device.type == "cuda"
    was_training = model.training
    model.eval()
    try:
        image_feats = extract_features(
            model, _sharded_loader(gallery, batch_size, num_workers, pin), "images", device=device, amp_dtype=amp_dtype
        )
        text_feats = extract_features(
            model, _sharded_loader(queries, batch_size, num_workers, pin), "texts", device=device, amp_dtype=amp_dtype
        )
        image_feats = all_gather_cat(image_feats)  # (G, D)
        text_feats = all_gather_cat(text_feats)  # (Q, D)
        with torch.inference_mode():
            sim = model.similarity(text_feats, image_feats)  # (Q, G)
            if rerank_k:
                sim = rerank(model, sim, rerank_k, queries, gallery, text_feats, image_feats, device=device)
    finally:
        model.train(was_training)
        release_freed_memory()  # the features and re-ranking buffers freed above: back to the system
    return sim, queries.pids, gallery.pids


def rerank(
    model: nn.Module,
    sim: torch.Tensor,
    k: int,
    queries: Dataset,
    gallery: Dataset,
    text_feats: torch.Tensor,
    image_feats: torch.Tensor,
    *,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """The second stage: each query's top ``k`` by ``sim`` (Q, G) re-ordered by the model's re-ranking
    head, the rest of the gallery below in its first-stage order. Returns order scores (Q, G)
    (see :func:`~tireid_lite.models.scorer.rerank_top_k`). Taught in ``07_cada_dual_association``."""
    head = getattr(model, "reranker", None)
    if head is None:
        raise ConfigError(
            f"model.method {getattr(model, 'method', '?')!r} has no second retrieval stage; evaluate without "
            "--rerank-k (rerank_k=0)"
        )
    device = torch.device(device)
    query_ids = torch.stack([queries[i]["caption_ids"] for i in range(len(queries))]).to(device)  # (Q, L)

    def load_images(index: torch.Tensor) -> torch.Tensor:
        return torch.stack([gallery[int(i)]["images"] for i in index.tolist()]).to(device)  # (n, 3, H, W)

    def score(candidates: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        inputs = RerankInputs(query_ids=query_ids, text_feats=text_feats, image_feats=image_feats,
                              candidates=candidates, scores=scores, load_images=load_images)
        return head.rerank(model, inputs)

    return rerank_top_k(sim, k, score)
