"""Learning-rate schedule: linear warm-up, then a cosine decay, stepped once per optimiser step.

IRRA warms up linearly from 0.1 x lr over its first 5 epochs and then follows a
cosine down to 0 over the remaining epochs. Here the same shape is applied per
optimiser step rather than per epoch, so short runs (a few epochs on the cpu
profile) get a smooth curve too. With ``W`` warm-up steps, ``T`` steps in all,
start factor ``s`` and floor ``f``, the factor multiplying each group's lr at
step ``t`` (0-based, the step about to be taken) is::

    t <  W:  s + (1 - s) * t / W
    t >= W:  f + (1 - f) * (1 + cos(pi * (t - W) / (T - W))) / 2

so step ``W`` runs at the full lr and step ``T`` (one past the last) reaches the
floor. Taught in ``02_baseline_irra``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


from tireid_lite.errors import ConfigError


@dataclass
class WarmupCosine:
    """The schedule's factor as a function of the step; an object so ``LambdaLR`` can save it."""

    total_steps: int
    warmup_steps: int
    start_factor: float = 0.1
    floor: float = 0.0

    def __post_init__(self) -> None:
        if self.total_steps < 1:
            raise ConfigError(f"the schedule needs at least one step, got total_steps={self.total_steps}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ConfigError(
                f"warm-up of {self.warmup_steps} steps does not fit in {self.total_steps} steps; "
                "lower train.warmup_epochs"
            )
        if not 0.0 <= self.start_factor <= 1.0:
            raise ConfigError(f"start_factor={self.start_factor} must lie in [0, 1]")
        if not 0.0 <= self.floor <= 1.0:
            raise ConfigError(f"floor={self.floor} must lie in [0, 1]")

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.start_factor + (1.0 - self.start_factor) * step / self.warmup_steps
        decay_steps = self.total_steps - self.warmup_steps
        if decay_steps == 0:
            return 1.0
        progress = min(step - self.warmup_steps, decay_steps) / decay_steps
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
