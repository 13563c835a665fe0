"""What to prune and what to leave alone: ratios, ignored layers, the classifier.

Every path a user names is checked here, before torch-pruning sees the model, so
a typo fails at once with the closest real paths.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.core.taps import first_tensor, resolve
from torchslim.prune.errors import PruneError


def resolve_path(model: nn.Module, path: str, where: str) -> nn.Module:
    """The submodule at ``path``; a PruneError naming ``where`` and the closest real paths if none."""
    if not isinstance(path, str):
        raise PruneError(f"{where}: module paths are strings such as 'layer1.0.conv1', got {path!r}.")
    try:
        return resolve(model, path)
    except TorchSlimError as exc:
        raise PruneError(f"{where}: {exc}") from None


def resolve_ignore(model: nn.Module, items: Iterable[str | type]) -> tuple[list[nn.Module], list[str]]:
    """Modules to leave alone, from module paths (``"layer1.0"``: the module and everything in it)
    or module types (``nn.BatchNorm2d``, or its class name as a string); also their labels.

    Raises:
        PruneError: a path that does not exist (the closest real paths listed) or a type that is
            not an ``nn.Module`` class.
    """
    modules: list[nn.Module] = []
    labels: list[str] = []
    named = dict(model.named_modules())
    class_names = {type(m).__name__: type(m) for m in named.values()}
    for item in items:
        if isinstance(item, type) and issubclass(item, nn.Module):
            kind = item
        elif isinstance(item, str) and item not in named and item in class_names:
            kind = class_names[item]
        elif isinstance(item, str):
            modules.append(resolve_path(model, item, f"ignore={item!r}"))
            labels.append(item)
            continue
        else:
            raise PruneError(f"ignore items must be module paths or nn.Module classes, got {item!r}.")
        matched = [m for p, m in named.items() if p and isinstance(m, kind)]
        modules += matched
        labels.append(f"{kind.__name__} ({len(matched)} modules)")
    return modules, labels


def resolve_ratios(model: nn.Module, ratios: Mapping[str, float] | None) -> dict[nn.Module, float]:
    """``{module path: ratio}`` as ``{module: ratio}``, every path checked (the ratios' bounds are the
    config's)."""
    return {resolve_path(model, path, f"ratios[{path!r}]"): float(r) for path, r in (ratios or {}).items()}


def find_classifier(model: nn.Module, example_input: torch.Tensor) -> str | None:
    """The path of the layer that produces the model's output (the classifier): the module whose
    output tensor *is* the model's output, else the last ``nn.Linear`` with as many outputs as the
    model has classes; None when there is neither."""
    produced: list[tuple[torch.Tensor, str]] = []  # tensors kept alive, so identity is meaningful
    handles = [m.register_forward_hook(lambda _m, _i, out, p=path: produced.append((out, p)))
               for path, m in model.named_modules() if path and isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = first_tensor(model(example_input))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    for tensor, path in reversed(produced):
        if tensor is out:
            return path
    linears = [p for p, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == out.shape[-1]]
    return linears[-1] if linears else None
