"""Pipeline steps, registered by name: each takes the previous step's model and returns a new one.

A step is a class with a pydantic ``Params`` (its recipe keys, unknown keys rejected) and
``run(ctx, params, model) -> Output``. ``model`` is the previous step's result: an ``nn.Module``,
or for steps after ``quantize``/``export`` an ONNX file. Steps never save anything themselves: the
runner saves their output, records their cost and skips them when an identical step (same
parameters, same input) has already finished.

These are the image task's steps (:data:`STEPS`); the text task's are in
:mod:`torchslim.pipeline.text_steps` (:func:`steps_for` picks the registry of a recipe's task).
"""

from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.core.registry import Registry
from torchslim.pipeline.recipe import QuickConfig, Strict

STEPS: Registry = Registry("pipeline step")

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
    def run(self, ctx: Any, params: Any, model: Any) -> Output:
        """Transform ``model`` (the previous step's result, or None) into this step's output."""


def register(cls: type[Step]) -> type[Step]:
    STEPS.register(cls.name, cls)
    return cls


def steps_for(task: str) -> Registry:
    """The step registry of a recipe's task: ``"image"`` (:data:`STEPS`) or ``"text"``."""
    if task == "text":
        from torchslim.pipeline.text_steps import TEXT_STEPS

        return TEXT_STEPS
    return STEPS


def need_module(step: str, model: Any, where: str = "") -> nn.Module:
    if model is None:
        raise TorchSlimError(f"{where + ': ' if where else ''}step {step!r} needs a model from an earlier step "
                             "(start the strategy with `load`, `train` or `distill`).")
    if not isinstance(model, nn.Module):
        raise TorchSlimError(f"{where + ': ' if where else ''}step {step!r} needs a torch model, but the "
                             f"previous step produced an ONNX file ({model}); put {step!r} before "
                             "`quantize`/`export`.")
    return model


# -- load ------------------------------------------------------------------------------------------


class LoadParams(Strict):
    source: str = "teacher"  # "teacher" (the recipe's), a shipped model name or a checkpoint directory


@register
class Load(Step):
    """Start from an existing model: the recipe's teacher, a shipped model or a checkpoint."""

    name, family, Params = "load", "source", LoadParams
    restart_hint = "`load` must be the first step of a strategy; start another strategy for this model."

    def needs(self, params: Any) -> str:
        return "nothing"

    @staticmethod
    def shorthand(value: Any) -> Any:
        return {"source": value} if isinstance(value, str) else ({} if value is None else value)

    def sources(self, params: LoadParams) -> list[str]:
        return [params.source]

    def run(self, ctx: Any, params: LoadParams, model: Any) -> Output:
        if model is not None:
            raise TorchSlimError(f"{ctx.where}: `load` must be the first step of a strategy.")
        loaded, meta = ctx.load_model(params.source)
        return Output(model=loaded, metrics={"source": params.source},
                      meta={"loaded_from": params.source, "source_meta": {
                          k: meta.get(k) for k in ("sha256", "model", "metrics") if k in meta}})


# -- train and distill -----------------------------------------------------------------------------


def check_warmup(params: Any) -> Any:
    if params.warmup_epochs and params.warmup_epochs >= params.epochs:
        raise ValueError(f"warmup_epochs = {params.warmup_epochs} must be less than epochs = {params.epochs} "
                         "(the warm-up is part of the training, not longer than it)")
    return params


