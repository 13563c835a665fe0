"""CIFAR-style ResNets (He et al., 2016, section 4.2) for small images such as 28x28.

Three stages of ``n`` basic blocks at widths (16, 32, 64) x ``width``; depth = 6n + 2. The
``depth`` multiplier of a factory scales the blocks per stage (compound scaling, as EfficientNet
scales width and depth together): ``max(1, round(n * depth))`` blocks, Python's ``round`` (halves to
even), so ``resnet20`` (n = 3) has 2 blocks per stage at depth 0.5 and 6 at depth 2. Module
paths are stable and readable for taps and pruning: ``stem``, ``layer1`` .. ``layer3`` (each an
``nn.Sequential`` of blocks, so ``"layer2.1"`` is the second block of stage 2), ``pool``, ``fc``.
"""

from __future__ import annotations

import torch
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.models.registry import MODELS


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            # Projection shortcut (option B): keeps the block prunable as a plain graph.
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A ResNet of ``depth`` = 6n + 2 layers, its blocks per stage scaled by ``depth_multiplier``
    (see the module docstring) and its channels by ``width``.

    Raises:
        TorchSlimError: ``depth`` not 6n + 2 with n >= 1, or a multiplier that is not positive.
    """

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 1, width: float = 1.0,
                 depth_multiplier: float = 1.0):
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise TorchSlimError(f"ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, ...), got {depth}.")
        if width <= 0:
            raise TorchSlimError(f"ResNet width multiplier must be positive, got {width!r}.")
        if depth_multiplier <= 0:
            raise TorchSlimError(f"ResNet depth multiplier must be positive (it scales the blocks per stage), "
                                 f"got {depth_multiplier!r}.")
        n = max(1, round((depth - 2) // 6 * depth_multiplier))
        widths = [max(1, round(16 * width * 2**i)) for i in range(3)]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages, in_ch = [], widths[0]
        for i, out_ch in enumerate(widths):
            blocks = [BasicBlock(in_ch if b == 0 else out_ch, out_ch, 2 if (i and not b) else 1)
                      for b in range(n)]
            stages.append(nn.Sequential(*blocks))
            in_ch = out_ch
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # Zero-init the last BN of each block: every block starts as identity, which trains
        # faster and better in short schedules (Goyal et al., 2017).
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def _factory(layers: int):
    def make(num_classes: int = 10, in_channels: int = 1, width: float = 1.0, depth: float = 1.0) -> ResNet:
        return ResNet(layers, num_classes, in_channels, width, depth)

    make.__doc__ = (f"ResNet-{layers} (CIFAR-style, {(layers - 2) // 6} blocks per stage); ``width`` scales "
                    "channels, ``depth`` the blocks per stage (at least one).")
    return make


for _depth in (8, 14, 20, 32, 56):
    MODELS.register(f"resnet{_depth}", _factory(_depth))
