"""``fitnet``: hint learning, regressing a student feature onto a teacher feature."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from torchslim.distill.connectors import connector
from torchslim.distill.losses.base import LOSSES, Outputs, TapLoss


@LOSSES.register("fitnet")
class FitNet(TapLoss):
    """Romero, Ballas, Kahou, Chassang, Gatta & Bengio (2015), "FitNets: Hints for Thin Deep Nets".

    With the student's guided feature ``v``, the teacher's hint ``h`` and a learned connector ``r``
    (``torchslim.distill.connectors``: resize + 1x1 conv + BatchNorm for maps, Linear for
    vectors), built by :meth:`build` from the probed shapes::

        L = mean over all elements of (r(v) - h)²

    (the paper's ``½ ||h - r(v)||²`` divided by the element count, so the scale does not depend on
    the feature size).

    Args:
        student_tap: the student's module path of the guided layer.
        teacher_tap: the teacher's module path of the hint layer.

    Raises:
        TorchSlimError: missing taps; at call, :meth:`build` not called or a tap missing from the
            features.
    """

    kind = "features"

    def __init__(self, student_tap: str, teacher_tap: str) -> None:
        super().__init__(student_tap, teacher_tap)
        self.connector = None

    def build(self, student_shape: torch.Size, teacher_shape: torch.Size) -> None:
        """Create the connector from (B, ...) feature shapes (the engine probes them)."""
        self.connector = connector(student_shape, teacher_shape)

    def forward(self, student: Outputs, teacher: Outputs, batch: Mapping[str, Any]) -> Tensor:
        s, t = self._pair(student, teacher)
        if self.connector is None:
            raise self._error("the connector is not built: call build(student_shape, teacher_shape) "
                              "first (DistillTask.prepare does).")
        mapped = self.connector(s)
        if mapped.shape != t.shape:
            raise self._error(f"the connector maps {tuple(s.shape)} to {tuple(mapped.shape)}, but the "
                              f"teacher feature is {tuple(t.shape)}: it was built for other shapes.")
        return F.mse_loss(mapped, t)
