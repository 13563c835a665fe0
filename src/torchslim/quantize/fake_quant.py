"""Fake quantization for training: round to the INT8 grid in the forward pass, pass gradients
straight through (torch.fake_quantize_per_channel_affine / _per_tensor_affine).

The grids are ONNX Runtime's, so what is trained is what runs:

* weights: symmetric, one scale per output channel, zero point 0, range [-127, 127] (or
  [-64, 64] with ``reduce_range``): scale = 2 max|w_c| / (q_max - q_min);
* activations: asymmetric per tensor, [0, 255] (uint8) or [-128, 127] (int8), over the range
  [min(lo, 0), max(hi, 0)]: scale = range / (q_max - q_min), zero point = round(q_min - lo / scale).

An activation range is **observed** (a running min/max: plain over calibration batches, then an
exponential moving average of each training batch's min and max; frozen in eval mode) or
**learned** (``lo`` and ``hi`` are parameters, initialised by observation and trained through the
clipping they cause, PACT-style, with LSQ's gradient scale 1 / sqrt(numel x q_max)).
"""

from __future__ import annotations

import math

import torch
from torch import nn

QRANGES = {"uint8": (0, 255), "int8": (-128, 127)}


def weight_range(reduce_range: bool) -> tuple[int, int]:
    return (-64, 64) if reduce_range else (-127, 127)


def fake_quant_weight(weight: torch.Tensor, qmin: int, qmax: int, per_channel: bool) -> torch.Tensor:
    """``weight`` on the symmetric INT8 grid, per output channel (dim 0) or per tensor."""
    w = weight.detach()
    if per_channel:
        absmax = w.abs().reshape(w.shape[0], -1).amax(dim=1).clamp_min(1e-12)
        scale = (2.0 * absmax / (qmax - qmin)).float()
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, qmin, qmax)
    scale = (2.0 * w.abs().max().clamp_min(1e-12) / (qmax - qmin)).float().reshape(1)
    return torch.fake_quantize_per_tensor_affine(weight, scale, torch.zeros(1, dtype=torch.int32), qmin, qmax)


def _grad_scaled(t: torch.Tensor, g: float) -> torch.Tensor:
    """``t`` in the forward pass, its gradient multiplied by ``g`` in the backward pass."""
    return (t - t * g).detach() + t * g


class ActivationQuant(nn.Module):
    """Per-tensor fake quantization of an activation with an observed or learned range.

    Args:
        dtype: "uint8" or "int8" (the activation type the INT8 model will use).
        learn: train ``lo`` and ``hi`` (parameters) instead of observing them (buffers).
        momentum: weight of each training batch in the observed running min/max.
    """

    def __init__(self, dtype: str = "uint8", learn: bool = False, momentum: float = 0.01) -> None:
        super().__init__()
        self.dtype, self.learn, self.momentum = dtype, learn, momentum
        self.qmin, self.qmax = QRANGES[dtype]
        for name in ("lo", "hi"):
            if learn:
                self.register_parameter(name, nn.Parameter(torch.zeros(())))
            else:
                self.register_buffer(name, torch.zeros(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.calibrating = False  # observe plain min/max, no rounding (set by prepare_qat)

    @torch.no_grad()
    def _observe(self, x: torch.Tensor, average: bool) -> None:
        lo, hi = x.detach().min().float(), x.detach().max().float()
        if not bool(self.initialized):
            self.lo.copy_(lo)
            self.hi.copy_(hi)
            self.initialized.fill_(True)
        elif average:
            self.lo.add_(self.momentum * (lo - self.lo))
            self.hi.add_(self.momentum * (hi - self.hi))
        else:
            self.lo.copy_(torch.minimum(self.lo, lo))
            self.hi.copy_(torch.maximum(self.hi, hi))

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, zero point)`` of the current range, as ONNX Runtime computes them."""
        lo = torch.clamp(self.lo.detach(), max=0.0)
        hi = torch.clamp(self.hi.detach(), min=0.0)
        scale = (hi - lo) / (self.qmax - self.qmin)
        if float(scale) <= torch.finfo(torch.float32).tiny:
            return torch.ones(1), torch.zeros(1, dtype=torch.int32)
        zero = torch.round(self.qmin - lo / scale).clamp(self.qmin, self.qmax).to(torch.int32)
        return scale.reshape(1).float(), zero.reshape(1)

    def range(self) -> tuple[float, float]:
        """The current ``(lo, hi)``."""
        return float(self.lo.detach()), float(self.hi.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            self._observe(x, average=False)
            return x
        if not bool(self.initialized) or (self.training and not self.learn):
            self._observe(x, average=bool(self.initialized))
        scale, zero = self.qparams()
        scale, zero = scale.to(x.device), zero.to(x.device)
        quantized = torch.fake_quantize_per_tensor_affine(x, scale, zero, self.qmin, self.qmax)
        if not (self.learn and self.training):
            return quantized
        g = 1.0 / math.sqrt(x.numel() * self.qmax if self.qmax > 0 else x.numel())
        lo = torch.clamp(_grad_scaled(self.lo, g), max=0.0)
        hi = torch.clamp(_grad_scaled(self.hi, g), min=0.0)
        clipped = torch.minimum(torch.maximum(x, lo), hi)  # the gradient reaches lo / hi where x is clipped
        return clipped + (quantized - clipped).detach()

    def extra_repr(self) -> str:
        lo, hi = self.range()
        return f"{self.dtype}, {'learned' if self.learn else 'observed'}, range=({lo:.4g}, {hi:.4g})"
