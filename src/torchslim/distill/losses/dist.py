"""``dist``: distillation from a stronger teacher by correlation, not exact matching."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from torchslim.distill.losses.base import LOSSES, DistillLoss, Outputs


@LOSSES.register("dist")
class DIST(DistillLoss):
    """Huang, You, Wang, Qian & Xu (2022), "Knowledge Distillation from A Stronger Teacher" (DIST).

    On ``Y^s = softmax(s / T)`` and ``Y^t = softmax(t / T)``, both (B, C), with Pearson correlation
    ``ρ(u, v) = <u - ū, v - v̄> / (||u - ū|| · ||v - v̄|| + 1e-8)``::

        inter = 1 - (1/B) Σ_b ρ(Y^s[b, :], Y^t[b, :])     # the ranking of classes in each sample
        intra = 1 - (1/C) Σ_c ρ(Y^s[:, c], Y^t[:, c])     # each class's profile across the batch
        L = T² · (beta · inter + gamma · intra)

    (1e-8 as in the authors' code keeps a constant row, whose correlation is undefined, at ρ = 0.)

    Args:
        beta: inter-class weight, >= 0. gamma: intra-class weight, >= 0. T: temperature, > 0.
            The defaults are the authors' ImageNet setting.

    Raises:
        TorchSlimError: a bad argument; at call, missing logits or different class counts.
    """

    kind = "logits"

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, T: float = 1.0) -> None:
        super().__init__()
        self.beta = self._non_negative("beta", beta)
        self.gamma = self._non_negative("gamma", gamma)
        self.T = self._positive("T", T)

    def forward(self, student: Outputs, teacher: Outputs, batch: Mapping[str, Any]) -> Tensor:
        s, t = self._logit_pair(student, teacher)
        y_s, y_t = torch.softmax(s / self.T, dim=1), torch.softmax(t / self.T, dim=1)
        inter = 1 - _pearson(y_s, y_t).mean()
        intra = 1 - _pearson(y_s.T, y_t.T).mean()
        return (self.beta * inter + self.gamma * intra) * self.T**2


def _pearson(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """(N,) Pearson correlation of each row of ``a`` with the same row of ``b``, both (N, M)."""
    a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)