class FitParams(Strict):
    epochs: int = Field(gt=0)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float | None = Field(None, gt=0)
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    warmup_epochs: float = Field(0.0, ge=0)
    weight_decay: float = Field(5e-4, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    channels_last: bool = True
    seed: int | None = None  # default: the recipe's seed

    _warmup = model_validator(mode="after")(check_warmup)

    def fit_options(self, seed: int) -> dict[str, Any]:
        return dict(optimizer=self.optimizer, lr=self.lr, schedule=self.schedule,
                    warmup_epochs=self.warmup_epochs, weight_decay=self.weight_decay,
                    label_smoothing=self.label_smoothing, channels_last=self.channels_last,
                    seed=self.seed if self.seed is not None else seed)


class TrainParams(FitParams):
    model: str | None = None  # a registered model (fresh weights); None: fine-tune the current one
    width: float | None = Field(None, gt=0)
    model_kwargs: dict[str, Any] = Field(default_factory=dict)


def _fresh_model(ctx: Any, name: str, width: float | None, kwargs: dict[str, Any]) -> nn.Module:
    extra = dict(kwargs)
    if width is not None:
        extra["width"] = width
    seed = ctx.recipe.seed
    torch.manual_seed(seed)  # the initial weights follow the recipe's seed
    return ctx.create_model(name, extra)


def _fit(ctx: Any, trainee: nn.Module, params: FitParams) -> dict[str, Any]:
    from torchslim.train import fit

    history = fit(trainee, ctx.data, params.epochs, checkpoint_dir=ctx.work / "checkpoints", resume=True,
                  threads=ctx.recipe.threads, progress=ctx.progress, **params.fit_options(ctx.recipe.seed))
    return {"test": history.test, "train_seconds": history.seconds,
            "final_epoch": history.epochs[-1] if history.epochs else None}


@register
class Train(Step):
    """Train a fresh registered model (``model:``), or fine-tune the current model (no ``model``)."""

    name, family, Params = "train", "training", TrainParams
    restart_hint = "`train` with `model:` starts a fresh model; drop `model:` to fine-tune the one made so far."

    def needs(self, params: TrainParams) -> str:
        return "nothing" if params.model is not None else "module"

    def run(self, ctx: Any, params: TrainParams, model: Any) -> Output:
        if params.model is None:
            model = need_module("train", model, ctx.where)
        elif model is not None:
            raise TorchSlimError(f"{ctx.where}: `train` with `model: {params.model}` starts a fresh model, "
                                 "but this strategy already has one; drop `model` to fine-tune it.")
        else:
            model = _fresh_model(ctx, params.model, params.width, params.model_kwargs)
        return Output(model=model, metrics=_fit(ctx, model, params), epochs=params.epochs)


class LossItem(BaseModel):
    """``{name: kd, weight: 0.9, T: 4}``: the loss name, its weight, and its own arguments."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True, allow_inf_nan=False)
    name: str
    weight: float = Field(1.0, ge=0)
    teacher: str | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        from torchslim.distill import losses as L

        L.LOSSES.get(name)  # an unknown name fails at parse time with the valid ones and the closest
        return name

    def arguments(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class DistillParams(FitParams):
    student: str | None = None  # a registered model (fresh weights); None: the current model
    width: float | None = Field(None, gt=0)
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    losses: list[LossItem] = Field(
        default_factory=lambda: [LossItem(name="kd", weight=0.9, T=4.0), LossItem(name="ce", weight=0.1)],
        min_length=1)
    teachers: list[str] = Field(default_factory=lambda: ["teacher"], min_length=1)
    teacher_weights: list[float] | None = None
    multi_teacher: Literal["mean", "each"] = "mean"
    cache: Literal["memory", "disk", "none"] = "memory"
    cache_draws: int | None = Field(None, gt=0)  # recorded augmentation draws (default: one per epoch)
    mix: Literal["mixup", "cutmix"] | None = None

    @model_validator(mode="after")
    def _check_teachers(self) -> DistillParams:
        if self.mix and self.cache != "none":
            raise ValueError(f"mix={self.mix!r} needs the live teacher: set cache: none")
        weights = self.teacher_weights
        if weights is not None and (len(weights) != len(self.teachers) or min(weights) < 0 or not sum(weights)):
            raise ValueError(f"teacher_weights {weights} must give one non-negative weight per teacher "
                             f"({len(self.teachers)}: {', '.join(self.teachers)}), not all zero")
        named = {i.teacher for i in self.losses if i.teacher is not None} - set(self.teachers)
        if named:
            raise ValueError(f"a loss names teacher {sorted(named)[0]!r}, which is not among teachers: "
                             f"{', '.join(self.teachers)}")
        return self


@register
class Distill(Step):
    """Distil the recipe's teacher(s) into a fresh student (``student:``) or into the current model
    (after pruning: the unpruned model of the strategy's first step can be named ``teacher``)."""

    name, family, Params = "distill", "distillation", DistillParams
    restart_hint = "`distill` with `student:` starts a fresh student; drop `student:` to distil into the model made so far."

    def needs(self, params: DistillParams) -> str:
        return "nothing" if params.student is not None else "module"

    def sources(self, params: DistillParams) -> list[str]:
        return list(params.teachers)

    def run(self, ctx: Any, params: DistillParams, model: Any) -> Output:
        from torchslim.distill import DistillTask
        from torchslim.distill import losses as L

        if params.student is None:
            student = need_module("distill", model, ctx.where)
        elif model is not None:
            raise TorchSlimError(f"{ctx.where}: `distill` with `student: {params.student}` starts a fresh "
                                 "model, but this strategy already has one; drop `student` to distil into it.")
        else:
            student = _fresh_model(ctx, params.student, params.width, params.model_kwargs)
        teachers = {}
        for i, source in enumerate(params.teachers):
            teacher, _ = ctx.load_model(source)
            teachers[source if source not in teachers else f"{source}{i}"] = teacher
        built = []
        for item in params.losses:
            kwargs = item.arguments()
            if item.name == "crd":
                kwargs.setdefault("num_data", len(ctx.data.train.dataset))
            built.append((L.create(item.name, teacher=item.teacher, **kwargs), item.weight))
        task = DistillTask(student, teachers, built, teacher_weights=params.teacher_weights,
                           multi_teacher=params.multi_teacher, mix=params.mix)
        try:
            if params.cache != "none":
                task.use_cache(ctx.data.train, draws=params.cache_draws or params.epochs,
                               directory=ctx.work / "cache" if params.cache == "disk" else None, log=ctx.log)
            metrics = _fit(ctx, task, params)
        finally:
            task.close()
        return Output(model=student, metrics=metrics, epochs=params.epochs, used_teacher=True,
                      meta={"distill": {"teachers": params.teachers, "cache": params.cache,
                                        "losses": [i.model_dump(mode="json") for i in params.losses]}})


# -- evaluate --------------------------------------------------------------------------------------


class EvaluateParams(Strict):
    split: Literal["test", "val"] = "test"


@register
class Evaluate(Step):
    """Record the current model's accuracy and loss on a split (the model passes through)."""

    name, family, Params = "evaluate", "measurement", EvaluateParams
    takes_onnx = True
    makes = "same"

    def check(self, ctx: Any, model: Any) -> None:
        if model is None:
            need_module("evaluate", model, ctx.where)

    def metrics(self, ctx: Any, runnable: Any, loader: Any) -> dict[str, Any]:
        from torchslim.train import evaluate

        return evaluate(runnable, loader)

    def run(self, ctx: Any, params: EvaluateParams, model: Any) -> Output:
        self.check(ctx, model)
        loader = ctx.data.test if params.split == "test" else ctx.data.val
        if loader is None:
            raise TorchSlimError(f"{ctx.where}: the dataset has no {params.split!r} split "
                                 "(data.val_size is 0?); use split: test.")
        out = Output(metrics={params.split: self.metrics(ctx, ctx.runnable(model), loader)})
        if isinstance(model, nn.Module):
            out.model = model
        else:
            out.onnx = model
        return out


# The structural steps live in their own module; importing it registers them (it needs the names above).
from torchslim.pipeline import structural_steps as _structural  # noqa: E402,F401

__all__ = ["STEPS", "Evaluate", "EvaluateParams", "LossItem", "Output", "Step", "need_module", "register", "steps_for"]
