"""Small plain CNNs: the default students.

Four 3x3 conv-BN-ReLU layers (the 2nd and 4th with stride 2), global average pooling and a linear
classifier: no branches, so every layer prunes and quantizes simply. ``cnn-small`` has about 20k
parameters, ``cnn-tiny`` about 6k; ``width`` scales all channels.

``depth`` (at least 1) deepens a family for compound scaling: the four base layers always stay (they
carry the two downsamplings, so none can be dropped), and ``round((depth - 1) * 4)`` extra stride-1
layers of the same width follow them, extra ``i`` after base layer ``i % 4``. ``cnn-small`` at depth
2 has eight layers, at depth 1.5 six (an extra after base layers 0 and 1). The layers stay one
``nn.Sequential``, ``features.0`` .. ``features.N``; at depth 1 the paths are those of the base.
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
    """Conv-BN-ReLU layers at ``channels`` (every second one with stride 2), each followed by
    ``extra[i]`` stride-1 layers of its width (none when ``extra`` is not given)."""

    def __init__(self, channels: tuple[int, ...], num_classes: int = 10, in_channels: int = 1,
                 extra: tuple[int, ...] | None = None):
        super().__init__()
        layers, in_ch = [], in_channels
        for i, out_ch in enumerate(channels):
            layers.append(conv_bn(in_ch, out_ch, 2 if i % 2 else 1))
            layers += [conv_bn(out_ch, out_ch, 1) for _ in range(extra[i] if extra else 0)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def extra_layers(depth: float, base: int = 4) -> tuple[int, ...]:
    """Extra stride-1 layers after each of ``base`` layers at ``depth``: ``round((depth - 1) * base)``
    in all, extra ``i`` after base layer ``i % base``.

    Raises:
        TorchSlimError: ``depth`` below 1 (no base layer can be dropped).
    """
    if not depth >= 1:
        raise TorchSlimError(f"CNN depth multiplier must be at least 1, got {depth!r}: the plain CNN has no layer "
                             f"to drop (its {base} layers carry the two downsamplings); use depth >= 1, or a "
                             "smaller family or width.")
    total = round((depth - 1) * base)
    return tuple(total // base + (i < total % base) for i in range(base))


def _factory(base: tuple[int, ...], label: str):
    def make(num_classes: int = 10, in_channels: int = 1, width: float = 1.0, depth: float = 1.0) -> PlainCNN:
        if width <= 0:
            raise TorchSlimError(f"CNN width multiplier must be positive, got {width!r}.")
        extra = extra_layers(depth, len(base))
        return PlainCNN(tuple(max(1, round(c * width)) for c in base), num_classes, in_channels, extra)

    make.__doc__ = (f"Plain 4-layer CNN, channels {base} x width ({label}); ``depth`` >= 1 adds "
                    "``round((depth - 1) * 4)`` stride-1 layers.")
    return make


MODELS.register("cnn-tiny", _factory((8, 16, 16, 16), "~6k parameters"))
MODELS.register("cnn-small", _factory((16, 24, 32, 32), "~20k parameters"))
MODELS.register("cnn-medium", _factory((32, 64, 64, 64), "~93k parameters"))
