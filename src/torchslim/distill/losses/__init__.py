"""Knowledge-distillation losses, one file per method, registered by name in :data:`LOSSES`.

``create("kd", T=4)`` builds one by name (recipes use this); the classes can be used directly:
``KD(T=4)``. Every loss is called as ``loss(student: Outputs, teacher: Outputs, batch) -> scalar``
and detaches the teacher's tensors itself.
"""

from __future__ import annotations

import inspect
from typing import Any

from torchslim.core.errors import TorchSlimError
from torchslim.core.registry import did_you_mean
from torchslim.distill.losses.at import AT
from torchslim.distill.losses.attention_kl import AttentionKL
from torchslim.distill.losses.base import KINDS, LOSSES, DistillLoss, Outputs, TapLoss
from torchslim.distill.losses.ce import CE
from torchslim.distill.losses.crd import CRD
from torchslim.distill.losses.dist import DIST
from torchslim.distill.losses.dkd import DKD
from torchslim.distill.losses.embed_cos import EmbedCos, EmbedSim
from torchslim.distill.losses.embed_mse import EmbedMSE
from torchslim.distill.losses.fitnet import FitNet
from torchslim.distill.losses.hidden_mse import HiddenMSE
from torchslim.distill.losses.kd import KD
from torchslim.distill.losses.pkt import PKT
from torchslim.distill.losses.relation_kl import RelationKL
from torchslim.distill.losses.rkd import RKD
from torchslim.distill.losses.sp import SP

__all__ = ["AT", "CE", "CRD", "DIST", "DKD", "KD", "KINDS", "LOSSES", "PKT", "RKD", "SP", "AttentionKL",
           "DistillLoss", "EmbedCos", "EmbedMSE", "EmbedSim", "FitNet", "HiddenMSE", "Outputs", "RelationKL", "TapLoss",
           "create", "describe_problems"]


def create(name: str, teacher: str | None = None, **kwargs: Any) -> DistillLoss:
    """The loss registered as ``name``, built with ``kwargs``.

    ``teacher`` names which of several teachers the loss reads (a ``DistillTask`` teacher name);
    by default the first teacher, or for logit losses all of them.

    Raises:
        UnknownNameError: no such loss (the message lists them and the closest name).
        TorchSlimError: an argument the loss does not take, or a required one missing; the
            message lists the loss's arguments.
    """
    cls = LOSSES.get(name)
    params = inspect.signature(cls).parameters
    valid = ", ".join(params) or "(none)"
    unknown = [key for key in kwargs if key not in params]
    if unknown:
        raise TorchSlimError(f"Distillation loss {name!r} takes no argument(s) {', '.join(map(repr, unknown))}."
                             f"{did_you_mean(unknown[0], list(params))} Its arguments: {valid}.")
    missing = [p for p, spec in params.items() if spec.default is inspect.Parameter.empty and p not in kwargs]
    if missing:
        raise TorchSlimError(f"Distillation loss {name!r} needs {', '.join(missing)}. Its arguments: {valid}.")
    problems = cls.check_options(kwargs)
    if problems:
        _own_message(cls, kwargs)
        raise TorchSlimError(f"{name}: {describe_problems(cls, problems)}")
    loss = cls(**kwargs)
    if teacher is not None:
        loss.teacher = str(teacher)
    return loss


def _own_message(cls: type[DistillLoss], kwargs: dict[str, Any]) -> None:
    """Raises the loss's own message when its constructor rejects ``kwargs`` (it words bounds and
    half-given taps best); the typed options then catch what it lets through (NaN, infinity, types)."""
    try:
        cls(**kwargs)
    except TorchSlimError:
        raise
    except Exception:  # noqa: BLE001 - a wrong type may fail anywhere inside; the typed check names it
        return


def describe_problems(cls: type[DistillLoss], problems: list[dict]) -> str:
    """One sentence per bad option (its value and what is valid), then the loss's options."""
    options = list(cls.options_model().model_fields)
    parts = []
    for error in problems:
        key = str(error["loc"][0]) if error["loc"] else "?"
        if error["type"] == "extra_forbidden":
            parts.append(f"it takes no option {key!r}.{did_you_mean(key, options)}")
        elif error["type"] == "missing":
            parts.append(f"option {key!r} is required.")
        else:
            parts.append(f"option {key} = {error.get('input')!r} is invalid: {error['msg']}.")
    return " ".join(parts) + f" Its options: {cls.describe_options()}."
