"""Read intermediate outputs by module path with forward hooks: no change to the model's class.

``Taps(model, ["layer2.1", "layer3"])`` records each named module's output on every forward while
it is open; paths are checked up front, and a wrong one fails at once naming the closest real
paths. Hooks are removed when the context closes (or on ``close()``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import TorchSlimError


def module_paths(model: nn.Module) -> list[str]:
    """Every addressable submodule path of ``model`` (the root itself excluded)."""
    return [name for name, _ in model.named_modules() if name]


def resolve(model: nn.Module, path: str, owner: str = "model") -> nn.Module:
    """The submodule at ``path``.

    Raises:
        TorchSlimError: no such path; the message lists the closest real paths.
    """
    modules = dict(model.named_modules())
    if path in modules and path:
        return modules[path]
    paths = module_paths(model)
    near = difflib.get_close_matches(path, paths, n=5, cutoff=0.4)
    near = near or [p for p in paths if "." not in p][:8]
    raise TorchSlimError(
        f"The {owner} ({type(model).__name__}) has no module at path {path!r}. Closest real paths: "
        f"{', '.join(repr(p) for p in near)}. List them all with "
        "[name for name, _ in model.named_modules()]."
    )


def first_tensor(output: Any) -> torch.Tensor:
    """The tensor a tap records: the output itself, or the first tensor of a tuple/list/dict
    output (Hugging Face blocks return tuples whose first item is the hidden state)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise TorchSlimError(f"A tapped module returned {type(output).__name__}, which holds no tensor; "
                         "pass a select function to Taps to pick one.")


class Taps:
    """Forward hooks on ``paths`` of ``model``; ``taps.outputs[path]`` is the latest output.

    Args:
        model: the module to observe.
        paths: module paths such as ``"layer2.1"``.
        owner: "student" or "teacher", used in messages.
        select: maps a module's raw output to the tensor to keep (default :func:`first_tensor`).
    """

    def __init__(self, model: nn.Module, paths: Iterable[str], owner: str = "model",
                 select: Callable[[Any], torch.Tensor] = first_tensor) -> None:
        self.paths = list(dict.fromkeys(paths))
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = []
        modules = [resolve(model, p, owner) for p in self.paths]  # all checked before any hook
        for path, module in zip(self.paths, modules, strict=True):
            self._handles.append(module.register_forward_hook(self._hook(path, select)))

    def _hook(self, path: str, select: Callable[[Any], torch.Tensor]):
        def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
            self.outputs[path] = select(output)

        return record

    def clear(self) -> None:
        self.outputs = {}

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> Taps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
