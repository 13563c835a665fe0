"""``hidden-mse``: per-token hidden states of mapped student and teacher layers, regressed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from torchslim.distill.losses._text import (
    LayerMap,
    check_rank,
    masked_mean,
    parse_layer_map,
    resolve_pairs,
    token_mask,
)
from torchslim.distill.losses.base import LOSSES, Outputs, TapLoss


@LOSSES.register("hidden-mse")
class HiddenMSE(TapLoss):
    """Jiao, Yin, Shang, Jiang, Chen, Li, Wang & Liu (2020), "TinyBERT: Distilling BERT for Natural
    Language Understanding" (hidden-states loss with a layer mapping).

    The taps record every layer's hidden states stacked: student ``S`` (B, Ls+1, N, Ds), teacher
    ``T`` (B, Lt+1, N, Dt), index 0 being the embedding output (a
    :class:`~torchslim.text.SentenceEncoder`'s ``hidden_states`` tap). For the pairs ``(i, j)`` of
    the layer mapping, a connector ``r`` (one Linear shared by all pairs, as TinyBERT's ``W_h``;
    the identity when Ds = Dt) and the real tokens ``M`` of ``batch["attention_mask"]``::

        L = (1/|pairs|) Σ_(i,j) (1/(|M|·Dt)) Σ_(b,n)∈M Σ_d (r(S[b, i, n])_d - T[b, j, n, d])²

    Default mapping: TinyBERT's uniform ``j = round(i · Lt / Ls)`` for every student index i
    (so the embeddings map to the embeddings and the last layer to the last).

    Args:
        student_tap: the student's module path of the stacked hidden states.
        teacher_tap: the teacher's module path of the stacked hidden states.
        layers: the mapping, ``"1:2/2:4/3:6"``, ``{1: 2, ...}`` or pairs; negative indices count
            from the end. None: uniform.

    Raises:
        TorchSlimError: a malformed mapping; at call, features that are not 4-D, token counts
            that differ, a mapped index out of range, or widths that differ without a connector.
    """

    kind = "features"

    def __init__(self, student_tap: str, teacher_tap: str, layers: LayerMap = None) -> None:
        super().__init__(student_tap, teacher_tap)
        self.layers = parse_layer_map(layers, self._who)
        self.connector: nn.Module | None = None

    def build(self, student_shape: torch.Size, teacher_shape: torch.Size) -> None:
        """A Linear connector when the hidden widths (last dimension) differ."""
        ds, dt = student_shape[-1], teacher_shape[-1]
        self.connector = nn.Linear(ds, dt) if ds != dt else None

    def pairs(self, n_student: int, n_teacher: int) -> list[tuple[int, int]]:
        """The (student, teacher) index pairs for stacks of these sizes (embeddings included)."""
        if self.layers is None:
            ls, lt = n_student - 1, n_teacher - 1
            return [(i, round(i * lt / ls) if ls else lt) for i in range(n_student)]
        return resolve_pairs(self.layers, n_student, n_teacher, "hidden state", self._who)

    def forward(self, student: Outputs, teacher: Outputs, batch: Mapping[str, Any]) -> Tensor:
        s, t = self._pair(student, teacher)
        for x, owner, tap in ((s, "student", self.student_tap), (t, "teacher", self.teacher_tap)):
            check_rank(self, x, 4, owner, tap, "stacked hidden states (batch, layers + 1, tokens, width)")
        if s.shape[2] != t.shape[2]:
            raise self._error(f"the student has {s.shape[2]} tokens but the teacher {t.shape[2]}; feed both "
                              "the same token ids.")
        mask = token_mask(batch, (s.shape[0], s.shape[2]), self._who, s.device)
        if self.connector is None and s.shape[-1] != t.shape[-1]:
            raise self._error(f"hidden widths differ ({s.shape[-1]} vs {t.shape[-1]}) and the connector is not "
                              "built: call build(student_shape, teacher_shape) first (DistillTask.prepare does).")
        total = s.new_zeros(())
        pairs = self.pairs(s.shape[1], t.shape[1])
        for i, j in pairs:
            mapped = self.connector(s[:, i]) if self.connector is not None else s[:, i]
            total = total + masked_mean((mapped - t[:, j]).pow(2).mean(dim=-1), mask)
        return total / len(pairs)
