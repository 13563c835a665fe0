"""``kd``: soft-target knowledge distillation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from torchslim.distill.losses._math import kl
from torchslim.distill.losses.base import LOSSES, DistillLoss, Outputs


@LOSSES.register("kd")
class KD(DistillLoss):
    """Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network".

    With ``p = softmax(t / T)`` (teacher) and ``q = softmax(s / T)`` (student), B samples::

        L = T² · (1/B) Σ_b KL(p_b || q_b) = T² · (1/B) Σ_b Σ_c p_bc (log p_bc - log q_bc)

    The T² keeps the gradient's size about constant as T changes: for large T,
    ``L -> (1/2C) · mean_b Σ_c (Δ_bc - mean_c Δ_bc)²`` with ``Δ = s - t`` (logit matching).

    Args:
        T: temperature, > 0 (a schedule may change ``self.T`` during training).

    Raises:
        TorchSlimError: T <= 0; at call, missing logits or different class counts.
    """

    kind = "logits"

    def __init__(self, T: float = 4.0) -> None:
        super().__init__()
        self.T = self._positive("T", T)

    def forward(self, student: Outputs, teacher: Outputs, batch: Mapping[str, Any]) -> Tensor:
        s, t = self._logit_pair(student, teacher)
        return kl(F.log_softmax(t / self.T, dim=1), F.log_softmax(s / self.T, dim=1)) * self.T**2
