"""Steps that train: ``train`` (a fresh registered model, or the current one fine-tuned) and
``distill`` (the recipe's teacher(s) into a fresh student or into the current model)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.distill.config import DistillConfig, LossItem  # LossItem: the text steps' losses too
from torchslim.options.fit import FitConfig, TrainConfig
from torchslim.pipeline.steps.base import Output, Step, StepContext, need_module, register


def check_warmup(params: Any) -> Any:
    if params.warmup_epochs and params.warmup_epochs >= params.epochs:
        raise ValueError(f"warmup_epochs = {params.warmup_epochs} must be less than epochs = {params.epochs} "
                         "(the warm-up is part of the training, not longer than it)")
    return params


def start_model(ctx: StepContext, step: str, model: Any, key: str, name: str | None, width: float | None,
                depth: float | None, kwargs: dict[str, Any]) -> nn.Module:
    """The model a training step trains: with ``name`` (the step's ``key``: ``model`` or ``student``)
    a registered model with fresh weights, seeded by the recipe's seed, ``width`` and ``depth`` (when
    given) overriding those among ``kwargs``; without, the model made so far.

    Raises:
        TorchSlimError: no ``name`` and no model made so far, or a ``name`` when a model was made.
    """
    if name is None:
        return need_module(step, model, ctx.where)
    if model is not None:
        into = "fine-tune it" if step == "train" else "distil into it"
        raise TorchSlimError(f"{ctx.where}: `{step}` with `{key}: {name}` starts a fresh model, but this strategy "
                             f"already has one; drop `{key}` to {into}.")
    extra = {**kwargs, **({"width": width} if width is not None else {}),
             **({"depth": depth} if depth is not None else {})}
    torch.manual_seed(ctx.recipe.seed)  # the initial weights follow the recipe's seed
    return ctx.create_model(name, extra)


def _fit(ctx: StepContext, trainee: nn.Module, params: FitConfig) -> dict[str, Any]:
    from torchslim.train import fit

    history = fit(trainee, ctx.data, params.epochs, checkpoint_dir=ctx.work / "checkpoints", resume=True,
                  threads=ctx.recipe.threads, progress=ctx.progress, on_epoch_end=ctx.on_epoch_end,
                  **params.fit_options(ctx.recipe.seed))
    return {"test": history.test, "train_seconds": history.seconds,
            "final_epoch": history.epochs[-1] if history.epochs else None}


@register
class Train(Step):
    """Train a fresh registered model (``model:``), or fine-tune the current model (no ``model``)."""

    name, family, Params = "train", "training", TrainConfig
    restart_hint = "`train` with `model:` starts a fresh model; drop `model:` to fine-tune the one made so far."

    def needs(self, params: TrainConfig) -> str:
        return "nothing" if params.model is not None else "module"

    def run(self, ctx: StepContext, params: TrainConfig, model: Any) -> Output:
        model = start_model(ctx, "train", model, "model", params.model, params.width, params.depth,
                            params.model_kwargs)
        return Output(model=model, metrics=_fit(ctx, model, params), epochs=params.epochs)


@register
class Distill(Step):
    """Distil the recipe's teacher(s) into a fresh student (``student:``) or into the current model
    (after pruning: the unpruned model of the strategy's first step can be named ``teacher``)."""

    name, family, Params = "distill", "distillation", DistillConfig
    restart_hint = "`distill` with `student:` starts a fresh student; drop `student:` to distil into the model made so far."

    def needs(self, params: DistillConfig) -> str:
        return "nothing" if params.student is not None else "module"

    def sources(self, params: DistillConfig) -> list[str]:
        return list(params.teachers)

    def run(self, ctx: StepContext, params: DistillConfig, model: Any) -> Output:
        import time

        from torchslim.distill import make_task
        from torchslim.distill.run import cache_seconds, load_teachers, total_seconds

        student = start_model(ctx, "distill", model, "student", params.student, params.width,
                              params.depth, params.model_kwargs)
        teachers = load_teachers(params.teachers, lambda source: ctx.load_model(source)[0])
        began = time.perf_counter()
        task = make_task(student, teachers, params, train=ctx.data.train, cache_dir=ctx.work / "cache", log=ctx.log)
        try:
            metrics = _fit(ctx, task, params)
        finally:
            task.close()
        # the matrix shows the whole cost beside the training time: teacher cache, training, test
        metrics["cache_seconds"] = cache_seconds(task)
        metrics["total_seconds"] = total_seconds(began, metrics["cache_seconds"], metrics["train_seconds"])
        return Output(model=student, metrics=metrics, epochs=params.epochs, used_teacher=True,
                      meta={"distill": {"teachers": params.teachers, "cache": params.cache,
                                        "losses": [i.model_dump(mode="json") for i in params.losses]}})


__all__ = ["Distill", "LossItem", "Train", "start_model"]
