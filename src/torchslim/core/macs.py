"""Parameters and multiply-accumulates (MACs) of a model, counted over a real forward pass.

MACs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts the operations that
dominate a CNN's or transformer's cost (matrix multiplies, convolutions, attention) at 2 FLOPs per
multiply-accumulate. Element-wise work (bias adds, BatchNorm, activations, pooling) is not
counted, which is the usual convention for "MACs". Counting a real pass instead of walking the
module tree sees functional calls and pruned shapes exactly as they run.

These live in ``core``, below both ``measure`` (which reports them) and ``runtime`` (whose torch
runtime answers ``Runtime.macs`` with them), so neither of the two imports the other for them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from torchslim.core.errors import TorchSlimError


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements (shared parameters once; zeros of a sparse model included).

    Buffers (BatchNorm running statistics) are not parameters and are not counted; they do count
    in a saved artifact's bytes.
    """
    return sum(p.numel() for p in model.parameters())


def batch_size_of(example_input: torch.Tensor) -> int:
    """The leading (batch) dimension of ``example_input``.

    Raises:
        TorchSlimError: not a tensor, a 0-d tensor, or an empty batch.
    """
    if not isinstance(example_input, torch.Tensor):
        raise TorchSlimError(
            f"example_input must be a torch.Tensor with a leading batch dimension, got "
            f"{type(example_input).__name__}."
        )
    if example_input.ndim == 0 or example_input.shape[0] == 0:
        raise TorchSlimError(
            f"example_input needs a leading batch dimension of at least 1 sample, got shape "
            f"{tuple(example_input.shape)}."
        )
    return int(example_input.shape[0])


def count_macs(model: nn.Module, example_input: torch.Tensor) -> int:
    """Multiply-accumulates **per sample** of one forward pass of ``model`` on ``example_input``.

    Args:
        model: run in eval mode without gradients; its train/eval mode is restored afterwards.
        example_input: a batch ``(N, ...)`` on the model's device. The pass runs on the whole
            batch and the count is divided by N, so any N gives the batch-1 figure.

    Raises:
        TorchSlimError: ``example_input`` is not a tensor with a non-empty batch dimension.
    """
    n = batch_size_of(example_input)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example_input)
    finally:
        model.train(was_training)
    macs = counter.get_total_flops() // 2
    return (macs + n // 2) // n  # rounded; exact whenever every op scales with the batch
