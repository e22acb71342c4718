"""``train.compile``: the training forward through ``torch.compile``.

The model, its parameters, its checkpoints and its evaluation stay the eager module;
only the Trainer's step calls the compiled forward. Inside the compiled graph the
model avoids what would break it into pieces (:func:`torch.compiler.is_compiling`):

* the text tower's token-range check, which reads values, is left to eager calls;
* the text tower runs over the full caption length instead of trimming the columns
  that are padding in every row (a data-dependent shape);
* the masked-language loss weighs every position (0 where not masked) instead of
  selecting the masked ones (``nonzero``), and its prediction head scores every
  position instead of the masked ones only;
* the cross-modal module runs over every caption column instead of computing the
  all-zero columns past the longest caption once.

Each gives the same result up to float rounding, so a compiled run follows its eager
twin closely but not bit for bit; that is why ``train.compile`` is a config key that a
resumed run must keep. Measured on the cpu profile: ``benchmarks/bench_step_utilisation.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def compiled_forward(model: nn.Module) -> Callable[..., dict[str, torch.Tensor]]:
    """``model``'s forward compiled once for the fixed batch shape of training (``dynamic=False``)."""
    return torch.compile(model, dynamic=False)
