"""Models: the two towers, the cross-modal module and ``TIReIDModel`` (taught in ``02_baseline_irra``)."""

from tireid_lite.models.tireid import METHOD_HEADS, TIReIDModel, build_model

__all__ = ["METHOD_HEADS", "TIReIDModel", "build_model"]
