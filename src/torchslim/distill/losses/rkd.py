"""``rkd``: relational knowledge distillation (distances and angles within the batch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from torchslim.distill.losses._math import unit
from torchslim.distill.losses.base import LOSSES, Outputs, TapLoss


@LOSSES.register("rkd")
class RKD(TapLoss):
    """Park, Kim, Lu & Cho (2019), "Relational Knowledge Distillation" (CVPR).

    On flattened embeddings ``e_1..e_B`` of each model, with Huber ``l_δ`` (smooth-L1, δ = 1):

    - distance: ``ψ_D(i, j) = ||e_i - e_j|| / μ``, μ the mean of the nonzero distances;
      ``L_D = (1/B²) Σ_{i,j} l_δ(ψ_D^s(i, j) - ψ_D^t(i, j))``;
    - angle: ``ψ_A(i, j, k) = <u(e_j - e_i), u(e_k - e_i)>``, u = unit vector (0 for a zero
      vector, so triplets with a repeated point give 0 in both models);
      ``L_A = (1/B³) Σ_{i,j,k} l_δ(ψ_A^s(i, j, k) - ψ_A^t(i, j, k))``;

    ``L = w_d · L_D + w_a · L_A``. Averaging over all ordered pairs and triplets, repeated points
    included, follows the authors' code. The angle term holds a (B, B, d) tensor: tap an embedding
    (or use the logits), not a large feature map.

    Args:
        student_tap: the student's module path, or None (with ``teacher_tap``) to use the logits.
        teacher_tap: the teacher's module path, or None (with ``student_tap``).
        w_d: the distance term's weight, >= 0 (the paper's 25).
        w_a: the angle term's weight, >= 0 (the paper's 50).

    Raises:
        TorchSlimError: a bad argument; at call, a tap missing or different batch sizes.
    """

    kind = "relation"
    needs_taps = False

    def __init__(self, student_tap: str | None = None, teacher_tap: str | None = None,
                 w_d: float = 25.0, w_a: float = 50.0) -> None:
        super().__init__(student_tap, teacher_tap)
        self.w_d = self._non_negative("w_d", w_d)
        self.w_a = self._non_negative("w_a", w_a)

    def forward(self, student: Outputs, teacher: Outputs, batch: Mapping[str, Any]) -> Tensor:
        s, t = self._pair(student, teacher)
        s, t = s.flatten(1), t.flatten(1)
        d_s, d_t = s.unsqueeze(0) - s.unsqueeze(1), t.unsqueeze(0) - t.unsqueeze(1)  # [i, j] = e_j - e_i
        distance = F.smooth_l1_loss(_distances(d_s), _distances(d_t))
        angle = F.smooth_l1_loss(_angles(d_s), _angles(d_t))
        return self.w_d * distance + self.w_a * angle


def _distances(diff: Tensor) -> Tensor:
    """(B, B) distances over their mean nonzero value; all zeros when every point coincides."""
    d = diff.norm(dim=2)
    positive = (d > 0).sum().clamp_min(1)
    return d / (d.sum() / positive).clamp_min(1e-12)


def _angles(diff: Tensor) -> Tensor:
    """(B, B, B) cosines at vertex i between edges to j and k."""
    u = unit(diff, dim=2)
    return u @ u.transpose(1, 2)
