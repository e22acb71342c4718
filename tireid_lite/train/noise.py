"""Noise partitioning between epochs: a procedure the Trainer runs, whose per-pair weights the losses read.

With ``train.partitioner`` ccd (RDE) or tcp (KPDM, the kit's reading), at the
start of every epoch after ``train.partition_warmup_epochs``:

1. every training pair is encoded as for evaluation (test transform, no flip,
   no mask, eval mode; :func:`pair_features`), each distinct image once;
2. the model's scorer splits the features into views (the global embedding
   and the token-selection one; with one view it is used twice);
3. CCD reads each pair's TAL in each view over consecutive batches of
   ``train.batch_size`` pairs in index order (:func:`view_losses`, as RDE does
   over its training set), TCP each pair's cosine similarity in each view
   (:func:`view_similarities`);
4. the partition's weights (1 clean, 0 noisy, 1/2 uncertain) go to the
   Trainer, which puts each pair's weight in ``batch["pair_weights"]``; the
   heads that read it (:data:`~tireid_lite.models.head.NEEDS_PAIR_WEIGHTS`)
   scale their losses by it.

Resume: the weights are not stored in checkpoints. The partition of epoch e
is a deterministic function of the model at the end of epoch e - 1, which
``last.pt`` holds, so a resumed run recomputes exactly the weights the
uninterrupted run used. Detection precision, recall and F1 against the
injected ground truth and the clean / noisy / uncertain counts go to the
epoch's record in ``metrics.json``. Taught in ``05_kpdm_trusted_consensus``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from tireid_lite.config import Config
from tireid_lite.data.torch_data import image_pixels
from tireid_lite.data.transforms import build_transforms
from tireid_lite.errors import ConfigError
from tireid_lite.eval.retrieval import extract_features
from tireid_lite.losses.tal import tal_loss
from tireid_lite.train.ccd import ccd_partition
from tireid_lite.train.partition import Partition, detection_scores
from tireid_lite.train.tcp import tcp_partition

PARTITIONERS = ("none", "ccd", "tcp")


class _TrainImages(Dataset):
    """The distinct training images, test-time transform (no flip, no crop)."""

    def __init__(self, dataset: Any, paths: list[str], transform: Any, *, shared: bool = False) -> None:
        self.dataset, self.paths, self.transform, self.shared = dataset, paths, transform, shared

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        path = self.dataset.image_path(self.paths[index])
        return {"images": image_pixels(path, self.transform, shared=self.shared)}  # (3, H, W)


class _CaptionIds(Dataset):
    def __init__(self, ids: Tensor) -> None:
        self.ids = ids  # (N, L)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"caption_ids": self.ids[index]}


def pair_features(
    model: nn.Module,
    train_set: Any,
    image_size: tuple[int, int],
    *,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    amp_dtype: torch.dtype | None = None,
    num_workers: int = 0,
) -> tuple[Tensor, Tensor]:
    """Retrieval features of every training pair's own image and caption, in pair order: (N, F) each.

    Encoded as for evaluation (``model.encode_images`` / ``encode_texts``,
    test transform, no flip, no mask, eval mode); each distinct image once.
    The global random generators are left as they were.
    """
    pairs = train_set.pairs
    rows: dict[str, int] = {}
    image_row = np.array([rows.setdefault(pair.path, len(rows)) for pair in pairs], dtype=np.int64)  # (N,)
    transform = build_transforms(image_size, train=False)
    # images kept in memory for training (cache_images) are also kept as the partition encodes them
    images = _TrainImages(train_set.dataset, list(rows), transform,
                          shared=getattr(train_set, "_image_cache", None) is not None)
    ids = train_set.tokenizer([pair.caption for pair in pairs])  # (N, L)
    loader_args = dict(batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            image_feats = extract_features(model, DataLoader(images, **loader_args), "images",
                                           device=device, amp_dtype=amp_dtype)  # (U, F)
            text_feats = extract_features(model, DataLoader(_CaptionIds(ids), **loader_args), "texts",
                                          device=device, amp_dtype=amp_dtype)  # (N, F)
    finally:
        model.train(was_training)
    return image_feats[torch.from_numpy(image_row).to(image_feats.device)], text_feats  # (N, F) each


def two_views(model: nn.Module, feats: Tensor) -> tuple[Tensor, Tensor]:
    """The first two views of retrieval features (N, F) by the model's scorer (global, token selection);
    a model with one view gives it twice."""
    views = list(model.scorer.split(feats).values())
    return (views[0], views[0]) if len(views) == 1 else (views[0], views[1])


def per_pair_tal(
    image_feats: Tensor, text_feats: Tensor, pids: Tensor, batch_size: int, margin: float, tau: float
) -> Tensor:
    """Each pair's TAL (N,) within consecutive batches of ``batch_size`` pairs (the last may be smaller)."""
    losses = [
        tal_loss(image_feats[start : start + batch_size], text_feats[start : start + batch_size],
                 pids[start : start + batch_size], margin, tau, reduction="none")
        for start in range(0, len(pids), batch_size)
    ]
    return torch.cat(losses)  # (N,)


