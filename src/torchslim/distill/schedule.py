"""Values that follow training progress: loss weights and temperatures ("adaptive" distillation).

A schedule is a pure function of progress ``t`` in [0, 1] (the fraction of training steps done),
so a resumed run sees the same values as an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torchslim.core.errors import TorchSlimError
from torchslim.core.registry import did_you_mean

KINDS = ("constant", "linear", "cosine", "step")


@dataclass(frozen=True)
class Schedule:
    """``start`` at t=0 to ``end`` at t=1.

    kinds: ``constant`` (always ``start``), ``linear``, ``cosine`` (half-cosine ease), ``step``
    (``start`` until each milestone in ``milestones`` (fractions of training), multiplied by
    ``gamma`` at each). ``warmup`` (a fraction) holds ``start`` before the change begins.
    """

    kind: str = "constant"
    start: float = 1.0
    end: float | None = None
    warmup: float = 0.0
    milestones: tuple[float, ...] = field(default_factory=tuple)
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TorchSlimError(f"Unknown schedule kind {self.kind!r}.{did_you_mean(self.kind, KINDS)} "
                                 f"Valid: {', '.join(KINDS)}.")
        if not 0.0 <= self.warmup < 1.0:
            raise TorchSlimError(f"Schedule warmup must be a fraction in [0, 1), got {self.warmup!r}.")

    def __call__(self, t: float) -> float:
        t = min(max(t, 0.0), 1.0)
        end = self.start if self.end is None else self.end
        if self.kind == "constant":
            return self.start
        if self.kind == "step":
            return self.start * self.gamma ** sum(t >= m for m in self.milestones)
        u = 0.0 if t <= self.warmup else (t - self.warmup) / (1.0 - self.warmup)
        if self.kind == "cosine":
            u = (1 - math.cos(math.pi * u)) / 2
        return self.start + (end - self.start) * u


def as_schedule(value: float | Schedule, what: str) -> Schedule:
    """A constant schedule for a number; checks the value is not negative."""
    schedule = value if isinstance(value, Schedule) else Schedule("constant", float(value))
    for point in (0.0, 0.5, 1.0):
        if schedule(point) < 0:
            raise TorchSlimError(f"{what} must not be negative, got {schedule(point)} at progress {point}.")
    return schedule
