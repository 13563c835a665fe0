"""``ce``: cross-entropy with the labels, the supervised term trained beside distillation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from torchslim.distill.losses.base import LOSSES, DistillLoss, Outputs, full_precision


@LOSSES.register("ce")
class CE(DistillLoss):
    """Cross-entropy of the student's logits with ``batch["y"]``; the teacher is not used.

    With label smoothing ε (Szegedy et al., 2016, "Rethinking the Inception Architecture for
    Computer Vision") and ``p = softmax(s)`` over C classes::

        L = mean_b [ (1 - ε) · (-log p_b[y_b]) + ε · (1/C) Σ_c (-log p_b[c]) ]

    Args:
        label_smoothing: ε in [0, 1).

    Raises:
        TorchSlimError: ε outside [0, 1); at call, no student logits or no labels.
    """

    kind = "labels"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = self._non_negative("label_smoothing", label_smoothing)
        if self.label_smoothing >= 1:
            raise self._error(f"label_smoothing must be in [0, 1), got {label_smoothing!r}.")

    def forward(self, student: Outputs, teacher: Outputs, batch: Mapping[str, Any]) -> Tensor:
        s = full_precision(self._logits_of(student, "student"))
        return F.cross_entropy(s, self._labels(batch, s), label_smoothing=self.label_smoothing)
