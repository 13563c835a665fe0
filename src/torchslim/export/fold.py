"""Fold eval-mode BatchNorm into the convolution before it, for eager (torch) deployment.

ONNX export folds BatchNorm on its own (``torchslim.export.onnx``); a model that ships as a torch
module keeps paying for every BatchNorm as a separate memory-bound pass unless it is folded. The
fold is exact up to float rounding: ``w' = w * g / sqrt(v + eps)``, ``b' = (b - m) * g / sqrt(v +
eps) + beta``. It uses ``torch.fx`` to find the Conv -> BatchNorm pairs, so the model must be
symbolically traceable.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from torchslim.export.exporter import ExportError


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with each BatchNorm that follows a convolution folded into it.

    The input model is not changed. BatchNorms that follow anything else are kept. The result is a
    ``torch.fx.GraphModule`` for inference only (training it would update folded weights, not
    BatchNorm statistics).

    Raises:
        ExportError: the model cannot be traced by ``torch.fx`` (the message names the cause).
    """
    from torch.fx.experimental.optimization import fuse

    if not isinstance(model, nn.Module):
        raise ExportError(f"fold_batchnorm needs an nn.Module, got {type(model).__name__}.")
    copied = copy.deepcopy(model).eval()
    try:
        with torch.no_grad():
            return fuse(copied, inplace=True)
    except Exception as exc:  # torch.fx raises many types (TraceError, TypeError, ...)
        raise ExportError(f"cannot fold BatchNorm in {type(model).__name__}: torch.fx could not trace it "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Its "
                          "ONNX export folds BatchNorm without tracing by torch.fx.") from exc


def count_batchnorm(model: nn.Module) -> int:
    """BatchNorm layers left in ``model``."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
