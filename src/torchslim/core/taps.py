"""Read intermediate outputs by module path with forward hooks: no change to the model's class.

``Taps(model, ["layer2.1", "layer3"])`` records each named module's output on every forward while
it is open; paths are checked up front, and a wrong one fails at once naming the closest real
paths. A module that runs several times per forward is never recorded silently as its last call:
the tap warns, keeps every call or refuses, as chosen (``calls=``). Hooks are removed when the
context closes (or on ``close()``).
"""

from __future__ import annotations

import difflib
import warnings
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
    if not isinstance(path, str):
        raise TorchSlimError(f"Module paths of the {owner} are strings such as 'layer2.1', got {path!r}.")
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


CALL_MODES = ("warn", "last", "all", "error")


class Taps:
    """Forward hooks on ``paths`` of ``model``; ``taps.outputs[path]`` is what the module produced.

    A module can run more than once per forward pass (a weight-shared block applied twice). What
    a tap then keeps is ``calls``:

    - ``"warn"`` (default): the last call's output, and a ``UserWarning`` naming the module path
      and its call count (once per path), since the earlier calls are dropped;
    - ``"last"``: the last call's output, silently (the user chose it);
    - ``"all"``: a tuple of every call's output, in call order, for every tapped path (a tuple
      of one tensor when the module ran once);
    - ``"error"``: a :class:`TorchSlimError` at the second call.

    A forward pass is one call of ``model`` itself: call counts (and ``"all"`` tuples) restart there.

    Args:
        model: the module to observe.
        paths: module paths such as ``"layer2.1"``.
        owner: "student" or "teacher", used in messages.
        select: maps a module's raw output to the tensor to keep (default :func:`first_tensor`).
        calls: what to keep of a module that runs several times per forward (above).

    Raises:
        TorchSlimError: a path that does not exist (the closest real paths listed), an unknown
            ``calls`` mode.
    """

    def __init__(self, model: nn.Module, paths: Iterable[str], owner: str = "model",
                 select: Callable[[Any], torch.Tensor] = first_tensor, calls: str = "warn") -> None:
        if calls not in CALL_MODES:
            near = difflib.get_close_matches(str(calls), CALL_MODES, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise TorchSlimError(f"Taps calls={calls!r} is not a mode{hint}; valid: "
                                 f"{', '.join(map(repr, CALL_MODES))}.")
        if isinstance(paths, str):
            paths = [paths]
        self.paths = list(dict.fromkeys(paths))
        self.owner, self.calls = owner, calls
        self.outputs: dict[str, torch.Tensor | tuple[torch.Tensor, ...]] = {}
        self.counts: dict[str, int] = {}  # calls of each tapped module in the current forward pass
        self._warned: set[str] = set()
        self._handles = []
        modules = [resolve(model, p, owner) for p in self.paths]  # all checked before any hook
        for path, module in zip(self.paths, modules, strict=True):
            self._handles.append(module.register_forward_hook(self._hook(path, select)))
        if self.paths:
            self._handles.append(model.register_forward_pre_hook(self._start))
            self._handles.append(model.register_forward_hook(self._finish))

    def _start(self, _model: nn.Module, _inputs: Any) -> None:
        self.counts = {}
        if self.calls == "all":
            self.outputs = {}

    def _hook(self, path: str, select: Callable[[Any], torch.Tensor]):
        def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
            count = self.counts[path] = self.counts.get(path, 0) + 1
            if count > 1 and self.calls == "error":
                raise TorchSlimError(
                    f"Tap on {path!r} of the {self.owner}: the module ran {count} times in one forward pass (a "
                    "weight-shared module called more than once) and the tap was opened with calls='error'. Tap a module that "
                    "runs once, or open the tap with calls='all' (every call, a tuple) or calls='last'.")
            value = select(output)
            if self.calls == "all":
                self.outputs[path] = (*self.outputs.get(path, ()), value)
            else:
                self.outputs[path] = value

        return record

    def _finish(self, _model: nn.Module, _inputs: Any, _output: Any) -> None:
        if self.calls != "warn":
            return
        for path, count in self.counts.items():
            if count > 1 and path not in self._warned:
                self._warned.add(path)
                warnings.warn(
                    f"Tap on {path!r} of the {self.owner}: the module ran {count} times in one forward pass and "
                    "the tap keeps only the last call's output. Tap a module that runs once, or open the tap with "
                    "calls='all' (every call, a tuple) or calls='last' (this, without the warning).",
                    UserWarning, stacklevel=2)

    def clear(self) -> None:
        self.outputs = {}
        self.counts = {}

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> Taps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
