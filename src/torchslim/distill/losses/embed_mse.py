"""``embed-mse``: mean squared error between student and teacher sentence embeddings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from torchslim.distill.losses.base import LOSSES, Outputs
from torchslim.distill.losses.embed_cos import _EmbeddingLoss


@LOSSES.register("embed-mse")
class EmbedMSE(_EmbeddingLoss):
    """Reimers & Gurevych (2020), "Making Monolingual Sentence Embeddings Multilingual using
    Knowledge Distillation": the student's sentence embedding regresses the teacher's. With
    ``s``, ``t`` (B, D) and ``r`` the identity or a Linear connector (student narrower)::

        L = (1/(B·D)) Σ_b Σ_d (r(s_b)_d - t_bd)²

    For L2-normalised embeddings this is ``(2/D) · mean(1 - cos)``, so give it a weight of about D/2
    to match ``embed-cos`` in scale.

    Args:
        student_tap: the student's module path of (B, D) features, or None (default, with
            ``teacher_tap``) for the models' outputs.
        teacher_tap: the teacher's module path of (B, D) features, or None (default).

    Raises:
        TorchSlimError: one tap given; at call, features that are not (B, D) or widths that differ
            without a connector.
    """

    def forward(self, student: Outputs, teacher: Outputs, batch: Mapping[str, Any]) -> Tensor:
        s, t = self._embeddings(student, teacher)
        return F.mse_loss(s, t)
