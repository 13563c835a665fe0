"""``crd``: contrastive representation distillation with a memory bank of embeddings."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchslim.distill.losses._math import unit
from torchslim.distill.losses.base import LOSSES, Outputs, TapLoss


@LOSSES.register("crd")
class CRD(TapLoss):
    """Tian, Krishnan & Isola (2020), "Contrastive Representation Distillation" (ICLR).

    Heads ``g_s``, ``g_t`` (Linear + L2 norm, built by :meth:`build` from the probed shapes) embed
    the flattened student and teacher features; memory banks ``M_s``, ``M_t`` (num_data x feat_dim)
    hold an embedding per training sample. Each batch draws K indices ``n_1..n_K`` uniformly from
    the dataset (one draw shared by the batch); with ``s_i = g_s(student_i)``,
    ``t_i = g_t(teacher_i)`` and τ = nce_t::

        ℓ(a, p, M) = -log( exp(a·p/τ) / (exp(a·p/τ) + Σ_k exp(a·M[n_k]/τ)) )
        L = (1/B) Σ_i [ ℓ(s_i, t_i, M_t) + ℓ(t_i, s_i, M_s) ]

    a negative equal to the sample's own index is left out of its sum. Then, in training mode, the
    banks move toward the batch: ``M[idx_i] <- unit(m · M[idx_i] + (1 - m) · e_i)``.

    Variant: this is the softmax (InfoNCE) form of the paper's bound, with the current embedding of
    the other model as the positive, not the paper's NCE with a Monte-Carlo normaliser Z and a
    positive read from the bank. It is symmetric as the paper's (both heads learn); the teacher's
    backbone gets no gradient (only its head does).

    Args:
        num_data: training-set size (the banks' rows), >= 2; ``batch["index"]`` must be below it.
        student_tap: the student's module path (the paper taps the penultimate features), or None
            (with ``teacher_tap``) to use the logits.
        teacher_tap: the teacher's module path, or None (with ``student_tap``) to use the logits.
        feat_dim: embedding size. nce_k: negatives per batch (the paper's 16384). nce_t: τ, > 0.
        momentum: bank momentum m in [0, 1).

    Raises:
        TorchSlimError: a bad argument; at call, heads not built, no ``batch["index"]`` or an
            index outside [0, num_data).
    """

    kind = "contrastive"
    needs_taps = False

    def __init__(self, num_data: int, student_tap: str | None = None, teacher_tap: str | None = None,
                 feat_dim: int = 128, nce_k: int = 16384, nce_t: float = 0.07, momentum: float = 0.5) -> None:
        super().__init__(student_tap, teacher_tap)
        self.num_data = self._count("num_data", num_data, 2)
        self.feat_dim = self._count("feat_dim", feat_dim, 1)
        self.nce_k = self._count("nce_k", nce_k, 1)
        self.nce_t = self._positive("nce_t", nce_t)
        self.momentum = self._non_negative("momentum", momentum)
        if self.momentum >= 1:
            raise self._error(f"momentum must be in [0, 1), got {momentum!r}.")
        self.embed_s: nn.Module | None = None
        self.embed_t: nn.Module | None = None
        # Random unit vectors until each sample has been seen once (the paper starts them random too).
        self.register_buffer("bank_s", unit(torch.randn(self.num_data, self.feat_dim), dim=1))
        self.register_buffer("bank_t", unit(torch.randn(self.num_data, self.feat_dim), dim=1))

    def _count(self, what: str, value: int, least: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise self._error(f"{what} must be an integer >= {least}, got {value!r}.")
        return value

    def build(self, student_shape: torch.Size, teacher_shape: torch.Size) -> None:
        """Create the embedding heads for (B, ...) feature shapes (flattened)."""
        self.embed_s = nn.Linear(math.prod(student_shape[1:]), self.feat_dim)
        self.embed_t = nn.Linear(math.prod(teacher_shape[1:]), self.feat_dim)

    def negatives(self, index: Tensor) -> Tensor:
        """(nce_k,) bank rows drawn uniformly with replacement from the global torch RNG."""
        return torch.randint(self.num_data, (self.nce_k,), device=index.device)

    def forward(self, student: Outputs, teacher: Outputs, batch: Mapping[str, Any]) -> Tensor:
        s, t = self._pair(student, teacher)
        index = self._index(batch, s.shape[0])
        if self.embed_s is None or self.embed_t is None:
            raise self._error("the embedding heads are not built: call build(student_shape, teacher_shape) "
                              "first (DistillTask.prepare does).")
        e_s, e_t = unit(self.embed_s(s.flatten(1)), dim=1), unit(self.embed_t(t.flatten(1)), dim=1)
        drawn = self.negatives(index)
        own = drawn.unsqueeze(0) == index.unsqueeze(1)  # (B, K): a "negative" that is the sample itself
        loss = self._nce(e_s, e_t, self.bank_t[drawn], own) + self._nce(e_t, e_s, self.bank_s[drawn], own)
        if self.training:
            self._update(index, e_s, e_t)
        return loss

    def _nce(self, anchor: Tensor, positive: Tensor, negatives: Tensor, own: Tensor) -> Tensor:
        """mean_i ℓ(anchor_i, positive_i, negatives): cross-entropy with the positive at column 0."""
        pos = (anchor * positive).sum(dim=1, keepdim=True)
        neg = (anchor @ negatives.to(anchor.dtype).T).masked_fill(own, float("-inf"))
        logits = torch.cat([pos, neg], dim=1) / self.nce_t
        return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))

    @torch.no_grad()
    def _update(self, index: Tensor, e_s: Tensor, e_t: Tensor) -> None:
        for bank, e in ((self.bank_s, e_s), (self.bank_t, e_t)):
            mixed = self.momentum * bank[index] + (1 - self.momentum) * e.detach().to(bank.dtype)
            bank.index_copy_(0, index, unit(mixed, dim=1))

    def _index(self, batch: Mapping[str, Any], size: int) -> Tensor:
        """``batch["index"]`` as (B,) int64, checked to address the banks."""
        index = batch.get("index")
        if index is None:
            raise self._error("CRD needs dataset indices: use a torchslim loader, which yields "
                              "(x, y, index), or pass batch['index'] ((batch,) int64).")
        if index.shape != (size,):
            raise self._error(f"batch['index'] has shape {tuple(index.shape)}; expected ({size},).")
        bad = (index < 0) | (index >= self.num_data)
        if bad.any():
            raise self._error(f"dataset index {int(index[bad][0])} is out of range for num_data="
                              f"{self.num_data} (valid 0..{self.num_data - 1}); num_data must be the "
                              "training set's size.")
        return index.long()
