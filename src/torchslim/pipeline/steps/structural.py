"""The image task's structural steps: channel pruning, magnitude sparsity, INT8 quantization (post-training
and quantization-aware) and ONNX export, registered in :data:`~torchslim.pipeline.steps.STEPS`."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from pydantic import BaseModel

from torchslim.options.quantize import ExportConfig, QATConfig, QuantizeConfig
from torchslim.pipeline.schema import QuickConfig
from torchslim.pipeline.steps.base import Output, Step, StepContext, need_module, register
from torchslim.prune.config import PruneConfig, SparsifyConfig

# -- structural compression ------------------------------------------------------------------------


def _example(ctx: StepContext, n: int = 8) -> torch.Tensor:
    return ctx.data.example_batch(n)


@register
class Prune(Step):
    """Channel pruning on torch-pruning's dependency graph: the model physically shrinks; optional
    recovery by fine-tuning or by distillation from the model before pruning."""

    name, family, Params = "prune", "structural", PruneConfig

    def quicken(self, params: BaseModel, quick: QuickConfig) -> BaseModel:
        if not params.epochs:
            return params
        return params.model_copy(update={"epochs": max(min(params.epochs, quick.epochs), params.iterations)})

    def run(self, ctx: StepContext, params: PruneConfig, model: Any) -> Output:
        from torchslim.prune import channels

        model = need_module("prune", model, ctx.where)
        pruned, record = channels(model, _example(ctx), config=params, data=ctx.data, seed=ctx.recipe.seed,
                                  cache_dir=ctx.work / "teacher-cache", progress=ctx.progress,
                                  threads=ctx.recipe.threads)
        metrics = record.model_dump(mode="json")
        metrics.pop("steps", None)  # the applied steps travel with the saved model
        return Output(model=pruned, metrics=metrics, epochs=params.epochs, used_teacher=params.recover == "kd")


@register
class Sparsify(Step):
    """Unstructured magnitude sparsity (the model keeps its shape; dense kernels run no faster)."""

    name, family, Params = "sparsify", "structural", SparsifyConfig

    def run(self, ctx: StepContext, params: SparsifyConfig, model: Any) -> Output:
        from torchslim.prune import sparsify

        model = need_module("sparsify", model, ctx.where)
        sparse, record = sparsify(model, config=params, data=ctx.data if params.epochs else None,
                                  progress=ctx.progress, threads=ctx.recipe.threads, seed=ctx.recipe.seed)
        metrics = record.model_dump(mode="json")
        metrics["notes"] = [
            f"{100 * record.sparsity:.1f}% of the sparsified weights are zero; the weights file is "
            f"{record.dense_bytes:,} bytes dense and {record.zipped_bytes:,} bytes zipped — dense kernels "
            "run no faster, so its latency is the unpruned model's."]
        return Output(model=sparse, metrics=metrics, epochs=params.epochs)


def _int8_metrics(result: Any) -> dict[str, Any]:
    """What an INT8 artifact's sidecar says about the quantization, as a step's metrics."""
    info = dict(getattr(result, "info", {}) or {})
    metrics = {k: info[k] for k in ("mode", "quantization", "kernel", "sizes") if k in info}
    export = (info.get("source") or {}).get("export") if isinstance(info.get("source"), dict) else None
    if export:
        metrics["export"] = export
    return metrics


def _calibration(ctx: StepContext) -> Any:
    """Held-out training images calibrate (the validation split), else the training split."""
    return ctx.data.val if ctx.data.val is not None else ctx.data.train


@register
class Quantize(Step):
    """INT8 for ONNX Runtime: static (calibrated on held-out training images, QDQ, per-channel
    weights, operand types chosen for this CPU) or dynamic. The result is an ``.onnx`` file."""

    name, family, Params = "quantize", "structural", QuantizeConfig
    int8 = True
    makes = "onnx"

    def quicken(self, params: BaseModel, quick: QuickConfig) -> BaseModel:
        # dynamic INT8 calibrates nothing: its calibration_batches must stay unset (and unused)
        return super().quicken(params, quick) if params.mode == "static" else params

    def run(self, ctx: StepContext, params: QuantizeConfig, model: Any) -> Output:
        from torchslim import quantize

        model = need_module("quantize", model, ctx.where)
        target = ctx.work / "int8"
        if params.mode == "static":
            result = quantize.static_int8(model, _calibration(ctx), out=target, example_input=_example(ctx),
                                          config=params.method())
        else:
            result = quantize.dynamic_int8(model, out=target, example_input=_example(ctx), config=params.method())
        return Output(onnx=target / "model.onnx", metrics=_int8_metrics(result))


@register
class QAT(Step):
    """Quantization-aware training: the model fine-tuned on the training data with fake-quantized
    weights and activations on ONNX Runtime's INT8 grids (distilled from ``teacher`` when set:
    ``source``, the model before this step, or a recipe source such as ``teacher``), then static
    INT8 with the activation ranges it learned. The result is an ``.onnx`` file."""

    name, family, Params = "qat", "structural", QATConfig
    int8 = True
    makes = "onnx"

    def sources(self, params: QATConfig) -> list[str]:
        return [params.teacher] if params.teacher not in (None, "source") else []

    def run(self, ctx: StepContext, params: QATConfig, model: Any) -> Output:
        from torchslim.quantize import run_qat

        model = need_module("qat", model, ctx.where)
        named = params.teacher not in (None, "source")
        teacher = ctx.load_model(params.teacher)[0] if named else None
        target = ctx.work / "int8"
        result = run_qat(model, ctx.data.train, _calibration(ctx), out=target, teacher_model=teacher,
                         example_input=_example(ctx), progress=ctx.progress, threads=ctx.recipe.threads,
                         seed=ctx.recipe.seed, config=params)
        metrics = _int8_metrics(result)
        qat = dict(result.info.get("qat") or {})
        metrics["qat"] = {k: qat[k] for k in ("ranges", "layers", "training") if k in qat}
        return Output(onnx=target / "model.onnx", metrics=metrics, epochs=params.epochs,
                      used_teacher=params.teacher is not None)


@register
class Export(Step):
    """ONNX FP32 export, checked against the torch model on real test batches."""

    name, family, Params = "export", "deployment", ExportConfig
    makes = "onnx"

    def run(self, ctx: StepContext, params: ExportConfig, model: Any) -> Output:
        from torchslim import export

        model = need_module("export", model, ctx.where)
        path = ctx.work / "model.onnx"
        report = export.onnx(model, _example(ctx), path, check_data=ctx.data.test, config=params)
        plain = dataclasses.asdict(report) if dataclasses.is_dataclass(report) else {}
        return Output(onnx=path, metrics={"export": plain})


__all__ = ["Export", "Prune", "QAT", "Quantize", "Sparsify"]
