"""Mixup (Zhang et al., 2018) and CutMix (Yun et al., 2019), one draw per batch.

Applied once, before teacher and student see the batch, so both see the same images: Beyer et
al. (2022) "Knowledge distillation: A good teacher is patient and consistent" ("function
matching"). Label losses use ``lam * L(y) + (1 - lam) * L(y_b)`` via ``batch["mix"]``.
"""

from __future__ import annotations

from typing import Any

import torch

from torchslim.core.errors import TorchSlimError

MIXES = ("mixup", "cutmix")


def mix_batch(batch: dict[str, Any], kind: str, alpha: float = 1.0) -> dict[str, Any]:
    """A copy of ``batch`` with mixed ``x`` and ``mix = (y of the partner images, lam)``.

    Draws from the global torch RNG (seeded and checkpointed by ``fit``).
    """
    if kind not in MIXES:
        raise TorchSlimError(f"mix must be one of {', '.join(MIXES)} or None, got {kind!r}.")
    if alpha <= 0:
        raise TorchSlimError(f"mix_alpha must be positive, got {alpha!r}.")
    x = batch["x"]
    perm = torch.randperm(x.shape[0], device=x.device)
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    if kind == "mixup":
        mixed = lam * x + (1 - lam) * x[perm]
    else:
        h, w = x.shape[-2:]
        cut_h, cut_w = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        mixed = x.clone()
        mixed[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the area actually pasted
    out = {**batch, "x": mixed}
    if "y" in batch:
        out["mix"] = (batch["y"][perm], lam)
    return out
