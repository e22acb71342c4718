"""Models: the two towers, the heads of each method, the scorer and ``TIReIDModel`` (taught in ``02_baseline_irra``)."""

from tireid_lite.models.head import Head
from tireid_lite.models.methods import METHODS, method_needs
from tireid_lite.models.tireid import TIReIDModel, build_model

__all__ = ["METHODS", "Head", "TIReIDModel", "build_model", "method_needs"]
