"""Which module was running when a forward pass failed: a short error instead of a deep traceback.

torch-pruning traces a model by running it; a model that cannot be traced, or a pruned model whose
shapes no longer agree, fails somewhere deep inside torch. :class:`ModuleStack` keeps the path of
the innermost module running, so the error can name it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from torchslim.prune.errors import PruneError

T = TypeVar("T")


class ModuleStack:
    """Forward pre-hooks and hooks on every submodule that track the running module's path.

    A module that raises never reaches its forward hook, so after an exception ``stack[-1]`` is the
    innermost module that was running.
    """

    def __init__(self, model: nn.Module) -> None:
        self.stack: list[str] = []
        self._handles = []
        for path, module in model.named_modules():
            if path:
                self._handles.append(module.register_forward_pre_hook(self._enter(path)))
                self._handles.append(module.register_forward_hook(self._leave))

    def _enter(self, path: str):
        def hook(_module: nn.Module, _args: Any) -> None:
            self.stack.append(path)

        return hook

    def _leave(self, _module: nn.Module, _args: Any, _output: Any) -> None:
        if self.stack:
            self.stack.pop()

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def run_naming_module(model: nn.Module, what: str, fn: Callable[[], T], hint: str) -> T:
    """``fn()`` (which runs ``model``), turning any exception into a :class:`PruneError` that names
    the innermost module that was running (``what`` describes the action, ``hint`` the remedy)."""
    stack = ModuleStack(model)
    try:
        return fn()
    except PruneError:
        raise
    except Exception as exc:  # noqa: BLE001 - re-raised as a PruneError that names the module
        where = stack.stack[-1] if stack.stack else None
        modules = dict(model.named_modules())
        if where is not None:
            place = f"in module {where!r} ({type(modules[where]).__name__})"
        else:
            place = f"in {type(model).__name__} itself (outside any submodule)"
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise PruneError(f"{what} failed {place}: {type(exc).__name__}: {message[:300]}. {hint}") from None
    finally:
        stack.close()
