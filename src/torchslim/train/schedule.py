"""Learning-rate schedules as pure functions of training progress.

A pure function of the step (not a stateful scheduler object) makes resuming exact: the learning
rate at step s is the same whether or not the run was interrupted.
"""

from __future__ import annotations

import math

from torchslim.core.errors import TorchSlimError
from torchslim.core.registry import did_you_mean

SCHEDULES = ("cosine", "onecycle", "constant")


def lr_factor(schedule: str, step: int, total: int, warmup: int = 0) -> float:
    """Multiplier of the peak learning rate at ``step`` of ``total`` (0-based).

    ``cosine``: linear warm-up over ``warmup`` steps, then cosine decay to 0.
    ``onecycle``: Smith & Topin (2019): cosine rise from peak/25 over the first 25% of steps
    (or ``warmup`` when set), then cosine decay to peak/1e4.
    ``constant``: warm-up, then 1.
    """
    if schedule not in SCHEDULES:
        raise TorchSlimError(f"Unknown schedule {schedule!r}.{did_you_mean(schedule, SCHEDULES)} "
                             f"Valid: {', '.join(SCHEDULES)}.")
    if schedule == "onecycle":
        rise = warmup or max(1, int(0.25 * total))
        if step < rise:
            return _cos(1 / 25, 1.0, step / rise)
        return _cos(1.0, 1e-4, (step - rise) / max(1, total - rise))
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    return _cos(1.0, 0.0, (step - warmup) / max(1, total - warmup))


def _cos(start: float, end: float, t: float) -> float:
    t = min(max(t, 0.0), 1.0)
    return end + (start - end) * (1 + math.cos(math.pi * t)) / 2
