"""Find the module that stops a model from exporting, so the error can name it.

The exporter's own error points into torch internals. Here every submodule's inputs are recorded
in one eager forward pass, then the children of the failing module are exported on their own,
depth first: the deepest module that fails alone is named. When every child exports alone, the
failure lies in the parent's own ``forward`` code, and the parent is named.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

# Loggers whose warnings and graph dumps flood the terminal while exporting.
NOISY_LOGGERS = ("torch", "torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "torch._export",
                 "onnxscript", "onnx_ir")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the exporter's progress prints, warnings and log records; errors still propagate."""
    levels = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def record_inputs(model: nn.Module, example: torch.Tensor) -> dict[str, tuple[tuple, dict]]:
    """``{module path: (args, kwargs)}`` of each submodule's first call in one forward pass."""
    seen: dict[str, tuple[tuple, dict]] = {}
    hooks = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(_module: nn.Module, args: tuple, kwargs: dict, name: str = name) -> None:
            seen.setdefault(name, (args, kwargs))

        hooks.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return seen


def exports_alone(module: nn.Module, args: tuple, kwargs: dict, attempt: Callable[..., Any]) -> bool:
    try:
        with quiet():
            attempt(module, args, kwargs)
    except Exception:  # any failure means "this module does not export alone"
        return False
    return True


def torch_export_attempt(module: nn.Module, args: tuple, kwargs: dict) -> None:
    torch.export.export(module, args, kwargs=kwargs, strict=False)


def onnx_export_attempt(module: nn.Module, args: tuple, kwargs: dict) -> None:
    torch.onnx.export(module, args, kwargs=kwargs, dynamo=True, optimize=False, verbose=False,
                      external_data=False)


def failing_module(model: nn.Module, example: torch.Tensor,
                   attempt: Callable[..., Any] = torch_export_attempt) -> tuple[str, nn.Module]:
    """``(module path, module)`` of the deepest module that fails ``attempt`` on its own inputs.

    The path is ``""`` when the failure is in the root model's own forward code. Children that
    take non-tensor arguments are tried as they were called; their inputs are baked in.
    """
    inputs = record_inputs(model, example)
    path, current = "", model
    while True:
        for name, child in current.named_children():
            full = f"{path}.{name}" if path else name
            if full in inputs and not exports_alone(child, *inputs[full], attempt):
                path, current = full, child
                break
        else:
            return path, current
