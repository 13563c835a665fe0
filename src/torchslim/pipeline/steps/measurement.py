"""The step that measures without changing the model: ``evaluate``."""

from __future__ import annotations

from typing import Any, Literal

from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.pipeline.schema import Strict
from torchslim.pipeline.steps.base import Output, Step, StepContext, need_module, register


class EvaluateParams(Strict):
    split: Literal["test", "val"] = "test"
    """The split the model's accuracy and loss are recorded on."""


@register
class Evaluate(Step):
    """Record the current model's accuracy and loss on a split (the model passes through)."""

    name, family, Params = "evaluate", "measurement", EvaluateParams
    takes_onnx = True
    makes = "same"

    def check(self, ctx: StepContext, model: Any) -> None:
        if model is None:
            need_module("evaluate", model, ctx.where)

    def metrics(self, ctx: StepContext, runnable: Any, loader: Any) -> dict[str, Any]:
        from torchslim.train import evaluate

        return evaluate(runnable, loader)

    def run(self, ctx: StepContext, params: EvaluateParams, model: Any) -> Output:
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


__all__ = ["Evaluate", "EvaluateParams"]
