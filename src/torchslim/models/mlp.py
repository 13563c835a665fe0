"""A multilayer perceptron over flattened images: a baseline with no spatial prior."""

from __future__ import annotations

import torch
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.models.registry import MODELS


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True)]
            in_features = width
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


@MODELS.register("mlp")
def mlp(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
        hidden: tuple[int, ...] = (256, 128)) -> MLP:
    """MLP over ``in_channels x image_size x image_size`` inputs with the given hidden widths."""
    if image_size <= 0 or not hidden or min(hidden) <= 0:
        raise TorchSlimError(f"mlp needs image_size > 0 and positive hidden widths, got "
                             f"image_size={image_size!r}, hidden={hidden!r}.")
    return MLP(in_channels * image_size * image_size, tuple(hidden), num_classes)
