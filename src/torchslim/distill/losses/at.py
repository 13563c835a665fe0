"""``at``: attention transfer, matching where in the image a layer is active."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from torchslim.distill.losses._math import unit
from torchslim.distill.losses.base import LOSSES, Outputs, TapLoss


@LOSSES.register("at")
class AT(TapLoss):
    """Zagoruyko & Komodakis (2017), "Paying More Attention to Attention: Improving the Performance
    of Convolutional Neural Networks via Attention Transfer" (ICLR).

    The attention map of a (B, C, H, W) feature ``f`` is ``A = (1/C) Σ_c |f_c|^p``, (B, H, W).
    When the student's and teacher's maps differ in size, both are average-pooled
    (``adaptive_avg_pool2d``) to ``(min H, min W)``, so the larger one is pooled to the smaller.
    With ``Q = vec(A) / ||vec(A)||_2`` per sample (N positions)::

        L = (beta / 2) · (1/(B·N)) Σ_b Σ_j (Q^s_bj - Q^t_bj)²

    This is the authors' code (``(at(x) - at(y)).pow(2).mean()`` times ``beta / 2``, beta = 1000),
    which squares the paper's ``(beta/2) · ||Q^s - Q^t||_2`` and averages it over samples and
    positions. Channel counts may differ: no connector.

    Args:
        student_tap: the student's module path of a (B, C, H, W) output.
        teacher_tap: the teacher's module path of a (B, C, H, W) output.
        p: the power, > 0 (the paper uses 2).
        beta: the scale, >= 0.

    Raises:
        TorchSlimError: a bad argument; at call, a tap missing or a feature that is not 4-D.
    """

    kind = "features"

    def __init__(self, student_tap: str, teacher_tap: str, p: float = 2.0, beta: float = 1000.0) -> None:
        super().__init__(student_tap, teacher_tap)
        self.p = self._positive("p", p)
        self.beta = self._non_negative("beta", beta)

    def forward(self, student: Outputs, teacher: Outputs, batch: Mapping[str, Any]) -> Tensor:
        s, t = self._pair(student, teacher)
        if s.ndim != 4 or t.ndim != 4:
            raise self._error(f"attention maps need (B, C, H, W) features; got student {tuple(s.shape)} "
                              f"from {self.student_tap!r}, teacher {tuple(t.shape)} from {self.teacher_tap!r}.")
        size = (min(s.shape[2], t.shape[2]), min(s.shape[3], t.shape[3]))
        return self.beta / 2 * (self._attention(s, size) - self._attention(t, size)).pow(2).mean()

    def _attention(self, f: Tensor, size: tuple[int, int]) -> Tensor:
        """(B, H*W) unit-norm attention vectors at ``size``."""
        maps = f.abs().pow(self.p).mean(dim=1, keepdim=True)
        return unit(F.adaptive_avg_pool2d(maps, size).flatten(1), dim=1)
