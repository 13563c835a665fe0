"""The text task's pipeline steps: a sentence-encoder teacher made smaller, step by step.

A recipe whose data is a text dataset (``wordnet-glosses``) runs these steps instead of the image
ones; its teacher is ``minilm`` (all-MiniLM-L6-v2) or a BERT-family model directory::

    strategies:
      teacher-fp32: [load]
      student-3l-distilled:
        - load: teacher
        - layers: {keep: 3}          # the 3 teacher layers that agree best, measured before training
        - distill: {epochs: 2}       # embed-cos on cached teacher embeddings
      teacher-pruned-distilled:
        - load: teacher
        - prune: {heads: 0.5, ffn: 0.5}
        - distill: {epochs: 2}
      teacher-int8:
        - load: teacher
        - quantize                   # ONNX Runtime dynamic INT8, per-channel weights

Between steps a model is a :class:`~torchslim.text.SentenceEncoder` (saved with ``save_encoder``)
or, after ``quantize``/``export``, an ONNX file that takes token ids. ``layers`` and ``prune``
measure on the first ``sample_size`` validation sentences; ``evaluate`` (and the comparison's
matrix) measures agreement with the recipe's teacher on the test sentences.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.core.registry import Registry
from torchslim.pipeline.steps.base import Output, Step, StepContext
from torchslim.pipeline.steps.measurement import Evaluate as ImageEvaluate
from torchslim.pipeline.steps.source import Load
from torchslim.text.config import (
    TextDistillConfig,
    TextExportConfig,
    TextLayersConfig,
    TextPruneConfig,
    TextQuantizeConfig,
)

TEXT_STEPS: Registry = Registry("text pipeline step")
TEXT_STEPS.register("load", Load)  # the teacher, ``minilm`` or a model directory (Context loads encoders)


def register(cls: type[Step]) -> type[Step]:
    TEXT_STEPS.register(cls.name, cls)
    return cls


def need_encoder(step: str, model: Any, where: str) -> nn.Module:
    if model is None:
        raise TorchSlimError(f"{where}: step {step!r} needs a sentence encoder from an earlier step; start the "
                             "strategy with `- load: teacher`.")
    if not isinstance(model, nn.Module):
        raise TorchSlimError(f"{where}: step {step!r} needs a torch encoder, but the previous step produced an "
                             f"ONNX file ({model}); put {step!r} before `quantize`/`export`.")
    return model


def _sample(ctx: StepContext, size: int) -> torch.Tensor:
    """The first ``size`` validation sentences (training ones when there is no validation split)."""
    loader = ctx.data.val if ctx.data.val is not None else ctx.data.train
    return loader.dataset.ids[:size]


def _example(ctx: StepContext, n: int = 4) -> torch.Tensor:
    """``n`` test sentences, padded only to their longest, to export with."""
    ids = ctx.data.test.dataset.ids[:n]
    width = max(int((ids != ctx.data.test.dataset.pad_token_id).sum(dim=1).max()), 1)
    return ids[:, :width].contiguous()


def _located(ctx: StepContext, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` with the step's place in the recipe prefixed to a TorchSlimError."""
    try:
        return fn(*args, **kwargs)
    except TorchSlimError as exc:
        raise TorchSlimError(f"{ctx.where}: {exc}") from None


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- students made from the teacher ----------------------------------------------------------------


@register
class Layers(Step):
    """A student with fewer layers, initialised from the current encoder's: the ``keep`` layers whose
    layer-dropped model agrees best with it (``shrink_layers``, measured before training) or the
    given ``layers``. ``- layers: 3`` is ``{keep: 3}``; ``- layers: [0, 5]`` is ``{layers: [0, 5]}``."""

    name, family, Params = "layers", "structural", TextLayersConfig
    makes_student = True

    @staticmethod
    def shorthand(value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"keep": value}
        return {"layers": value} if isinstance(value, list) else ({} if value is None else value)

    def run(self, ctx: StepContext, params: TextLayersConfig, model: Any) -> Output:
        from torchslim.text import shrink_layers

        encoder = need_encoder("layers", model, ctx.where)
        metrics: dict[str, Any] = {"parameters_before": _params(encoder)}
        student, choice = _located(ctx, shrink_layers, encoder, _sample(ctx, params.sample_size), params)
        if choice is not None:
            ctx.log(f"{ctx.where}: keep layers {choice.layers} ({choice.method}; agreement {choice.score:.4f} "
                    f"before training, every other {choice.every_other[0]}: {choice.every_other[1]:.4f})")
            metrics["choice"] = choice.to_dict()
        layers = student.teacher_layers
        metrics.update(layers=list(layers), parameters_after=_params(student))
        return Output(model=student, metrics=metrics, meta={"teacher_layers": list(layers)})


