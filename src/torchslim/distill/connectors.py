"""Connectors: learned regressors from a student feature's shape to a teacher feature's shape.

Built from probed shapes (``DistillTask.prepare``), so the user never types a channel count; a
connector is an ordinary submodule of its loss and trains with the student.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchslim.core.errors import TorchSlimError


class ConvConnector(nn.Module):
    """(B, Cs, Hs, Ws) -> (B, Ct, Ht, Wt): resize to (Ht, Wt), then 1x1 conv + BatchNorm.

    Resizing first keeps the 1x1 conv on the smaller grid when shrinking and lets BatchNorm see
    the statistics of the grid it is compared on. Shrinking uses adaptive average pooling (every
    student position counts); growing uses bilinear interpolation.
    """

    def __init__(self, in_channels: int, out_channels: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = size
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)  # BN has the bias
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(resize(x, self.size)))


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, C, H, W) -> (B, C, *size): average pooling when no side grows, else bilinear."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    if size[0] <= h and size[1] <= w:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def connector(student_shape: torch.Size, teacher_shape: torch.Size) -> nn.Module:
    """A regressor mapping features of ``student_shape`` to ``teacher_shape`` (both with batch dim).

    4-D conv maps get a :class:`ConvConnector`; 2-D (B, C) vectors and 3-D (B, N, C) token
    sequences get a Linear over the last dimension.

    Raises:
        TorchSlimError: the ranks differ, are not 2, 3 or 4, or token counts differ.
    """
    s, t = tuple(student_shape), tuple(teacher_shape)
    if len(s) != len(t) or len(s) not in (2, 3, 4):
        raise TorchSlimError(f"No connector maps a student feature of shape {s} to a teacher feature of "
                             f"shape {t}: both must be (B, C), (B, N, C) or (B, C, H, W). Tap modules "
                             "whose outputs have the same rank.")
    if len(s) == 4:
        return ConvConnector(s[1], t[1], (t[2], t[3]))
    if len(s) == 3 and s[1] != t[1]:
        raise TorchSlimError(f"The student feature has {s[1]} tokens but the teacher's has {t[1]} "
                             f"(shapes {s} and {t}); a Linear connector needs equal token counts.")
    return nn.Linear(s[-1], t[-1])
