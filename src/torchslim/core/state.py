"""Applied steps: the ordered record of what changed a model's architecture, kept beside its weights.

A step that reshapes a model (channel pruning removes channels) is recorded as a JSON-able dict
with a ``"kind"``; the model carries its list of steps (``applied_steps(model)``), ``save_model``
writes it into ``model.json`` and ``load_model`` replays it on a fresh instance of the original
architecture before the weights are copied in — no pickled module is ever loaded. Each kind
registers its replay function in :data:`REPLAYERS`, so a new kind is one decorator, and names the
module that registers it in :data:`PROVIDERS`, so a checkpoint loads in a process that has not
imported that module yet.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from torch import nn

from torchslim.core.errors import CheckpointError
from torchslim.core.registry import Registry

STEPS_ATTR = "_torchslim_applied_steps"

Replayer = Callable[[nn.Module, dict[str, Any]], nn.Module]
# kind -> f(model, step) -> model with the step applied (raises a TorchSlimError when it cannot be)
REPLAYERS: Registry = Registry("applied-step kind")
# kind -> the module whose import registers its replayer. ``load_model`` alone (a fresh process, the
# CLI's evaluate) must replay a pruned model; a static import would put core above the packages
# that reshape models, so the module is imported when a recorded step first needs it. Only the
# modules named here are ever imported: a kind read from a model.json cannot choose another.
PROVIDERS = {"prune.channels": "torchslim.prune.surgery"}


def applied_steps(model: nn.Module) -> list[dict[str, Any]]:
    """The steps that turned a fresh instance of ``model``'s architecture into ``model`` (oldest
    first); empty for a model no step has reshaped."""
    return list(getattr(model, STEPS_ATTR, []))


def set_applied_steps(model: nn.Module, steps: list[dict[str, Any]]) -> None:
    """Attach ``steps`` to ``model`` (kept by ``copy.deepcopy``, written by ``save_model``)."""
    object.__setattr__(model, STEPS_ATTR, list(steps))


def replay_steps(model: nn.Module, steps: list[dict[str, Any]], source: str) -> nn.Module:
    """Apply ``steps`` in order to ``model`` (a fresh instance of the original architecture).

    Raises:
        CheckpointError: ``steps`` is not a list of dicts with a ``"kind"``.
        UnknownNameError: a step of a kind no module registered.
        TorchSlimError: a step does not fit the model (its replay function says why).
    """
    if not isinstance(steps, list) or not all(isinstance(s, dict) and "kind" in s for s in steps):
        raise CheckpointError(f"The applied steps in {source} must be a list of objects with a 'kind'; "
                              f"got {str(steps)[:120]}.")
    for step in steps:
        model = replayer(step["kind"])(model, step)
    set_applied_steps(model, steps)
    return model


def replayer(kind: str) -> Replayer:
    """The replay function of ``kind``, importing the module that registers it first if needed.

    Raises:
        UnknownNameError: no module registers ``kind`` (the registered kinds listed).
    """
    if isinstance(kind, str) and kind not in REPLAYERS and kind in PROVIDERS:
        importlib.import_module(PROVIDERS[kind])
    return REPLAYERS.get(kind)
