"""Small plain CNNs: the default students.

Four 3x3 conv-BN-ReLU layers (the 2nd and 4th with stride 2), global average pooling and a linear
classifier: no branches, so every layer prunes and quantizes simply. ``cnn-small`` has about 20k
parameters, ``cnn-tiny`` about 6k; ``width`` scales all channels.
"""

from __future__ import annotations

import torch
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.models.registry import MODELS


def conv_bn(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)
    )


class PlainCNN(nn.Module):
    def __init__(self, channels: tuple[int, ...], num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        layers, in_ch = [], in_channels
        for i, out_ch in enumerate(channels):
            layers.append(conv_bn(in_ch, out_ch, 2 if i % 2 else 1))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def _factory(base: tuple[int, ...], label: str):
    def make(num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> PlainCNN:
        if width <= 0:
            raise TorchSlimError(f"CNN width multiplier must be positive, got {width!r}.")
        return PlainCNN(tuple(max(1, round(c * width)) for c in base), num_classes, in_channels)

    make.__doc__ = f"Plain 4-layer CNN, channels {base} x width ({label})."
    return make


MODELS.register("cnn-tiny", _factory((8, 16, 16, 16), "~6k parameters"))
MODELS.register("cnn-small", _factory((16, 24, 32, 32), "~20k parameters"))
MODELS.register("cnn-medium", _factory((32, 64, 64, 64), "~93k parameters"))
