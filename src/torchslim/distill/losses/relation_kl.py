"""``relation-kl``: self-attention relations (query-query, key-key or value-value), transferred."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from torchslim.distill.losses._text import check_rank, masked_mean, row_kl, token_mask
from torchslim.distill.losses.base import LOSSES, Outputs, TapLoss


@LOSSES.register("relation-kl")
class RelationKL(TapLoss):
    """Wang, Bao, Huang, Dong & Wei (2021), "MiniLMv2: Multi-Head Self-Attention Relation
    Distillation for Compressing Pretrained Transformers" (the value relation is MiniLM's, 2020).

    Tap one projection of a layer in each model (e.g. ``...attention.self.value``): ``X^s``
    (B, N, Ds), ``X^t`` (B, N, Dt). Each is split into ``heads`` relation heads of width
    ``d = D / heads`` (so the student and teacher may differ in width and attention heads), and::

        R_h = softmax(X_h X_hᵀ / √d)   over the real keys (padded keys masked out)
        L = (1/(heads·|M|)) Σ_h Σ_(b,n)∈M KL(R^t_h[b, n, :] || R^s_h[b, n, :])

    with ``M`` the real query tokens of ``batch["attention_mask"]``. Query, key and value relations
    are three such losses on the three projections.

    Args:
        student_tap: the student's module path of (B, N, D) projections.
        teacher_tap: the teacher's module path of (B, N, D) projections.
        heads: relation heads, a divisor of both widths (MiniLMv2 uses the teacher's head count).

    Raises:
        TorchSlimError: heads < 1; at call, features that are not 3-D, token counts that differ or
            a width that ``heads`` does not divide.
    """

    kind = "features"

    def __init__(self, student_tap: str, teacher_tap: str, heads: int = 12) -> None:
        super().__init__(student_tap, teacher_tap)
        if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
            raise self._error(f"heads must be a positive integer, got {heads!r}.")
        self.heads = heads

    def _relations(self, x: Tensor, keys: Tensor, owner: str) -> Tensor:
        """(B, heads, N, N) log-relations of one model's projection, padded keys masked."""
        b, n, width = x.shape
        if width % self.heads:
            raise self._error(f"the {owner}'s width {width} is not divisible by heads={self.heads}; "
                              "choose a common divisor of both widths.")
        d = width // self.heads
        xh = x.view(b, n, self.heads, d).transpose(1, 2)  # (B, heads, N, d)
        scores = xh @ xh.transpose(-1, -2) / math.sqrt(d)
        scores = scores.masked_fill(~keys.view(b, 1, 1, n), float("-inf"))
        return torch.log_softmax(scores, dim=-1)

    def forward(self, student: Outputs, teacher: Outputs, batch: Mapping[str, Any]) -> Tensor:
        s, t = self._pair(student, teacher)
        for x, owner, tap in ((s, "student", self.student_tap), (t, "teacher", self.teacher_tap)):
            check_rank(self, x, 3, owner, tap, "(batch, tokens, width) projection")
        if s.shape[1] != t.shape[1]:
            raise self._error(f"the student has {s.shape[1]} tokens but the teacher {t.shape[1]}; feed both "
                              "the same token ids.")
        mask = token_mask(batch, s.shape[:2], self._who, s.device)
        log_t = self._relations(t, mask, "teacher")
        log_s = self._relations(s, mask, "student")
        kl = row_kl(log_t.exp(), log_s.clamp_min(-1e4))  # masked keys: p = 0 there, so -inf never counts
        return masked_mean(kl.mean(dim=1), mask)
