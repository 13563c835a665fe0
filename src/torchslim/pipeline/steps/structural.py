"""The image task's structural steps: channel pruning, magnitude sparsity, INT8 quantization and
ONNX export, registered in :data:`~torchslim.pipeline.steps.STEPS`."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field, PositiveInt, model_validator

from torchslim.pipeline.schema import QuickConfig, Strict
from torchslim.pipeline.steps.base import Output, Step, StepContext, need_module, register

# -- structural compression ------------------------------------------------------------------------


def _example(ctx: StepContext, n: int = 8) -> torch.Tensor:
    return ctx.data.example_batch(n)


def _recovery_fit(params: Any) -> dict[str, Any]:
    options = {"schedule": params.schedule, "weight_decay": params.weight_decay}
    if params.lr is not None:
        options["lr"] = params.lr
    return options


class PruneParams(Strict):
    ratio: float = Field(gt=0, lt=1)  # fraction of each layer's channels removed
    importance: str = "l2"
    global_ranking: bool = False
    round_to: int | None = Field(None, gt=0)
    ignore: list[str] = Field(default_factory=list)  # module paths kept whole (the classifier always is)
    ratios: dict[str, float] = Field(default_factory=dict)  # per-layer ratios by module path
    head_ratio: float | None = Field(None, ge=0, lt=1)  # fraction of attention heads removed (ratio)
    heads: dict[str, PositiveInt] = Field(default_factory=dict)  # head count per attention block path
    steps: int = Field(1, gt=0)  # iterative pruning in this many steps
    recover: Literal["none", "finetune", "kd"] = "none"  # kd: from the model before pruning
    epochs: int = Field(0, ge=0)  # recovery epochs, split over the steps
    lr: float | None = Field(None, gt=0)
    schedule: Literal["onecycle", "cosine", "constant"] = "cosine"
    weight_decay: float = Field(5e-4, ge=0)

    @model_validator(mode="after")
    def _check(self) -> PruneParams:
        from torchslim.prune import IMPORTANCE

        IMPORTANCE.get(self.importance)  # unknown criteria fail at parse time, the valid ones listed
        if self.recover != "none" and not self.epochs:
            raise ValueError(f"recover={self.recover!r} needs epochs > 0")
        if self.recover == "none" and self.epochs:
            raise ValueError(f"epochs = {self.epochs} recovery epochs with recover: none would never run; set "
                             "recover: finetune or kd, or drop epochs")
        bad = {k: v for k, v in self.ratios.items() if not 0 < v < 1}
        if bad:
            raise ValueError(f"ratios {bad} must each be a fraction of channels in (0, 1)")
        return self


@register
class Prune(Step):
    """Channel pruning on torch-pruning's dependency graph: the model physically shrinks; optional
    recovery by fine-tuning or by distillation from the model before pruning."""

    name, family, Params = "prune", "structural", PruneParams

    def quicken(self, params: BaseModel, quick: QuickConfig) -> BaseModel:
        if not params.epochs:
            return params
        return params.model_copy(update={"epochs": max(min(params.epochs, quick.epochs), params.steps)
                                         if params.recover != "none" else 0})

    def run(self, ctx: StepContext, params: PruneParams, model: Any) -> Output:
        from torchslim.prune import channels

        model = need_module("prune", model, ctx.where)
        pruned, record = channels(
            model, _example(ctx), params.ratio, params.importance, ratios=params.ratios or None,
            head_ratio=params.head_ratio, heads=params.heads or None,
            global_ranking=params.global_ranking, round_to=params.round_to, ignore=params.ignore,
            steps=params.steps, recover=params.recover, epochs=params.epochs, data=ctx.data,
            seed=ctx.recipe.seed, fit_options=_recovery_fit(params), progress=ctx.progress,
            threads=ctx.recipe.threads)
        metrics = record.model_dump(mode="json")
        metrics.pop("steps", None)  # the applied steps travel with the saved model
        return Output(model=pruned, metrics=metrics, epochs=params.epochs if params.recover != "none" else 0,
                      used_teacher=params.recover == "kd")


class SparsifyParams(Strict):
    sparsity: float = Field(gt=0, lt=1)
    scope: Literal["global", "layer"] = "global"
    schedule: Literal["oneshot", "agp"] = "oneshot"
    epochs: int = Field(0, ge=0)  # fine-tuning with the zeros kept (oneshot) or the AGP ramp (agp)
    ignore: list[str] = Field(default_factory=list)
    lr: float | None = Field(None, gt=0)
    schedule_lr: Literal["onecycle", "cosine", "constant"] = "cosine"
    weight_decay: float = Field(5e-4, ge=0)

    @model_validator(mode="after")
    def _check(self) -> SparsifyParams:
        if self.schedule == "agp" and not self.epochs:
            raise ValueError("schedule: agp raises sparsity during training: it needs epochs > 0")
        return self


@register
class Sparsify(Step):
    """Unstructured magnitude sparsity (the model keeps its shape; dense kernels run no faster)."""

    name, family, Params = "sparsify", "structural", SparsifyParams

    def run(self, ctx: StepContext, params: SparsifyParams, model: Any) -> Output:
        from torchslim.prune import sparsify

        model = need_module("sparsify", model, ctx.where)
        options = {"schedule": params.schedule_lr, "weight_decay": params.weight_decay}
        if params.lr is not None:
            options["lr"] = params.lr
        sparse, record = sparsify(model, params.sparsity, scope=params.scope, schedule=params.schedule,
                                  data=ctx.data if params.epochs else None, epochs=params.epochs,
                                  ignore=params.ignore, fit_options=options, progress=ctx.progress,
                                  threads=ctx.recipe.threads, seed=ctx.recipe.seed)
        metrics = record.model_dump(mode="json")
        metrics["notes"] = [
            f"{100 * record.sparsity:.1f}% of the sparsified weights are zero; the weights file is "
            f"{record.dense_bytes:,} bytes dense and {record.zipped_bytes:,} bytes zipped — dense kernels "
            "run no faster, so its latency is the unpruned model's."]
        return Output(model=sparse, metrics=metrics, epochs=params.epochs)


class QuantizeParams(Strict):
    mode: Literal["static", "dynamic"] = "static"
    calibration_batches: int = Field(16, gt=0)
    calibration: Literal["minmax", "entropy", "percentile"] = "minmax"
    operand_types: Literal["auto", "u8s8", "s8s8"] = "auto"
    keep_fp32: list[str] = Field(default_factory=list)
    per_channel: bool = True


@register
class Quantize(Step):
    """INT8 for ONNX Runtime: static (calibrated on held-out training images, QDQ, per-channel
    weights, operand types chosen for this CPU) or dynamic. The result is an ``.onnx`` file."""

    name, family, Params = "quantize", "structural", QuantizeParams
    int8 = True
    makes = "onnx"

    def run(self, ctx: StepContext, params: QuantizeParams, model: Any) -> Output:
        from torchslim import quantize

        model = need_module("quantize", model, ctx.where)
        calibration = ctx.data.val if ctx.data.val is not None else ctx.data.train
        target = ctx.work / "int8"
        if params.mode == "static":
            result = quantize.static_int8(model, calibration, out=target, example_input=_example(ctx),
                                          batches=params.calibration_batches, method=params.calibration,
                                          operand_types=params.operand_types, keep_fp32=params.keep_fp32,
                                          per_channel=params.per_channel)
        else:
            result = quantize.dynamic_int8(model, out=target, example_input=_example(ctx),
                                           per_channel=params.per_channel, keep_fp32=params.keep_fp32)
        info = dict(getattr(result, "info", {}) or {})
        metrics = {k: info[k] for k in ("mode", "quantization", "kernel", "sizes") if k in info}
        export = (info.get("source") or {}).get("export") if isinstance(info.get("source"), dict) else None
        if export:
            metrics["export"] = export
        return Output(onnx=target / "model.onnx", metrics=metrics)


class ExportParams(Strict):
    opset: int | None = Field(None, gt=0)


@register
class Export(Step):
    """ONNX FP32 export, checked against the torch model on real test batches."""

    name, family, Params = "export", "deployment", ExportParams
    makes = "onnx"

    def run(self, ctx: StepContext, params: ExportParams, model: Any) -> Output:
        from torchslim import export

        model = need_module("export", model, ctx.where)
        path = ctx.work / "model.onnx"
        report = export.onnx(model, _example(ctx), path, check_data=ctx.data.test, opset=params.opset)
        plain = dataclasses.asdict(report) if dataclasses.is_dataclass(report) else {}
        return Output(onnx=path, metrics={"export": plain})


__all__ = ["Export", "Prune", "Quantize", "Sparsify"]
