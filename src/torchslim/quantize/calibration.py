"""Calibration data for static INT8: the first N batches of a loader, checked against the graph.

Batches are taken once, converted to float32 arrays and checked against the ONNX graph's input
(rank, and every fixed dimension) before ONNX Runtime sees them, so a loader of the wrong data
fails with the shapes named instead of deep inside a session.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from typing import Any, get_args

import numpy as np

from torchslim.core.errors import TorchSlimError
from torchslim.options.quantize import CalibrationMethod
from torchslim.train.batch import as_batch

METHODS = get_args(CalibrationMethod)


class CalibrationError(TorchSlimError):
    """Calibration data that cannot calibrate the model: none, of the wrong shape, or not finite."""


class CalibrationWarning(UserWarning):
    """Calibration ran on fewer batches than asked because the loader has fewer."""


def _shape_text(dims: list[int | str]) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) and d > 0 else "N" for d in dims) + ")"


def take(loader: Iterable | None, batches: int, input_name: str,
         input_shape: list[int | str] | None) -> list[np.ndarray]:
    """The inputs of the first ``batches`` batches of ``loader`` as float32 arrays.

    ``input_shape`` is the graph input's (0 or a name for a free dimension); None takes the first
    batch's shape with a free batch dimension, so later batches must match it.

    Raises:
        CalibrationError: no loader, a loader that yields nothing, a batch
            whose shape does not fit the graph input ``input_name`` of ``input_shape``, or NaN/Inf
            inputs (batch and sample named).

    A loader with fewer than ``batches`` batches is used whole, with a :class:`CalibrationWarning`
    naming both counts (the pipeline records it in the step's ``warnings``).
    """
    arrays = list(checked(loader, batches, input_name, input_shape))
    settle(len(arrays), sum(len(a) for a in arrays), batches)
    return arrays


def checked(loader: Iterable | None, batches: int, input_name: str,
            input_shape: list[int | str] | None) -> Iterator[np.ndarray]:
    """The first ``batches`` batches of ``loader``, one at a time, each checked as :func:`take` does
    (``batches`` was validated with the options: a positive integer)."""
    if loader is None:
        raise CalibrationError("Static INT8 needs calibration data: pass a DataLoader of real inputs.")
    for i, raw in enumerate(loader):
        if i >= batches:
            break
        x = as_batch(raw)["x"]
        shape = tuple(x.shape)
        if input_shape is None:
            input_shape = ["N", *shape[1:]]
        fits = len(shape) == len(input_shape) and all(
            not (isinstance(d, int) and d > 0) or d == s for d, s in zip(input_shape, shape, strict=True))
        if not fits:
            raise CalibrationError(
                f"Calibration batch {i} has inputs of shape {shape}, but the model's input "
                f"{input_name!r} takes {_shape_text(input_shape)}: the calibration loader is not the "
                "model's data (or is transformed differently).")
        array = x.detach().to("cpu").float().contiguous().numpy()
        finite = np.isfinite(array.reshape(len(array), -1)).all(axis=1)
        if not finite.all():  # ONNX Runtime's calibrators would fail on them with a bare assertion
            raise CalibrationError(
                f"Calibration batch {i} holds NaN or Inf inputs (its sample {int(np.argmin(finite))} first): "
                "activation ranges cannot be measured on them; clean the calibration data.")
        yield array


def settle(count: int, samples: int, batches: int) -> None:
    """Refuse ``count`` == 0 taken batches; warn when fewer than ``batches`` were there."""
    if not count:
        raise CalibrationError("The calibration loader yielded no batches (an empty dataset, or one smaller "
                               "than a batch with drop_last): static INT8 needs at least one batch.")
    if count < batches:  # said, and recorded by the pipeline step: never silently fewer
        warnings.warn(CalibrationWarning(
            f"calibration asked for {batches} batches but the loader has only {count} "
            f"({samples} samples): static INT8 was calibrated on {count} batch(es); "
            "use a larger validation split (or smaller batches) to calibrate on more."), stacklevel=3)


def method_of(name: str) -> Any:
    """ONNX Runtime's calibration method of one of :data:`METHODS` (the options validated the name)."""
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[name]
