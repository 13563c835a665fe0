"""Steps that train: ``train`` (a fresh registered model, or the current one fine-tuned) and
``distill`` (the recipe's teacher(s) into a fresh student or into the current model)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.options.fit import FitConfig as FitParams
from torchslim.options.fit import TrainConfig as TrainParams
from torchslim.pipeline.steps.base import Output, Step, StepContext, need_module, register


def check_warmup(params: Any) -> Any:
    if params.warmup_epochs and params.warmup_epochs >= params.epochs:
        raise ValueError(f"warmup_epochs = {params.warmup_epochs} must be less than epochs = {params.epochs} "
                         "(the warm-up is part of the training, not longer than it)")
    return params


def _fresh_model(ctx: StepContext, name: str, width: float | None, kwargs: dict[str, Any]) -> nn.Module:
    extra = dict(kwargs)
    if width is not None:
        extra["width"] = width
    seed = ctx.recipe.seed
    torch.manual_seed(seed)  # the initial weights follow the recipe's seed
    return ctx.create_model(name, extra)


def _fit(ctx: StepContext, trainee: nn.Module, params: FitParams) -> dict[str, Any]:
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

    def run(self, ctx: StepContext, params: TrainParams, model: Any) -> Output:
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

    def run(self, ctx: StepContext, params: DistillParams, model: Any) -> Output:
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


__all__ = ["Distill", "DistillParams", "LossItem", "Train"]
