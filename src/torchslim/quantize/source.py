"""The FP32 ONNX graph a quantizer starts from, whatever it was given.

A torch module is exported (``torchslim.export.onnx``, checked against torch on the example and
on real batches); an ``.onnx`` file, an artifact directory or an ``OnnxModel`` is read and checked
(a damaged file is a :class:`CorruptFileError`); a checkpoint directory is loaded first.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.core.tensors import sha256_file
from torchslim.export import onnx as export_onnx
from torchslim.runtime import OnnxModel, Runtime, TorchModel, load
from torchslim.runtime.graph import graph_input, kernel_of, read_model
from torchslim.train.batch import as_batch


@dataclasses.dataclass
class Source:
    """``path``: the FP32 graph in the work directory; ``info``: what it came from (for the record)."""

    path: Path
    graph: onnx.ModelProto
    info: dict[str, Any]
    module: nn.Module | None = None

    @property
    def input(self) -> tuple[str, list[int | str]]:
        return graph_input(self.graph)


def _example(example_input: torch.Tensor | None, data: Iterable | None) -> torch.Tensor:
    if example_input is not None:
        return example_input
    for raw in data or ():
        return as_batch(raw)["x"][:2]
    raise TorchSlimError("Exporting a torch model needs an example input: pass example_input=, or data "
                         "whose first batch can serve.")


def from_module(module: nn.Module, workdir: Path, example_input: torch.Tensor | None,
                data: Iterable | None) -> Source:
    from torchslim.models import spec_of

    path = workdir / "fp32.onnx"
    report = export_onnx(module, _example(example_input, data), path, check_data=data)
    info = {"kind": "torch", "class": type(module).__name__, "spec": spec_of(module), "export": report.to_dict()}
    info["export"]["path"] = "(temporary)"
    return Source(path, read_model(path), info, module)


def from_onnx(path: Path, workdir: Path, info: dict[str, Any] | None = None) -> Source:
    graph = read_model(path)
    if kernel_of(graph).startswith("INT8"):
        raise TorchSlimError(f"{path} is already quantized ({kernel_of(graph)}); quantize its FP32 source.")
    target = workdir / "fp32.onnx"
    shutil.copyfile(path, target)
    return Source(target, graph, {"kind": "onnx", "path": str(path), "sha256": sha256_file(path), **(info or {})})


def resolve(model: Any) -> nn.Module | OnnxModel:
    """``model`` as a torch module or an ONNX model (paths and runtimes opened or unwrapped)."""
    if isinstance(model, (str, Path)):
        model = load(model)
    if isinstance(model, TorchModel):
        model = model.module
    if isinstance(model, (nn.Module, OnnxModel)):
        return model
    if isinstance(model, Runtime):
        raise TorchSlimError(f"Cannot quantize a {type(model).__name__}; pass the torch model or an .onnx file.")
    raise TorchSlimError(f"Cannot quantize a {type(model).__name__}: pass an nn.Module, an .onnx path, an "
                         "artifact or checkpoint directory, or a torchslim runtime.")


def prepare(model: Any, workdir: Path, example_input: torch.Tensor | None = None,
            data: Iterable | None = None) -> Source:
    """The FP32 graph of ``model`` (module, runtime, ``.onnx`` or model directory) in ``workdir``."""
    target = resolve(model)
    if isinstance(target, nn.Module):
        return from_module(target, workdir, example_input, data)
    return from_onnx(target.path, workdir, {"record": target.info} if target.info else None)
