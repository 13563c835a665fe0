"""Numerics shared by several losses."""

from __future__ import annotations

import torch
from torch import Tensor


def unit(x: Tensor, dim: int) -> Tensor:
    """``x`` scaled to unit L2 norm along ``dim``; an all-zero vector stays zero.

    Unlike ``F.normalize`` (which divides by ``max(norm, 1e-12)``), a zero vector gets a zero
    gradient instead of one scaled by 1e12: dead ReLU features and duplicate samples stay finite.
    """
    norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True)
    nonzero = norm > 0
    return torch.where(nonzero, x / torch.where(nonzero, norm, torch.ones_like(norm)), torch.zeros_like(x))


def kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """mean_b KL(p_b || q_b) = mean_b Σ_c p_bc (log p_bc - log q_bc), from (B, C) log-probabilities.

    Terms with p = 0 count exactly 0, so a teacher logit of -inf (a masked class) or an
    underflowing probability adds nothing instead of NaN; identical inputs give exactly 0.
    """
    p = log_p.exp()
    terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    return terms.sum(dim=1).mean()
