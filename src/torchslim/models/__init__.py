"""Model families for small images; ``create(name, ...)`` builds any registered one."""

from __future__ import annotations

import builtins
from typing import Any

from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.models import cnn as _cnn  # noqa: F401  (registers)
from torchslim.models import mlp as _mlp  # noqa: F401
from torchslim.models import resnet as _resnet  # noqa: F401
from torchslim.models.registry import MODELS

SPEC_ATTR = "_torchslim_spec"


def create(name: str, num_classes: int = 10, in_channels: int = 1, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name``; the recipe is kept for checkpoints.

    Raises:
        UnknownNameError: no such model (valid names and the closest one listed).
        TorchSlimError: a keyword the family does not take, or a bad value.
    """
    factory = MODELS.get(name)
    if num_classes < 1 or in_channels < 1:
        raise TorchSlimError(f"num_classes and in_channels must be positive, got "
                             f"{num_classes!r} and {in_channels!r}.")
    try:
        model = factory(num_classes=num_classes, in_channels=in_channels, **kwargs)
    except TypeError as exc:
        raise TorchSlimError(f"Model {name!r} does not accept {sorted(kwargs)}: {exc}.") from None
    spec = {"name": name, "num_classes": num_classes, "in_channels": in_channels,
            "kwargs": {k: builtins.list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}}
    object.__setattr__(model, SPEC_ATTR, spec)
    return model


def spec_of(model: nn.Module) -> dict | None:
    """The ``create`` arguments that built ``model``, or None for a model built elsewhere."""
    return getattr(model, SPEC_ATTR, None)


def from_spec(spec: dict) -> nn.Module:
    """Rebuild a model from :func:`spec_of`'s record."""
    kwargs = {k: tuple(v) if isinstance(v, builtins.list) else v for k, v in spec.get("kwargs", {}).items()}
    return create(spec["name"], spec["num_classes"], spec["in_channels"], **kwargs)


def list() -> builtins.list[str]:  # noqa: A001
    """Registered model names."""
    return MODELS.list()


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["MODELS", "create", "from_spec", "list", "num_parameters", "spec_of"]
