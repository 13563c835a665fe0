"""What to prune and what to leave alone: ratios, ignored layers, the classifier, attention heads.

Everything a user names (a path, a ratio) is checked here, before torch-pruning sees the model, so
a typo fails at once with the closest real paths.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.core.taps import first_tensor, resolve
from torchslim.prune.errors import PruneError

# Attributes under which attention modules keep their head count (timm, Hugging Face, hand-written).
HEAD_ATTRS = ("num_heads", "n_heads", "num_attention_heads", "n_head", "heads")
# Child Linear layers that project the input into per-head queries, keys and values.
QKV_NAMES = frozenset({"q", "k", "v", "qkv", "q_proj", "k_proj", "v_proj", "query", "key", "value",
                       "to_q", "to_k", "to_v", "to_qkv", "wq", "wk", "wv"})


def check_ratio(value: Any, where: str) -> float:
    """``value`` as a float strictly between 0 and 1.

    Raises:
        PruneError: anything else, naming ``where`` it came from.
    """
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not 0.0 < float(value) < 1.0:
        raise PruneError(f"{where} must be the fraction of channels to remove, strictly between 0 and 1 "
                         f"(0.5 removes half of each layer's channels); got {value!r}.")
    return float(value)


def _resolve(model: nn.Module, path: str, where: str) -> nn.Module:
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
            modules.append(_resolve(model, item, f"ignore={item!r}"))
            labels.append(item)
            continue
        else:
            raise PruneError(f"ignore items must be module paths or nn.Module classes, got {item!r}.")
        matched = [m for p, m in named.items() if p and isinstance(m, kind)]
        modules += matched
        labels.append(f"{kind.__name__} ({len(matched)} modules)")
    return modules, labels


def resolve_ratios(model: nn.Module, ratios: Mapping[str, float] | None) -> dict[nn.Module, float]:
    """``{module path: ratio}`` as ``{module: ratio}``, every path and ratio checked."""
    return {_resolve(model, path, f"ratios[{path!r}]"): check_ratio(r, f"ratios[{path!r}]")
            for path, r in (ratios or {}).items()}


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


@dataclass
class AttentionBlock:
    """An attention module found in the model: its head count and its projections."""

    path: str
    module: nn.Module
    heads_attr: str | None
    heads: int
    qkv: dict[str, nn.Linear] = field(default_factory=dict)  # path -> per-head projection
    out: dict[str, nn.Linear] = field(default_factory=dict)  # path -> output projection

    @property
    def head_prunable(self) -> bool:
        """Heads can go as whole heads: per-head projections are Linear layers and an output
        projection maps the heads back to the residual stream (which then stays untouched)."""
        return bool(self.qkv) and bool(self.out) and self.heads_attr is not None

    def heads_kept(self, ratio: float) -> int:
        """Heads left after removing ``ratio`` of them (torch-pruning rounds the removal up)."""
        return self.heads - math.ceil(ratio * self.heads)


def find_attention(model: nn.Module) -> list[AttentionBlock]:
    """Every attention module: ``nn.MultiheadAttention`` and any module with an integer head count
    (``num_heads``, ``n_heads``, ...) among its attributes."""
    found = []
    for path, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            found.append(AttentionBlock(path, module, None, module.num_heads))
            continue
        attr = next((a for a in HEAD_ATTRS if _positive_int(getattr(module, a, None))), None)
        if attr is None:
            continue
        block = AttentionBlock(path, module, attr, getattr(module, attr))
        for name, child in module.named_children():
            if isinstance(child, nn.Linear):
                target = block.qkv if name in QKV_NAMES else block.out
                target[f"{path}.{name}" if path else name] = child
        found.append(block)
    return found


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
