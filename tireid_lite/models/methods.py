"""The methods of the course, one row each: which heads make the method.

A method is the two towers plus the heads of its row, built in row order (a
later head may share a module an earlier one made, see
:class:`~tireid_lite.models.head.HeadContext`). Adding a paper is one module
with its heads and one row here. What a method needs from the data or the
run is asked of its heads (:func:`method_needs`), never tested by its name.

=========  ==================================================================
baseline   SDM + ID (IRRA without relation reasoning)
irra       + masked words through the cross-modal module (IRRA)
bilma      + masked patches predicted from the caption (BiLMa's SemMIM)
kpdm       ID + RDE's TAL on global and token-selection embeddings + masked
           words over the kept patches with FMLM (KPDM, the kit's reading)
cada       ID + CADA's global loss + ATP (association decoder, ITM with hard
           negatives, local ITM, top-k re-ranking) + ARA (masked attributes)
partlevel  SDM + ID + K part queries with the commonality-based margin ranking
           loss (Park et al., the kit's reading)
=========  ==================================================================

Taught in ``02_baseline_irra``.
"""

from __future__ import annotations

from tireid_lite.config import Config
from tireid_lite.errors import ConfigError
from tireid_lite.models.bilma import MaskedImageHead
from tireid_lite.models.cada import AssociationHead, AttributeHead, CADAGlobalHead
from tireid_lite.models.head import Head
from tireid_lite.models.irra import IdentityHead, MaskedLanguageHead, SDMHead
from tireid_lite.models.kpdm import AlignmentHead, KPDMLanguageHead
from tireid_lite.models.partlevel import PartHead

METHODS: dict[str, tuple[type[Head], ...]] = {
    "baseline": (SDMHead, IdentityHead),
    "irra": (SDMHead, IdentityHead, MaskedLanguageHead),
    "bilma": (SDMHead, IdentityHead, MaskedLanguageHead, MaskedImageHead),
    "kpdm": (IdentityHead, AlignmentHead, KPDMLanguageHead),
    "cada": (CADAGlobalHead, IdentityHead, AssociationHead, AttributeHead),
    "partlevel": (SDMHead, IdentityHead, PartHead),
}


def method_heads(method: str) -> tuple[type[Head], ...]:
    """The head classes of ``method``'s row; one clear error for a method the table lacks."""
    row = METHODS.get(method)
    if row is None:
        raise ConfigError(f"config key 'model.method' is {method!r}; it must be one of {', '.join(METHODS)}")
    return row


def method_needs(cfg: Config) -> frozenset[str]:
    """Everything the heads of ``cfg.model.method`` need for ``cfg`` (``NEEDS_*`` names of
    :mod:`tireid_lite.models.head`), decided without building the model."""
    return frozenset().union(*(head.needs(cfg) for head in method_heads(cfg.model.method)))
