"""What the transformer losses share: layer mappings and the mask of real (non-padding) tokens."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from torchslim.core.errors import TorchSlimError

LayerMap = str | Sequence[tuple[int, int]] | Mapping[int, int] | None


def parse_layer_map(value: LayerMap, who: str) -> list[tuple[int, int]] | None:
    """``"0:0/1:2/2:4"`` (pairs separated by ``/`` or ``,``), ``{0: 0, 1: 2}`` or ``[(0, 0), ...]``
    -> a list of ``(student index, teacher index)``; None stays None (the loss's default mapping).
    Negative indices count from the end, as in Python.

    Raises:
        TorchSlimError: a pair that is not two integers, or an empty mapping.
    """
    if value is None:
        return None
    if isinstance(value, str):
        pairs = []
        for item in value.replace(",", "/").split("/"):
            s, sep, t = item.strip().partition(":")
            try:
                pairs.append((int(s), int(t)))
            except ValueError:
                raise TorchSlimError(f"{who}: layers must be STUDENT:TEACHER pairs of integers separated by "
                                     f"'/', e.g. '1:2/2:4/3:6'; got {item!r} in {value!r}.") from None
            if not sep:
                raise TorchSlimError(f"{who}: layer pair {item!r} in {value!r} needs a ':' (STUDENT:TEACHER).")
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        pairs = [tuple(p) for p in value]
    if not pairs or not all(len(p) == 2 and all(isinstance(i, int) and not isinstance(i, bool) for i in p)
                            for p in pairs):
        raise TorchSlimError(f"{who}: layers must be a non-empty list of (student, teacher) integer pairs, "
                             f"got {value!r}.")
    return [(int(s), int(t)) for s, t in pairs]


def resolve_pairs(pairs: list[tuple[int, int]], n_student: int, n_teacher: int, what: str,
                  who: str) -> list[tuple[int, int]]:
    """``pairs`` with negative indices resolved; raises naming any index out of range."""
    out = []
    for s, t in pairs:
        for index, n, side in ((s, n_student, "student"), (t, n_teacher, "teacher")):
            if not -n <= index < n:
                raise TorchSlimError(f"{who}: {side} {what} index {index} is out of range: the {side} "
                                     f"has {n} {what}s (0..{n - 1}, or -1 for the last).")
        out.append((s % n_student, t % n_teacher))
    return out


def token_mask(batch: Mapping[str, Any], shape: tuple[int, int], who: str, device: torch.device) -> Tensor:
    """``batch["attention_mask"]`` as a (B, N) bool tensor (all True when absent).

    Raises:
        TorchSlimError: a mask whose shape is not (B, N) or that has a sample with no real token.
    """
    mask = batch.get("attention_mask")
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if tuple(mask.shape) != tuple(shape):
        raise TorchSlimError(f"{who}: batch['attention_mask'] has shape {tuple(mask.shape)}, but the "
                             f"features are for (batch, tokens) = {tuple(shape)}.")
    mask = mask.to(device).bool()
    if not mask.any(dim=1).all():
        raise TorchSlimError(f"{who}: batch['attention_mask'] has a sample with no real token.")
    return mask


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` (B, N) over the positions where ``mask`` (B, N) is True."""
    return (values * mask.to(values.dtype)).sum() / mask.sum()


def row_kl(p: Tensor, log_q: Tensor) -> Tensor:
    """Σ_k p_k (log p_k - log q_k) over the last dimension; terms with p = 0 count exactly 0."""
    terms = torch.where(p > 0, p * (torch.log(p.clamp_min(1e-30)) - log_q), torch.zeros_like(p))
    return terms.sum(dim=-1)


def check_rank(loss: Any, x: Tensor, rank: int, owner: str, tap: str | None, expected: str) -> None:
    if x.ndim != rank:
        raise loss._error(f"expects {expected} features; got {tuple(x.shape)} from the {owner}"
                          + (f" tap {tap!r}" if tap else "") + ".")
