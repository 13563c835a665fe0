"""The step that starts a strategy from an existing model: ``load``."""

from __future__ import annotations

from typing import Any

from torchslim.core.errors import TorchSlimError
from torchslim.pipeline.schema import Strict
from torchslim.pipeline.steps.base import Output, Step, StepContext, register


class LoadParams(Strict):
    source: str = "teacher"
    """The model to start from: teacher (the recipe's), a shipped model name or a checkpoint directory."""


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

    def run(self, ctx: StepContext, params: LoadParams, model: Any) -> Output:
        if model is not None:
            raise TorchSlimError(f"{ctx.where}: `load` must be the first step of a strategy.")
        loaded, meta = ctx.load_model(params.source)
        return Output(model=loaded, metrics={"source": params.source},
                      meta={"loaded_from": params.source, "source_meta": {
                          k: meta.get(k) for k in ("sha256", "model", "metrics") if k in meta}})


__all__ = ["Load", "LoadParams"]
