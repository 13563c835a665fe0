"""Top-1 accuracy and mean cross-entropy of a classifier over a loader, and the checks that a model
fits a dataset (input shape, output width against the class count) before any work starts."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.train.batch import as_batch


def _prefix(where: str) -> str:
    return f"{where}: " if where else ""


def first_layer_channels(model: nn.Module) -> tuple[str, int] | None:
    """``(module path, input channels)`` of the first convolution, or None when there is none."""
    for path, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return path, module.in_channels
    return None


def check_model_fits(model: nn.Module, example: torch.Tensor, num_classes: int | None, where: str = "",
                     data: str = "the data") -> None:
    """Check that ``model`` takes ``example`` (a small batch of the data) and gives one logit per class.

    The first convolution's input channels are compared with the data's first, then a copy of the
    model runs once on ``example`` (eval mode, no gradients) and its output width is
    compared with ``num_classes`` (None: not checked).

    Raises:
        TorchSlimError: a channel mismatch, inputs the model cannot take, an output that is not
            (N, classes) logits, or a width other than ``num_classes``.
    """
    shape = tuple(example.shape[1:])
    first = first_layer_channels(model)
    if first is not None and example.ndim == 4 and first[1] != shape[0]:
        raise TorchSlimError(f"{_prefix(where)}the model's first convolution {first[0]!r} takes {first[1]} input "
                             f"channel(s) but {data} has {shape[0]} (images {shape}); use a model built for "
                             f"in_channels={shape[0]} or convert the images.")
    probe = copy.deepcopy(model).eval()  # a copy: the probe must not touch the caller's model (hooks, counters)
    try:
        with torch.no_grad():
            logits = probe(example)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise TorchSlimError(f"{_prefix(where)}the model ({type(model).__name__}) does not accept inputs of "
                             f"shape {shape} from {data}: {str(exc).splitlines()[0][:300]}") from None
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or len(logits) != len(example):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise TorchSlimError(f"{_prefix(where)}the model gives {got} for a batch of {len(example)}; a classifier "
                             "must give logits (N, classes).")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise TorchSlimError(f"{_prefix(where)}the model has {logits.shape[1]} outputs but {data} has "
                             f"{num_classes} classes; build the model with num_classes={num_classes} (or score it "
                             f"on data of {logits.shape[1]} classes).")


def check_bundle_fits(model: nn.Module, bundle: Any, where: str = "") -> None:
    """:func:`check_model_fits` against a ``DataBundle``'s input shape and class count."""
    check_model_fits(model, bundle.example_batch(2), bundle.num_classes, where,
                     data=f"the dataset {bundle.name!r}")


def _check_batch(x: Any, y: torch.Tensor, logits: Any, i: int, where: str) -> None:
    if isinstance(x, torch.Tensor) and x.is_floating_point() and not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x.flatten(1))).any(1).nonzero()[0])
        raise TorchSlimError(f"{_prefix(where)}batch {i} of the evaluation data holds NaN or Inf inputs (its "
                             f"sample {bad} first); clean the data before scoring a model on it.")
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise TorchSlimError(f"{_prefix(where)}the model gives {got} for batch {i}; a classifier must give "
                             "logits (N, classes).")
    if y.numel() and (int(y.max()) >= logits.shape[1] or int(y.min()) < 0):
        label = int(y.max()) if int(y.max()) >= logits.shape[1] else int(y.min())
        raise TorchSlimError(f"{_prefix(where)}the model has {logits.shape[1]} outputs but batch {i} of the "
                             f"data holds label {label}: the model was built for another class count.")


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: str | torch.device = "cpu",
             where: str = "") -> dict[str, float]:
    """``{"accuracy": %, "loss": mean CE, "n": samples}`` of ``model`` over every batch of ``loader``.

    The model is put in eval mode for the pass and restored to its previous mode afterwards.

    Raises:
        TorchSlimError: inputs the model cannot take, NaN/Inf inputs, or labels outside the
            model's outputs (named with the batch), instead of an error from inside torch.
    """
    was_training = model.training
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    try:
        for i, raw in enumerate(loader):
            batch = as_batch(raw, device)
            try:
                logits = model(batch["x"])
            except (RuntimeError, ValueError) as exc:
                shape = tuple(getattr(batch["x"], "shape", ()))
                raise TorchSlimError(f"{_prefix(where)}the model ({type(model).__name__}) does not accept batch "
                                     f"{i} of shape {shape}: {str(exc).splitlines()[0][:300]}") from None
            y = batch["y"]
            _check_batch(batch["x"], y, logits, i, where)
            loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            total += y.numel()
    finally:
        model.train(was_training)
    return {"accuracy": 100.0 * correct / max(total, 1), "loss": loss_sum / max(total, 1), "n": total}
