"""``sp``: similarity-preserving distillation (the batch's pairwise similarities)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from torchslim.distill.losses._math import unit
from torchslim.distill.losses.base import LOSSES, Outputs, TapLoss


@LOSSES.register("sp")
class SP(TapLoss):
    """Tung & Mori (2019), "Similarity-Preserving Knowledge Distillation" (ICCV).

    Each model's feature, flattened to ``Q`` (b, d), gives ``G = Q Qᵀ`` (b, b) with each row
    scaled to unit L2 norm; then::

        L = ||G^s - G^t||_F² / b²

    Feature sizes may differ (the b x b matrices always match). The paper weighs this term with
    γ = 3000 against cross-entropy: give that weight in the task's loss list.

    Args:
        student_tap: the student's module path, or None (with ``teacher_tap``) to compare the logits.
        teacher_tap: the teacher's module path, or None (with ``student_tap``).

    Raises:
        TorchSlimError: only one tap given; at call, a tap missing or different batch sizes.
    """

    kind = "relation"
    needs_taps = False

    def forward(self, student: Outputs, teacher: Outputs, batch: Mapping[str, Any]) -> Tensor:
        s, t = self._pair(student, teacher)
        b = s.shape[0]
        return (_similarity(s) - _similarity(t)).pow(2).sum() / b**2


def _similarity(f: Tensor) -> Tensor:
    q = f.flatten(1)
    return unit(q @ q.T, dim=1)
