"""One record type for every dataset reader (CUHK-PEDES, ICFG-PEDES, RSTPReid, SynthPEDES).

The conventions follow IRRA's protocol (taught in ``01_data``):

* train: one item per caption (a :class:`TrainPair`), identities remapped to
  ``0..N-1`` in increasing order of the original id;
* val / test: a gallery of every image of the split and a query set of every
  caption of the split (an :class:`EvalSet`); a query matches every gallery
  image of the same identity. Identities keep their original ids here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset with its captions, as read from the annotation file."""

    path: str  # relative to the dataset's image directory, exactly as in the file
    pid: int  # identity as in the annotation file
    captions: tuple[str, ...]
    split: str  # one of SPLITS


@dataclass(frozen=True)
class TrainPair:
    """One training item: an image and one of its captions."""

    index: int  # position in the list of training pairs
    pid: int  # remapped identity, 0..N-1
    image_id: int  # position of the image among the split's images
    path: str
    caption: str


@dataclass(frozen=True)
class EvalSet:
    """A retrieval split: gallery images and text queries."""

    gallery_paths: list[str]
    gallery_pids: list[int]
    query_captions: list[str]
    query_pids: list[int]
    query_image_ids: list[int]  # index into gallery_paths of the image each caption was written for


@dataclass
class PedesDataset:
    """All images of one dataset, grouped by split, plus where the images live."""

    name: str
    root: Path
    image_dir: Path
    records: list[ImageRecord] = field(default_factory=list)

    def split(self, name: str) -> list[ImageRecord]:
        """The images of one split, in file order."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return [r for r in self.records if r.split == name]

    def has_split(self, name: str) -> bool:
        return any(r.split == name for r in self.records)

    def train_pairs(self, identities: int = 0) -> list[TrainPair]:
        """One :class:`TrainPair` per training caption, identities remapped to 0..N-1.

        ``identities=N`` keeps the images of the first N training identities (in
        identity order) only; 0 keeps them all.
        """
        images = self.split("train")
        pids = sorted({r.pid for r in images})
        if isinstance(identities, bool) or not isinstance(identities, int) or identities < 0:
            raise ValueError(f"identities={identities!r} is invalid; use 0 (all) or a positive number")
        if identities > len(pids):
            raise ValueError(
                f"{self.name} (root {self.root}) has {len(pids)} training identities, fewer than the "
                f"{identities} asked for; use 0 (all) or at most {len(pids)}"
            )
        if identities:
            pids = pids[:identities]
            images = [r for r in images if r.pid <= pids[-1]]
        pid_map = {pid: i for i, pid in enumerate(pids)}
        pairs: list[TrainPair] = []
        for image_id, rec in enumerate(images):
            for caption in rec.captions:
                pairs.append(TrainPair(len(pairs), pid_map[rec.pid], image_id, rec.path, caption))
        return pairs

    def eval_set(self, split: str = "test") -> EvalSet:
        """Gallery (every image of ``split``) and queries (every caption of ``split``)."""
        images = self.split(split)
        if not images:
            raise ValueError(f"{self.name} has no {split!r} split")
        queries, q_pids, q_img = [], [], []
        for image_id, rec in enumerate(images):
            for caption in rec.captions:
                queries.append(caption)
                q_pids.append(rec.pid)
                q_img.append(image_id)
        return EvalSet(
            gallery_paths=[r.path for r in images],
            gallery_pids=[r.pid for r in images],
            query_captions=queries,
            query_pids=q_pids,
            query_image_ids=q_img,
        )

    def image_path(self, rel: str) -> Path:
        return self.image_dir / rel
