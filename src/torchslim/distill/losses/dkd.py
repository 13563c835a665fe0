"""``dkd``: decoupled knowledge distillation (target and non-target parts weighted apart)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from torchslim.distill.losses._math import kl
from torchslim.distill.losses.base import LOSSES, DistillLoss, Outputs


@LOSSES.register("dkd")
class DKD(DistillLoss):
    """Zhao, Cui, Song, Qiu & Liang (2022), "Decoupled Knowledge Distillation" (CVPR).

    With ``p = softmax(t / T)``, ``q = softmax(s / T)`` and the label ``y`` of each sample:

    - TCKD, the binary target/non-target split: ``b = [p_y, 1 - p_y]`` vs ``[q_y, 1 - q_y]``,
      ``TCKD = KL(b^t || b^s)``;
    - NCKD, the distribution among the non-target classes: ``p̂_c = p_c / (1 - p_y)`` for
      ``c != y``, ``NCKD = KL(p̂^t || p̂^s)``;

    ``L = T² · mean_b (alpha · TCKD + beta · NCKD)``. (KD equals ``TCKD + (1 - p_y) · NCKD``.)

    Args:
        alpha: TCKD weight, >= 0. beta: NCKD weight, >= 0 (the paper's CIFAR-100 setting is 8).
        T: temperature, > 0.

    Raises:
        TorchSlimError: a bad argument; at call, missing logits or labels, fewer than 2 classes or
            different class counts.
    """

    kind = "logits"

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, T: float = 4.0) -> None:
        super().__init__()
        self.alpha = self._non_negative("alpha", alpha)
        self.beta = self._non_negative("beta", beta)
        self.T = self._positive("T", T)

    def forward(self, student: Outputs, teacher: Outputs, batch: Mapping[str, Any]) -> Tensor:
        s, t = self._logit_pair(student, teacher)
        if s.shape[1] < 2:
            raise self._error(f"needs at least 2 classes, got logits of shape {tuple(s.shape)}.")
        target = F.one_hot(self._labels(batch, s), s.shape[1]).bool()
        s, t = s / self.T, t / self.T
        tckd = kl(_binary_log_probs(t, target), _binary_log_probs(s, target))
        # The non-target classes alone, renormalised: drop the target column rather than masking it
        # with a large negative number, which leaves 0 · log 0 terms.
        others = (s.shape[0], s.shape[1] - 1)
        nckd = kl(F.log_softmax(t[~target].view(others), 1), F.log_softmax(s[~target].view(others), 1))
        return (self.alpha * tckd + self.beta * nckd) * self.T**2


def _binary_log_probs(z: Tensor, target: Tensor) -> Tensor:
    """(B, 2): log p_y and log(1 - p_y) of softmax(z), both from log-sum-exps (no log(0))."""
    log_p = F.log_softmax(z, dim=1)
    log_target = log_p.masked_select(target).unsqueeze(1)
    log_rest = log_p.masked_fill(target, float("-inf")).logsumexp(dim=1, keepdim=True)
    return torch.cat([log_target, log_rest], dim=1)

