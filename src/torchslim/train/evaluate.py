"""Top-1 accuracy and mean cross-entropy of a classifier over a loader."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from torchslim.train.batch import as_batch


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: str | torch.device = "cpu") -> dict[str, float]:
    """``{"accuracy": %, "loss": mean CE, "n": samples}`` of ``model`` over every batch of ``loader``.

    The model is put in eval mode for the pass and restored to its previous mode afterwards.
    """
    was_training = model.training
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    try:
        for raw in loader:
            batch = as_batch(raw, device)
            logits = model(batch["x"])
            y = batch["y"]
            loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            total += y.numel()
    finally:
        model.train(was_training)
    return {"accuracy": 100.0 * correct / max(total, 1), "loss": loss_sum / max(total, 1), "n": total}
