"""``attention-kl``: the teacher's self-attention distributions, transferred to the student."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from torchslim.distill.losses._text import (
    LayerMap,
    check_rank,
    masked_mean,
    parse_layer_map,
    resolve_pairs,
    row_kl,
    token_mask,
)
from torchslim.distill.losses.base import LOSSES, Outputs, TapLoss


@LOSSES.register("attention-kl")
class AttentionKL(TapLoss):
    """Wang, Wei, Dong, Bao, Yang & Zhou (2020), "MiniLM: Deep Self-Attention Distillation for
    Task-Agnostic Compression of Pre-Trained Transformers" (self-attention distribution transfer).

    The taps record every layer's attention probabilities stacked: student ``A^s``
    (B, Ls, H, N, N), teacher ``A^t`` (B, Lt, H, N, N) (a :class:`~torchslim.text.SentenceEncoder`'s
    ``attentions`` tap). For each mapped layer pair ``(i, j)``, with the real query tokens ``M``
    of ``batch["attention_mask"]``::

        L = (1/|pairs|) Σ_(i,j) (1/(H·|M|)) Σ_h Σ_(b,n)∈M KL(A^t[b, j, h, n, :] || A^s[b, i, h, n, :])

    MiniLM transfers the last layer only, which is the default mapping (``-1:-1``); it needs the
    same number of heads (for other head counts use ``relation-kl``). Zero teacher probabilities
    (padded keys) add exactly 0; student probabilities are floored at 1e-12 inside the log.

    Args:
        student_tap: the student's module path of the stacked attention maps.
        teacher_tap: the teacher's module path of the stacked attention maps.
        layers: the mapping, ``"2:5"``, ``{2: 5}`` or pairs; negative indices count from the end.

    Raises:
        TorchSlimError: a malformed mapping; at call, features that are not 5-D, different head or
            token counts, or a mapped index out of range.
    """

    kind = "features"

    def __init__(self, student_tap: str, teacher_tap: str, layers: LayerMap = None) -> None:
        super().__init__(student_tap, teacher_tap)
        self.layers = parse_layer_map(layers, self._who) or [(-1, -1)]

    def forward(self, student: Outputs, teacher: Outputs, batch: Mapping[str, Any]) -> Tensor:
        s, t = self._pair(student, teacher)
        for x, owner, tap in ((s, "student", self.student_tap), (t, "teacher", self.teacher_tap)):
            check_rank(self, x, 5, owner, tap, "stacked attention maps (batch, layers, heads, tokens, tokens)")
        if s.shape[2] != t.shape[2]:
            raise self._error(f"the student has {s.shape[2]} attention heads but the teacher {t.shape[2]}; "
                              "attention maps need equal head counts (use relation-kl for different ones).")
        if s.shape[3:] != t.shape[3:]:
            raise self._error(f"attention maps over {tuple(s.shape[3:])} (student) and {tuple(t.shape[3:])} "
                              "(teacher) tokens: feed both the same token ids.")
        mask = token_mask(batch, (s.shape[0], s.shape[3]), self._who, s.device)
        pairs = resolve_pairs(self.layers, s.shape[1], t.shape[1], "layer", self._who)
        total = s.new_zeros(())
        for i, j in pairs:
            kl = row_kl(t[:, j], torch.log(s[:, i].clamp_min(1e-12)))  # (B, H, N)
            total = total + masked_mean(kl.mean(dim=1), mask)
        return total / len(pairs)
