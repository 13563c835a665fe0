"""Deployed models behind one interface: a torch module or an ONNX Runtime session.

``runtime.load(path)`` opens an ``.onnx`` file, an artifact directory with ``model.onnx`` (ONNX
Runtime) or a ``torchslim`` checkpoint directory (torch eager); ``runtime.wrap(x)`` accepts any of
those or an ``nn.Module``. Every runtime is called on tensors, has a thread count, saves and
loads, and is measured by ``torchslim.measure`` like a module.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.runtime import artifact
from torchslim.runtime.base import Runtime
from torchslim.runtime.onnx_runtime import OnnxModel
from torchslim.runtime.torch_eager import TorchModel


def load(path: str | Path, threads: int | None = None) -> Runtime:
    """Open a saved model: ``.onnx`` file, directory with ``model.onnx``, or checkpoint directory.

    Raises:
        TorchSlimError: nothing loadable at ``path``.
        CorruptFileError: a damaged ``.onnx`` (or one that differs from its sidecar).
    """
    path = Path(path)
    if path.suffix == ".onnx" or (path.is_dir() and (path / artifact.ONNX_FILE).is_file()):
        return OnnxModel(path, threads)
    if path.is_dir() and (path / "model.safetensors").is_file():
        return TorchModel.load(path, threads)
    raise TorchSlimError(f"Nothing to load at {path}: expected an .onnx file, a directory holding "
                         f"{artifact.ONNX_FILE}, or a checkpoint directory (model.safetensors + model.json).")


def wrap(model: nn.Module | Runtime | str | Path, threads: int | None = None) -> Runtime:
    """``model`` as a :class:`Runtime` (a runtime is returned as is; a path is loaded)."""
    if isinstance(model, Runtime):
        return model
    if isinstance(model, nn.Module):
        return TorchModel(model, threads)
    if isinstance(model, (str, Path)):
        return load(model, threads)
    raise TorchSlimError(f"Cannot run a {type(model).__name__}: pass an nn.Module, a runtime, an .onnx "
                         "path or a model directory.")


__all__ = ["OnnxModel", "Runtime", "TorchModel", "load", "wrap"]
