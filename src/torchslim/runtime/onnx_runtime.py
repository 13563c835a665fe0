"""An ONNX file run by ONNX Runtime's CPU execution provider.

The session is created with the thread count fixed (``intra_op_num_threads``; one inter-op
thread, sequential execution) and every graph optimisation on (``ORT_ENABLE_ALL``: constant
folding, QDQ fusion into integer kernels, layout transforms). Changing the thread count creates a
new session, since ONNX Runtime fixes it at creation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchslim.core.errors import CorruptFileError, TorchSlimError
from torchslim.core.registry import did_you_mean
from torchslim.runtime import artifact
from torchslim.runtime.base import Runtime
from torchslim.runtime.graph import graph_input, graph_macs, kernel_of, parameter_count, read_model

OPTIMIZATION = ("disabled", "basic", "extended", "all")


def session_options(threads: int | None, optimization: str = "all") -> Any:
    import onnxruntime as ort

    if optimization not in OPTIMIZATION:
        raise TorchSlimError(f"Unknown graph optimization level {optimization!r}."
                             f"{did_you_mean(optimization, OPTIMIZATION)} Valid: {', '.join(OPTIMIZATION)}.")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default (one per physical core)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[optimization]
    options.log_severity_level = 3  # errors only
    return options


class OnnxModel(Runtime):
    """Run an ONNX file (or an artifact directory holding ``model.onnx``) with ONNX Runtime.

    Args:
        path: an ``.onnx`` file, or a directory with ``model.onnx``; a sidecar (``X.json`` beside
            ``X.onnx``, or ``model.json``) is read when present and the file's hash checked.
        threads: intra-op threads (None: ONNX Runtime's default).
        optimization: graph optimisation level, "all" (default), "extended", "basic", "disabled".

    Raises:
        TorchSlimError: no file; a graph with more than one input.
        CorruptFileError: the file is not valid ONNX, or differs from its sidecar's hash.
    """

    runtime = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None, optimization: str = "all") -> None:
        super().__init__(threads)
        self._onnx, self._sidecar = artifact.resolve(path)
        if not self._onnx.is_file():
            raise TorchSlimError(f"No ONNX model at {path}: expected an .onnx file or a directory "
                                 f"holding {artifact.ONNX_FILE}.")
        self.info = artifact.read_sidecar(self._onnx, self._sidecar)
        self.graph = read_model(self._onnx)
        self.input_name, self.input_shape = graph_input(self.graph)
        self.optimization = optimization
        self._session = self._new_session()

    def _new_session(self) -> Any:
        import onnxruntime as ort

        try:
            return ort.InferenceSession(str(self._onnx), session_options(self._threads, self.optimization),
                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own pybind exception types
            raise CorruptFileError(f"ONNX Runtime cannot load {self._onnx}: {str(exc).strip()[:300]}") from None

    @property
    def path(self) -> Path:
        return self._onnx

    @property
    def kernel(self) -> str:
        return self.info.get("kernel") or kernel_of(self.graph)

    def set_threads(self, threads: int) -> None:
        if threads != self._threads:
            super().set_threads(threads)
            self._session = self._new_session()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        out = self._session.run(None, {self.input_name: array})[0]
        return torch.from_numpy(np.ascontiguousarray(out)).to(x.device)

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> OnnxModel:
        """Open an ``.onnx`` file or artifact directory (the same as the constructor)."""
        return cls(path, threads)

    def save(self, path: str | Path) -> Path:
        """Copy the ``.onnx`` (and its sidecar) to ``path``: an ``.onnx`` file or a directory."""
        onnx_path, _ = artifact.write(path, self._onnx.read_bytes(), self.info)
        return onnx_path

    def parameter_count(self) -> int:
        return parameter_count(self.graph)

    def macs(self, example_input: torch.Tensor) -> int:
        macs, unknown = graph_macs(self.graph, list(example_input.shape[1:]))
        if unknown:
            raise TorchSlimError(f"MACs of {self._onnx} cannot be counted: shape inference gave no shape "
                                 f"for {len(unknown)} node(s) ({', '.join(unknown[:5])}).")
        return macs
