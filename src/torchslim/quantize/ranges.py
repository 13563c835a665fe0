"""Calibration batches streamed to ONNX Runtime's calibrators in runs of bounded memory.

ONNX Runtime's calibrators run an *augmented* copy of the graph: MinMax adds a ReduceMin and a
ReduceMax on every activation, entropy and percentile make every activation a graph output. In the
order its calibration session runs that graph, every activation of a run stays alive until the run
ends, so one run costs ``samples x every activation of one sample``. Measured on the shipped
ResNet-20 (1.5 MB of activations per 28 x 28 image) at a validation batch of 1000: the augmented
graph held 1.5 GB where the plain graph holds 0.2 GB, and the session's arena doubled it (3.5 GB
resident). Priority-based execution order would avoid it, but the session's options cannot be
reached through ``quantize_static``; so the samples of a run are bounded instead:

* the loader is read batch by batch, twice — once to check every batch before any heavy work, once
  while calibrating — and no more than one batch is held at a time (a one-shot iterator, which
  cannot be read twice, is kept whole);
* each batch is cut into runs of at most :func:`samples_per_run` samples, sized so that one run's
  activations stay under ``RUN_BYTES``;
* histogram calibrators (entropy, percentile) fold each run into their histograms before the
  next (``CalibStridedMinMax``), instead of keeping every activation of every batch.

MinMax ranges are exactly those of one pass over all batches (a minimum of minima is the minimum);
histograms are merged run by run, as ONNX Runtime does for strided calibration.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
import onnx

from torchslim.quantize import calibration as calib

RUN_BYTES = 64 * 2**20  # activations of one calibration run: what the calibration session holds (x2 arena)
DEFAULT_RUN = 32  # samples per run when the graph records no activation shapes
ELEMENT_BYTES = {onnx.TensorProto.FLOAT: 4, onnx.TensorProto.FLOAT16: 2, onnx.TensorProto.BFLOAT16: 2,
                 onnx.TensorProto.DOUBLE: 8}


def _iterator(loader: Iterable) -> Iterator:
    try:
        return iter(loader)
    except TypeError:
        raise calib.CalibrationError(f"Calibration data must be an iterable of batches (a DataLoader, or a list "
                                     f"of (x, y)), got an object of type {type(loader).__name__}.") from None


class Stream:
    """The first ``batches`` batches of ``loader`` as checked float32 arrays, read again on each pass.

    :meth:`survey` reads them once (every batch checked, as :func:`calibration.take` does, and the
    fewer-than-asked warning given) and keeps only their sizes and the first two samples.
    """

    def __init__(self, loader: Iterable | None, batches: int, input_name: str,
                 input_shape: list[int | str] | None) -> None:
        self.loader, self.batches = loader, batches
        self.input_name, self.input_shape = input_name, input_shape
        self.sizes: list[int] = []
        self.head: np.ndarray | None = None
        # A one-shot iterator (a generator) cannot be read twice: its batches are kept instead.
        self.kept: list[np.ndarray] | None = [] if loader is not None and _iterator(loader) is loader else None

    def survey(self) -> Stream:
        """Check every batch before any heavy work; raises :class:`CalibrationError` (see ``take``)."""
        sizes, head = [], None
        for array in calib.checked(self.loader, self.batches, self.input_name, self.input_shape):
            sizes.append(len(array))
            head = array[:2].copy() if head is None else head
            if self.kept is not None:
                self.kept.append(array)
        calib.settle(len(sizes), sum(sizes), self.batches)
        self.sizes, self.head = sizes, head
        return self

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.kept is not None:
            return iter(self.kept)
        # The loader is read again: a batch is checked again, so a loader that changes between
        # passes (one that shuffles) cannot slip NaN or a wrong shape past the survey.
        return calib.checked(self.loader, self.batches, self.input_name, self.input_shape)

    @property
    def samples(self) -> int:
        return sum(self.sizes)


def _dims_bytes(value: onnx.ValueInfoProto, bound: dict[str, int]) -> int:
    """Bytes of one sample of ``value`` (its first dimension is the batch); 0 when not a float tensor."""
    tensor = value.type.tensor_type
    size = ELEMENT_BYTES.get(tensor.elem_type, 0)
    if not size or not tensor.HasField("shape") or len(tensor.shape.dim) == 0:
        return 0
    for dim in tensor.shape.dim[1:]:
        size *= dim.dim_value if dim.HasField("dim_value") else bound.get(dim.dim_param, 1)
    return size


def activation_bytes(graph: onnx.ModelProto, sample_shape: tuple[int, ...]) -> int:
    """Bytes of every float activation of one sample, from the graph's recorded shapes.

    A free dimension of the input (a sequence length, say) takes its size in ``sample_shape``;
    other free dimensions count as 1, so this is a lower estimate where shapes are data-dependent.
    """
    bound: dict[str, int] = {}
    first = graph.graph.input[0].type.tensor_type.shape.dim[1:] if graph.graph.input else []
    for dim, size in zip(first, sample_shape, strict=False):
        if dim.dim_param:
            bound[dim.dim_param] = size
    values = [*graph.graph.value_info, *graph.graph.output]
    return sum(_dims_bytes(v, bound) for v in values)


def samples_per_run(graph: onnx.ModelProto, sample_shape: tuple[int, ...]) -> int:
    """How many samples one calibration run takes so that its activations stay under ``RUN_BYTES``."""
    per_sample = activation_bytes(graph, sample_shape)
    return max(1, RUN_BYTES // per_sample) if per_sample else DEFAULT_RUN


class Reader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over ``stream`` in runs of ``per_run`` samples.

    ``set_range`` serves ONNX Runtime's strided calibration (``CalibStridedMinMax``), which asks
    for consecutive ranges of runs and folds each into the calibrator's result before the next.
    """

    def __init__(self, input_name: str, stream: Stream, per_run: int) -> None:
        self.input_name, self.stream, self.per_run = input_name, stream, per_run
        self.runs = sum(math.ceil(n / per_run) for n in stream.sizes)
        self.rewind()

    def _chunks(self) -> Iterator[np.ndarray]:
        for array in self.stream:
            for start in range(0, len(array), self.per_run):
                yield array[start:start + self.per_run]  # a view: rows of a C-contiguous array

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._left is not None:
            if self._left == 0:
                return None
            self._left -= 1
        chunk = next(self._it, None)
        if chunk is None:
            return None
        self._served += 1
        return {self.input_name: chunk}

    def set_range(self, start_index: int, end_index: int) -> None:
        if start_index != self._served:  # ONNX Runtime asks for consecutive strides; anything else is a bug here
            raise RuntimeError(f"calibration runs are read in order: asked from {start_index}, at {self._served}")
        self._left = end_index - start_index

    def rewind(self) -> None:
        self._it, self._served, self._left = self._chunks(), 0, None

    def __len__(self) -> int:
        return self.runs
