"""Pipeline steps: what a step is, what it returns, and the image task's step registry.

A step is a class with ``Params`` (its options class: the recipe keys of the step, unknown keys
rejected) and ``run(ctx, params, model) -> Output``. ``model`` is the previous step's result: an
``nn.Module``, or for steps after ``quantize``/``export`` an ONNX file. Steps never save anything
themselves: the runner saves their output, records their cost and skips them when an identical step
(same parameters, same input) has already finished.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.core.registry import Registry
from torchslim.pipeline.schema import QuickConfig

if TYPE_CHECKING:
    from torchslim.pipeline.recipe import Recipe

STEPS: Registry = Registry("pipeline step")


class StepContext(Protocol):
    """What a step may read and call while it runs — nothing else of the run is its business.

    The runner's :class:`~torchslim.pipeline.runner.Context` is one.
    """

    recipe: Recipe  # the parsed recipe: seed, threads, task settings
    where: str  # the step's place ("strategy[i] step (file:line)"), to start messages with
    work: Path  # the step's own working directory (checkpoints, caches, files it makes)
    progress: bool  # show progress bars
    log: Callable[[str], None]
    quick: bool  # a --quick run
    on_epoch_end: Callable[[int, dict], None] | None  # after each training epoch (a search stops hopeless trials)

    @property
    def data(self) -> Any:
        """The run's data bundle (train/val/test loaders, sizes)."""

    def load_model(self, source: str) -> tuple[nn.Module, dict]:
        """A private copy of a model source (``teacher``, a shipped name, a directory) and its metadata."""

    def create_model(self, name: str, kwargs: dict[str, Any]) -> nn.Module:
        """A fresh registered (or caller-given) model sized for the data."""

    def runnable(self, model: Any) -> Any:
        """What runs ``model``: a torch module as is, an ONNX file on the task's runtime."""

Family = Literal["structural", "distillation", "training", "source", "deployment", "measurement"]


@dataclasses.dataclass
class Output:
    """What a step produced: ``model`` (an ``nn.Module``) or ``onnx`` (a file the step wrote in
    ``ctx.work``), plus its metrics, epochs trained and whether it ran a teacher."""

    model: nn.Module | None = None
    onnx: Path | None = None
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    epochs: int = 0
    used_teacher: bool = False
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)  # saved beside the model


class Step(abc.ABC):
    name: ClassVar[str]
    family: ClassVar[Family]
    Params: ClassVar[type[BaseModel]]
    takes_onnx: ClassVar[bool] = False  # whether the step accepts an ONNX model as input
    makes: ClassVar[str] = "module"  # its output: "module" (torch), "onnx", or "same" (its input passes through)
    restart_hint: ClassVar[str] = ""  # for a step that starts a model but is given one
    int8: ClassVar[bool] = False  # its model is an INT8 graph (the matrix's kernel and route read it)
    # It only shapes the student a later distill step trains (dropping layers before distillation,
    # DistilBERT's initialisation): with distillation after it, the route is distillation alone.
    makes_student: ClassVar[bool] = False

    def needs(self, params: Any) -> str:
        """What the step takes (checked when the recipe is parsed): ``"nothing"`` (it starts a
        model), ``"module"`` (a torch model) or ``"any"`` (a torch model or an ONNX file)."""
        return "any" if self.takes_onnx else "module"

    @staticmethod
    def shorthand(value: Any) -> Any:
        """The parameters for ``- step`` or ``- step: <scalar>`` (default: no parameters)."""
        return {} if value is None else value

    def quicken(self, params: BaseModel, quick: QuickConfig) -> BaseModel:
        """``params`` as ``--quick`` runs them (fewer epochs, fewer calibration batches)."""
        updates = {}
        if getattr(params, "epochs", None):
            updates["epochs"] = min(params.epochs, quick.epochs)
        if getattr(params, "calibration_batches", None):
            updates["calibration_batches"] = min(params.calibration_batches, quick.calibration_batches)
        if getattr(params, "sample_size", None):
            updates["sample_size"] = min(params.sample_size, quick.sample_size)
        return params.model_copy(update=updates)

    def sources(self, params: Any) -> list[str]:
        """The model sources (``teacher``, a shipped name, a directory) the step reads by name: their
        weights' hashes are part of the step's key, so a changed checkpoint is a new step."""
        return []

    @abc.abstractmethod
    def run(self, ctx: StepContext, params: Any, model: Any) -> Output:
        """Transform ``model`` (the previous step's result, or None) into this step's output."""


def register(cls: type[Step]) -> type[Step]:
    STEPS.register(cls.name, cls)
    return cls


def need_module(step: str, model: Any, where: str = "") -> nn.Module:
    if model is None:
        raise TorchSlimError(f"{where + ': ' if where else ''}step {step!r} needs a model from an earlier step "
                             "(start the strategy with `load`, `train` or `distill`).")
    if not isinstance(model, nn.Module):
        raise TorchSlimError(f"{where + ': ' if where else ''}step {step!r} needs a torch model, but the "
                             f"previous step produced an ONNX file ({model}); put {step!r} before "
                             "`quantize`/`export`.")
    return model


__all__ = ["STEPS", "Output", "Step", "StepContext", "need_module", "register"]