def view_similarities(model: nn.Module, image_feats: Tensor, text_feats: Tensor) -> list[np.ndarray]:
    """Cosine similarity of each pair's own image and caption in each view (global, TSE): two (N,) arrays.

    ``image_feats`` and ``text_feats`` (N, F) as :func:`pair_features` returns them;
    what TCP reads.
    """
    views = zip(two_views(model, image_feats), two_views(model, text_feats))
    return [(F.normalize(img, dim=-1) * F.normalize(txt, dim=-1)).sum(-1).cpu().numpy() for img, txt in views]


def view_losses(
    model: nn.Module, image_feats: Tensor, text_feats: Tensor, pids: np.ndarray, batch_size: int,
    margin: float, tau: float,
) -> list[np.ndarray]:
    """Each pair's TAL in each view, over consecutive batches of ``batch_size`` pairs: two (N,) arrays
    (CCD's input; ``margin`` and ``tau`` are TAL's, ``model.kpdm.tal_margin`` and ``tal_tau``)."""
    pid_tensor = torch.as_tensor(np.asarray(pids)).to(image_feats.device)
    views = zip(two_views(model, image_feats), two_views(model, text_feats))
    return [per_pair_tal(img, txt, pid_tensor, batch_size, margin, tau).cpu().numpy() for img, txt in views]


class NoisePartitioner:
    """The procedure between epochs (see the module docstring): ``before_epoch`` returns the
    per-pair weights (by pair index; ``None`` = all 1) and the figures for the epoch's record."""

    def __init__(self, cfg: Config) -> None:
        self.method = cfg.train.partitioner
        if self.method not in PARTITIONERS:
            raise ConfigError(f"config key 'train.partitioner' is {self.method!r}; use none, ccd or tcp")
        self.warmup_epochs = int(cfg.train.partition_warmup_epochs)
        self.seed = int(cfg.train.seed)
        self.batch_size = int(cfg.train.batch_size)
        self.margin, self.tau = cfg.model.kpdm.tal_margin, cfg.model.kpdm.tal_tau
        self.num_workers = cfg.data.num_workers

    def active(self, epoch: int) -> bool:
        """Whether the partitioner acts at the start of ``epoch`` (1-based): after the warm-up epochs."""
        return self.method != "none" and epoch > self.warmup_epochs

    def partition(self, model: nn.Module, data: Any, *, device: Any = "cpu", amp_dtype: Any = None) -> Partition:
        """Partition every training pair of ``data`` with the current ``model``."""
        train_set = data.train_set
        image_feats, text_feats = pair_features(
            model, train_set, data.image_size, batch_size=2 * self.batch_size, device=device, amp_dtype=amp_dtype,
            num_workers=self.num_workers,
        )
        pids = np.asarray(train_set.pids)
        if self.method == "tcp":
            sims = view_similarities(model, image_feats, text_feats)
            return tcp_partition(sims[0], sims[1], pids)
        losses = view_losses(model, image_feats, text_feats, pids, self.batch_size, self.margin, self.tau)
        return ccd_partition(losses[0], losses[1], seed=self.seed)

    def before_epoch(
        self, epoch: int, model: nn.Module, data: Any, *, device: Any = "cpu", amp_dtype: Any = None
    ) -> tuple[Tensor | None, dict[str, float | int]]:
        """The pair weights for ``epoch`` (``None`` before and without partitioning) and the epoch's figures."""
        if not self.active(epoch):
            return None, {}
        train_set = data.train_set
        partition = self.partition(model, data, device=device, amp_dtype=amp_dtype)
        weights = torch.ones(len(train_set.pairs), dtype=torch.float32)  # (N,) by pair index
        index = torch.tensor([pair.index for pair in train_set.pairs], dtype=torch.long)
        weights[index] = torch.from_numpy(partition.weights)
        scores = detection_scores(partition, np.asarray(train_set.noisy, dtype=bool))
        counts = partition.counts()
        stats = {
            "partition_precision": scores["precision"],
            "partition_recall": scores["recall"],
            "partition_f1": scores["f1"],
            "partition_clean": counts["clean"],
            "partition_noisy": counts["noisy"],
            "partition_uncertain": counts["uncertain"],
            "partition_true_noisy": scores["noisy"],  # the injected truth: what a random flagger is compared on
        }
        return weights.to(device), stats

    def describe(self, epoch: int, stats: dict[str, float | int]) -> str:
        """One line for the log: the epoch's counts and detection scores."""
        return (
            f"epoch {epoch} partition ({self.method}): clean {stats['partition_clean']}, "
            f"noisy {stats['partition_noisy']}, uncertain {stats['partition_uncertain']}; detection "
            f"P {stats['partition_precision']:.3f} R {stats['partition_recall']:.3f} F1 {stats['partition_f1']:.3f}"
        )
