"""Model surgery of channel pruning: the slices applied (which channels of which module were
kept), recorded as the model's applied steps, and replayed on load.

Every slice torch-pruning makes is recorded as a :class:`Slice` — the module path, the dimension
(``"out"``: the channels a layer produces, ``"in"``: those it consumes), the size before and the
indices **kept** — and applied through :func:`apply_slice`, the same function that :func:`replay`
uses to rebuild the pruned architecture on a fresh instance of the original model. Replay is plain
tensor slicing: no pickled module is ever loaded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.core.state import REPLAYERS, applied_steps, set_applied_steps
from torchslim.core.taps import resolve
from torchslim.prune.errors import PruneError, ReplayError

KIND = "prune.channels"


class Slice(BaseModel):
    """Keep ``kept`` of the ``size`` channels along ``dim`` of ``module``."""

    model_config = ConfigDict(extra="forbid")

    op: Literal["slice"] = "slice"
    module: str = Field(description="module path, or parameter path for a bare nn.Parameter")
    layer: str = Field(description="torch-pruning layer kind: CONV, DEPTHWISE_CONV, LINEAR, BN, LN, ...")
    dim: Literal["out", "in"]
    axis: int = Field(-1, description="tensor axis for LayerNorm and bare parameters")
    size: int = Field(gt=0, description="channels along dim before the slice")
    kept: list[int] = Field(description="indices kept, ascending, into range(size)")


class SetAttr(BaseModel):
    """Set integer attributes of ``module`` (an attention module's head count after head pruning)."""

    model_config = ConfigDict(extra="forbid")

    op: Literal["set"] = "set"
    module: str
    values: dict[str, int]


Op = Annotated[Slice | SetAttr, Field(discriminator="op")]


class ChannelSteps(BaseModel):
    """The ordered slices of one ``channels`` call, and the architecture they were recorded on."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["prune.channels"] = KIND
    base: dict[str, Any] = Field(description="class name, tensor count and signature of the unpruned model")
    ops: list[Op] = Field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def signature(model: nn.Module) -> dict[str, Any]:
    """What identifies an architecture: its class and the names and shapes of all its tensors."""
    shapes = [(name, list(t.shape)) for name, t in model.state_dict().items()]
    digest = hashlib.sha256(json.dumps(shapes).encode()).hexdigest()[:20]
    return {"class": type(model).__name__, "tensors": len(shapes), "signature": digest}


# -- applying one slice ----------------------------------------------------------------------------

def _pruner(layer: str):
    from torch_pruning import ops
    from torch_pruning.pruner import function

    try:
        return function.PrunerBox[ops.OPTYPE[layer]]
    except KeyError:
        valid = ", ".join(t.name for t in function.PrunerBox)
        raise ReplayError(f"Unknown layer kind {layer!r} in a pruning step; valid kinds: {valid}.") from None


def layer_kind(pruner: Any) -> str | None:
    """The layer kind of a torch-pruning layer pruner, or None for graph-only ops (add, reshape...)."""
    from torch_pruning.pruner import function

    return next((t.name for t, p in function.PrunerBox.items() if p is pruner), None)


def _parent(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    owner, _, name = path.rpartition(".")
    return (resolve(model, owner) if owner else model), name


def current_size(model: nn.Module, op: Slice) -> int | None:
    """The size of ``op``'s dimension in ``model`` now (None when the layer has no such size)."""
    pruner = _pruner(op.layer)
    pruner.pruning_dim = op.axis
    if op.layer == "PARAMETER":
        parent, name = _parent(model, op.module)
        return getattr(parent, name).shape[op.axis]
    module = resolve(model, op.module)
    return pruner.get_out_channels(module) if op.dim == "out" else pruner.get_in_channels(module)


def _check_fits(model: nn.Module, op: Slice) -> None:
    from torch_pruning import ops

    if op.layer != "PARAMETER":
        module = resolve(model, op.module)
        actual = ops.module2type(module).name
        if actual != op.layer:
            raise ReplayError(f"{op.module!r} is a {type(module).__name__} ({actual}) here, but the step "
                              f"slices a {op.layer}.")
    else:
        parent, name = _parent(model, op.module)
        if not isinstance(getattr(parent, name, None), nn.Parameter):
            raise ReplayError(f"{op.module!r} is not a parameter of this model.")
    size = current_size(model, op)
    if size is not None and size != op.size:
        raise ReplayError(f"the step slices {op.dim} channels of {op.module!r} from {op.size}, "
                          f"but this model's {op.module!r} has {size}.")
    if sorted(set(op.kept)) != op.kept or (op.kept and not 0 <= op.kept[0] <= op.kept[-1] < op.size):
        raise ReplayError(f"the kept indices of {op.module!r} must be ascending, distinct and in "
                          f"[0, {op.size}); got {op.kept[:8]}...")


def apply_slice(model: nn.Module, op: Slice) -> None:
    """Keep ``op.kept`` along ``op.dim`` of ``op.module``, updating the layer's sizes.

    Raises:
        ReplayError: the module does not exist or differs in kind or size from the recorded one.
        PruneError: torch-pruning cannot slice this layer (named).
    """
    try:
        _check_fits(model, op)
    except TorchSlimError as exc:
        raise ReplayError(str(exc)) from None
    pruner = _pruner(op.layer)
    pruner.pruning_dim = op.axis
    kept = set(op.kept)
    removed = [i for i in range(op.size) if i not in kept]
    try:
        if op.layer == "PARAMETER":
            parent, name = _parent(model, op.module)
            setattr(parent, name, pruner.prune_out_channels(getattr(parent, name), removed))
            return
        module = resolve(model, op.module)
        (pruner.prune_out_channels if op.dim == "out" else pruner.prune_in_channels)(module, removed)
    except (AssertionError, RuntimeError, IndexError, ValueError) as exc:
        raise PruneError(f"torch-pruning cannot slice the {op.dim} channels of {op.module!r} "
                         f"({op.layer}): {type(exc).__name__}: {str(exc)[:200]}. Leave it alone with "
                         f"ignore=[{op.module!r}].") from None


def apply_set(model: nn.Module, op: SetAttr) -> None:
    module = resolve(model, op.module)
    for key, value in op.values.items():
        if not hasattr(module, key):
            raise ReplayError(f"{op.module!r} ({type(module).__name__}) has no attribute {key!r} to set.")
        setattr(module, key, value)


# -- replay ----------------------------------------------------------------------------------------

def parse_steps(steps: ChannelSteps | dict[str, Any]) -> ChannelSteps:
    """``steps`` as :class:`ChannelSteps`.

    Raises:
        ReplayError: not a valid record (the bad field named).
    """
    if isinstance(steps, ChannelSteps):
        return steps
    try:
        return ChannelSteps.model_validate(steps)
    except ValidationError as exc:
        raise ReplayError(f"Not a valid channel-pruning record: {exc}") from None


def _replay_one(model: nn.Module, steps: ChannelSteps) -> nn.Module:
    here = signature(model)
    if here != steps.base:
        raise ReplayError(
            f"These pruning steps were recorded on a {steps.base['class']} with {steps.base['tensors']} "
            f"tensors (architecture signature {steps.base['signature']}), but the model they are "
            f"loaded onto is a {here['class']} with {here['tensors']} tensors (signature "
            f"{here['signature']}). Replay them on a fresh instance of the architecture they were "
            "recorded on (for a checkpoint: the model spec in its model.json).")
    for i, op in enumerate(steps.ops):
        try:
            apply_slice(model, op) if isinstance(op, Slice) else apply_set(model, op)
        except ReplayError as exc:
            raise ReplayError(f"Pruning step {i + 1} of {len(steps.ops)} does not fit this "
                              f"{type(model).__name__}: {exc}") from None
    return model


def replay(model: nn.Module, steps: ChannelSteps | dict | Sequence[ChannelSteps | dict]) -> nn.Module:
    """Rebuild a pruned architecture: apply recorded ``steps`` (one :class:`ChannelSteps`, its dict,
    or a list of them in order) to ``model``, a fresh instance of the original architecture, in
    place. The weights are the fresh model's, sliced; load the pruned weights afterwards (or use
    ``torchslim.load_model``, which does both).

    Raises:
        ReplayError: the steps were recorded on another architecture, or do not fit this model.
    """
    items = [steps] if isinstance(steps, (ChannelSteps, dict)) else list(steps)
    parsed = [parse_steps(s) for s in items]
    for s in parsed:
        model = _replay_one(model, s)
    set_applied_steps(model, applied_steps(model) + [s.to_dict() for s in parsed])
    return model


def _replay_recorded(model: nn.Module, step: dict[str, Any]) -> nn.Module:
    return _replay_one(model, parse_steps(step))


REPLAYERS.register(KIND, _replay_recorded)