@register
class Prune(Step):
    """Attention heads and FFN units removed physically, the least important first (their
    contribution to the residual stream on a sample): a smaller dense encoder."""

    name, family, Params = "prune", "structural", TextPruneConfig

    def run(self, ctx: StepContext, params: TextPruneConfig, model: Any) -> Output:
        from torchslim.text import prune_encoder

        encoder = need_encoder("prune", model, ctx.where)
        pruned, report = _located(ctx, prune_encoder, encoder, _sample(ctx, params.sample_size), params)
        for layer in report["layers"]:
            layer.pop("head_importance", None)  # per-head scores: noise in step.json
        return Output(model=pruned, metrics=report)


# -- distillation ----------------------------------------------------------------------------------


@register
class Distill(Step):
    """Train the current encoder (a layer-dropped or pruned student) to reproduce the teacher's
    embeddings (``distill_encoder``: AdamW, cached teacher embeddings unless a loss taps it)."""

    name, family, Params = "distill", "distillation", TextDistillConfig

    def sources(self, params: TextDistillConfig) -> list[str]:
        return [params.teacher]

    def run(self, ctx: StepContext, params: TextDistillConfig, model: Any) -> Output:
        from torchslim.text import distill_encoder

        student = need_encoder("distill", model, ctx.where)
        teacher, _ = ctx.load_model(params.teacher)
        seed = {} if params.seed is not None else {"seed": ctx.recipe.seed}  # none: the recipe's seed
        history = _located(
            ctx, distill_encoder, student, teacher, ctx.data.train, params, cache_dir=ctx.work / "cache",
            checkpoint_dir=ctx.work / "checkpoints", threads=ctx.recipe.threads, progress=ctx.progress,
            log=ctx.log, **seed)
        metrics = {"train_seconds": history.seconds, "final_epoch": history.epochs[-1] if history.epochs else None}
        return Output(model=student, metrics=metrics, epochs=params.epochs, used_teacher=True,
                      meta={"distill": {"teacher": params.teacher, "cache": params.cache,
                                        "losses": [i.model_dump(mode="json") for i in params.losses]}})


# -- deployment ------------------------------------------------------------------------------------


@register
class Quantize(Step):
    """ONNX export, then ONNX Runtime dynamic INT8 (per-channel int8 weights). The result is an
    ``.onnx`` file taking token ids."""

    name, family, Params = "quantize", "structural", TextQuantizeConfig
    int8 = True
    makes = "onnx"

    @staticmethod
    def shorthand(value: Any) -> Any:
        return {"mode": value} if isinstance(value, str) else ({} if value is None else value)

    def run(self, ctx: StepContext, params: TextQuantizeConfig, model: Any) -> Output:
        from torchslim.runtime.graph import kernel_of, read_model
        from torchslim.text import export_onnx, quantize_int8

        encoder = need_encoder("quantize", model, ctx.where)
        fp32 = _located(ctx, export_onnx, encoder, ctx.work / "fp32.onnx", _example(ctx))
        int8 = quantize_int8(fp32, ctx.work / "model.onnx", params)
        metrics = {"mode": params.mode, "kernel": kernel_of(read_model(int8)),
                   "sizes": {"fp32": fp32.stat().st_size, "int8": int8.stat().st_size}}
        fp32.unlink()  # only the INT8 model is kept (the teacher's FP32 graph is ~90 MB)
        return Output(onnx=int8, metrics=metrics)


@register
class Export(Step):
    """ONNX FP32 export of the encoder (token ids in, embeddings out), checked against torch."""

    name, family, Params = "export", "deployment", TextExportConfig
    makes = "onnx"

    def run(self, ctx: StepContext, params: TextExportConfig, model: Any) -> Output:
        from torchslim.text import export_onnx

        encoder = need_encoder("export", model, ctx.where)
        path = _located(ctx, export_onnx, encoder, ctx.work / "model.onnx", _example(ctx))
        return Output(onnx=path, metrics={"bytes": path.stat().st_size})


# -- evaluate --------------------------------------------------------------------------------------


@register
class Evaluate(ImageEvaluate):
    """Record the current model's agreement with the teacher on a split (the model passes through):
    mean cosine, k-NN overlap and pairwise Spearman of the embeddings."""

    def check(self, ctx: StepContext, model: Any) -> None:
        if model is None:
            need_encoder("evaluate", model, ctx.where)

    def metrics(self, ctx: StepContext, runnable: Any, loader: Any) -> dict[str, Any]:
        from torchslim.pipeline.text_measure import agreement_with_teacher

        return agreement_with_teacher(ctx, {"model": runnable}, loader.dataset.ids)["model"]


__all__ = ["TEXT_STEPS", "need_encoder"]
