"""``pkt``: probabilistic knowledge transfer (matching the batch's similarity distributions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from torchslim.distill.losses._math import unit
from torchslim.distill.losses.base import LOSSES, Outputs, TapLoss

EPS = 1e-7


@LOSSES.register("pkt")
class PKT(TapLoss):
    """Passalis & Tefas (2018), "Learning Deep Representations with Probabilistic Knowledge
    Transfer" (ECCV).

    Each model's flattened features ``x_1..x_B`` give a cosine-similarity kernel
    ``K_ij = (1 + cos(x_i, x_j)) / 2`` in [0, 1], turned into conditional probabilities
    ``P(j | i) = K_ij / Σ_k K_ik``. With teacher ``P^t`` and student ``P^s``::

        L = (1/B²) Σ_i Σ_j P^t(j|i) · log((P^t(j|i) + ε) / (P^s(j|i) + ε)),   ε = 1e-7

    i.e. the KL divergence of each row, averaged over all B² entries rather than summed over j;
    the diagonal (j = i) is kept. Both follow the authors' code.

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
        p_s, p_t = _conditional(s), _conditional(t)
        return (p_t * torch.log((p_t + EPS) / (p_s + EPS))).mean()


def _conditional(f: Tensor) -> Tensor:
    """(B, B) row-stochastic matrix P(j | i) from the cosine kernel."""
    x = unit(f.flatten(1), dim=1)
    kernel = (x @ x.T + 1) / 2
    return kernel / kernel.sum(dim=1, keepdim=True)
