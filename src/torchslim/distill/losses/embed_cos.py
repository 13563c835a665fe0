"""``embed-cos``: cosine distance between student and teacher sentence embeddings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from torchslim.distill.losses._math import unit
from torchslim.distill.losses.base import LOSSES, Outputs, TapLoss


class _EmbeddingLoss(TapLoss):
    """Shared by the embedding losses: the model outputs (or two tapped (B, D) features), with a
    Linear connector from the student's width to the teacher's when they differ."""

    kind = "features"
    needs_taps = False

    def __init__(self, student_tap: str | None = None, teacher_tap: str | None = None) -> None:
        super().__init__(student_tap, teacher_tap)
        self.connector: nn.Module | None = None

    def build(self, student_shape: torch.Size, teacher_shape: torch.Size) -> None:
        """A Linear connector when the (B, D) widths differ; none when they agree."""
        if len(student_shape) != 2 or len(teacher_shape) != 2:
            raise self._error(f"expects (batch, width) embeddings; probed student {tuple(student_shape)}, "
                              f"teacher {tuple(teacher_shape)}.")
        self.connector = nn.Linear(student_shape[1], teacher_shape[1]) if student_shape[1] != teacher_shape[1] else None

    def _embeddings(self, student: Outputs, teacher: Outputs) -> tuple[Tensor, Tensor]:
        s, t = self._pair(student, teacher)
        if s.ndim != 2 or t.ndim != 2:
            raise self._error(f"expects (batch, width) embeddings; got student {tuple(s.shape)}, "
                              f"teacher {tuple(t.shape)}.")
        if self.connector is not None:
            s = self.connector(s)
        if s.shape[1] != t.shape[1]:
            raise self._error(f"the student's embeddings are {s.shape[1]} wide but the teacher's {t.shape[1]}; "
                              "call build(student_shape, teacher_shape) for a connector (DistillTask.prepare does).")
        return s, t


@LOSSES.register("embed-cos")
class EmbedCos(_EmbeddingLoss):
    """Sanh, Debut, Chaumond & Wolf (2019), "DistilBERT, a distilled version of BERT: smaller,
    faster, cheaper and lighter": the cosine embedding loss that aligns the student's and the
    teacher's hidden-state vectors, here on the pooled sentence embeddings ``s`` and ``t`` (B, D)::

        L = (1/B) Σ_b (1 - cos(r(s_b), t_b))

    ``r`` is the identity, or a Linear connector when the student is narrower (built by
    :meth:`build` from probed shapes). A zero vector has cosine 0 (no NaN).

    Args:
        student_tap: the student's module path of (B, D) features, or None (default, with
            ``teacher_tap``) for the models' outputs (a :class:`~torchslim.text.SentenceEncoder`
            outputs the embedding).
        teacher_tap: the teacher's module path of (B, D) features, or None (default).

    Raises:
        TorchSlimError: one tap given; at call, features that are not (B, D) or widths that differ
            without a connector.
    """

    def forward(self, student: Outputs, teacher: Outputs, batch: Mapping[str, Any]) -> Tensor:
        s, t = self._embeddings(student, teacher)
        return (1 - (unit(s, dim=1) * unit(t, dim=1)).sum(dim=1)).mean()


@LOSSES.register("embed-sim")
class EmbedSim(TapLoss):
    """A relational loss after Park, Kim, Lu & Cho (2019), "Relational Knowledge Distillation"
    (CVPR), for sentence embeddings: the student's in-batch cosine
    similarities regress onto the teacher's, the quantity that ranking and retrieval (and the
    pairwise Spearman agreement of :mod:`torchslim.text.metrics`) read. With ``S_ij = cos(s_i,
    s_j)`` and ``T_ij = cos(t_i, t_j)`` over the B sentences of a batch::

        L = (1 / (B (B - 1))) Σ_{i≠j} (S_ij - T_ij)²

    Where RKD matches normalised distances and angles and SP (Tung & Mori, 2019) row-normalised
    Gram matrices, this matches the cosine itself, unnormalised, so a similarity of 0.8 must stay 0.8. Widths may differ (the
    B x B matrices always match); pair it with ``embed-cos``, which aligns the vectors themselves.

    Args:
        student_tap: the student's module path of (B, D) features, or None (default, with
            ``teacher_tap``) for the models' outputs (the sentence embeddings).
        teacher_tap: the teacher's module path of (B, D) features, or None (default).

    Raises:
        TorchSlimError: one tap given; at call, features that are not (B, D) or a batch of one.
    """

    kind = "relation"
    needs_taps = False

    def forward(self, student: Outputs, teacher: Outputs, batch: Mapping[str, Any]) -> Tensor:
        s, t = self._pair(student, teacher)
        if s.ndim != 2 or t.ndim != 2:
            raise self._error(f"expects (batch, width) embeddings; got student {tuple(s.shape)}, "
                              f"teacher {tuple(t.shape)}.")
        b = s.shape[0]
        if b < 2:
            raise self._error("needs at least two sentences per batch to compare their similarities; got 1.")
        s, t = unit(s, dim=1), unit(t, dim=1)
        diff = (s @ s.T - t @ t.T).pow(2)
        return (diff.sum() - diff.diagonal().sum()) / (b * (b - 1))
