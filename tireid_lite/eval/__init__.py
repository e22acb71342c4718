"""Evaluation: IRRA's retrieval metrics (taught in ``01_data``) and feature extraction."""

from tireid_lite.eval.metrics import match_ranks, rank_gallery, retrieval_metrics

__all__ = ["match_ranks", "rank_gallery", "retrieval_metrics"]
