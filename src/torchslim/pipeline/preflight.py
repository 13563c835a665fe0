"""Everything about a run that can be checked before it starts, checked for every strategy at once.

A recipe that parses can still name a teacher directory that does not exist, a model that is not
registered, a dataset option its loader does not take, or a feature tap whose module path is not
in the model. Found while the third strategy trains, such a mistake costs the first two and leaves
a half-written output directory behind. :func:`preflight` finds all of them first: it loads the
data and the model sources (the run reuses both), builds each fresh model, resolves every tap on
the models it will hook, and only then may anything be written to ``--out``.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.core.registry import did_you_mean
from torchslim.pipeline.recipe_yaml import RecipeError


def check_out(out: str | Path, flag: str = "--out") -> Path:
    """``out`` as a Path, when it is a directory or can be created as one and is writable.

    Raises:
        TorchSlimError: it is a file, a file stands where a parent folder should be, or it (or its
            nearest existing parent) is not writable.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TorchSlimError(f"{flag} {out} is a file, not a directory; choose a directory (it is created when "
                             "missing).")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise TorchSlimError(f"{flag} {out} cannot be created: {existing} is a file, not a directory.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TorchSlimError(f"{flag} {out} is not writable ({existing} does not allow this user to write); "
                             "choose another directory.")
    return out


def _at(spec: Any, strategy: str, index: int) -> str:
    return f"{spec.where or '<recipe>'}: strategy {strategy!r}, step {index + 1} ({spec.name})"


def _data(ctx: Any) -> None:
    """The dataset loads with the recipe's settings (its unknown options named first)."""
    from torchslim.data import DATASETS

    recipe, cfg = ctx.recipe, ctx.recipe.data
    if ctx.data_override is None:
        if cfg.name not in DATASETS:
            raise RecipeError(f"{recipe.where('data', 'name')}: unknown dataset {cfg.name!r}."
                              f"{did_you_mean(cfg.name, DATASETS.list())} Datasets: {', '.join(DATASETS.list())}.")
        params = inspect.signature(DATASETS.get(cfg.name)).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            taken = [p for p in params if p not in ("batch_size", "seed", "augment", "tokenizer")]
            for key in cfg.options:
                if key not in params:
                    raise RecipeError(f"{recipe.where('data', 'options', key)}: data.options.{key} is not an option "
                                      f"of dataset {cfg.name!r}.{did_you_mean(str(key), taken)} Its options: "
                                      f"{', '.join(taken) or '(none)'}.")
    try:
        ctx.data  # noqa: B018 - loads and caches the bundle the run will use
    except TorchSlimError as exc:
        raise RecipeError(f"{recipe.where('data')}: data {cfg.name!r} does not load: {exc}") from None
    except TypeError as exc:  # a data.options value of the wrong kind, deep in the loader
        raise RecipeError(f"{recipe.where('data', 'options')}: data.options {cfg.options} do not fit dataset "
                          f"{cfg.name!r}: {exc}.") from None


def _source(ctx: Any, source: str, at: str) -> nn.Module:
    """The model ``source`` names (loaded once; the run reuses it)."""
    recipe = ctx.recipe
    if source == "teacher" and ctx.teacher_override is None and not recipe.teacher:
        raise RecipeError(f"{at} uses `teacher`, but the recipe names none: add `teacher: <shipped model or "
                          "checkpoint directory>` at the top level.")
    try:
        model, _ = ctx.load_model(source)
    except TorchSlimError as exc:
        where = recipe.where("teacher") if source == "teacher" else at
        raise RecipeError(f"{where}: {'teacher ' + repr(recipe.teacher) if source == 'teacher' else repr(source)} "
                          f"(used by {at.split(': ', 1)[-1]}): {exc}") from None
    return model


def _fresh(ctx: Any, name: str, width: float | None, depth: float | None, kwargs: dict, at: str) -> nn.Module:
    from torchslim import models

    if name not in ctx.factories and ":" not in name and name not in models.MODELS:
        raise RecipeError(f"{at}: unknown model {name!r}.{did_you_mean(name, models.list())} Registered models: "
                          f"{', '.join(models.list())} (or pass your own with models={{name: factory}}, or "
                          "`module:function` with --allow-import).")
    extra = {**kwargs, **({"width": width} if width is not None else {}),
             **({"depth": depth} if depth is not None else {})}
    try:
        return ctx.create_model(name, extra)
    except TorchSlimError as exc:
        raise RecipeError(f"{at}: {exc}") from None
    except TypeError as exc:  # model_kwargs the factory does not take
        raise RecipeError(f"{at}: model {name!r} cannot be built with {extra}: {exc}.") from None


def _taps(ctx: Any, params: Any, student: nn.Module | None, at: str) -> None:
    """Every loss's student_tap / teacher_tap resolves on the model it will hook."""
    from torchslim.core.taps import resolve

    for i, item in enumerate(params.losses):
        options = item.arguments()
        s_tap, t_tap = options.get("student_tap"), options.get("teacher_tap")
        here = f"{at}, losses[{i}] ({item.name})"
        try:
            if s_tap and student is not None:
                resolve(student, s_tap, "student")
            if t_tap:
                for source in ([item.teacher] if item.teacher else params.teachers):
                    resolve(_source(ctx, source, at), t_tap, f"teacher {source!r}")
        except RecipeError:
            raise
        except TorchSlimError as exc:
            raise RecipeError(f"{here}: {exc}") from None


def _strategy(ctx: Any, name: str) -> None:
    """One strategy's sources, models and taps, walking its steps with the model each one gets."""
    registry = ctx.task.steps
    current: nn.Module | None = None  # the architecture at this step (module paths survive pruning)
    for i, spec in enumerate(ctx.recipe.strategies[name]):
        at, params, step = _at(spec, name, i), spec.params, registry.get(spec.name)()
        for source in step.sources(params):
            model = _source(ctx, source, at)
            if spec.name == "load":
                current = model
        current = ctx.task.preflight_step(ctx, spec, step, current, at)


def image_step(ctx: Any, spec: Any, step: Any, current: Any, at: str) -> Any:
    """An image step's models and taps checked against the architecture it gets; the architecture
    after it (None after a step that makes an ONNX file)."""
    params = spec.params
    fresh = getattr(params, "model", None) if spec.name == "train" else getattr(params, "student", None)
    if spec.name in ("train", "distill") and fresh is not None:
        current = _fresh(ctx, fresh, params.width, params.depth, params.model_kwargs, at)
    if spec.name == "distill":
        _taps(ctx, params, current, at)
    if spec.name in ("prune", "sparsify") and current is not None:
        _prune_targets(current, params, at)
    if step.makes == "onnx":
        current = None
    if spec.name == "evaluate" and params.split == "val" and ctx.data.val is None:
        raise RecipeError(f"{at}: split: val, but the dataset has no validation split (data.val_size is 0); "
                          "use split: test or set data.val_size.")
    return current


def text_step(ctx: Any, spec: Any, step: Any, current: Any, at: str) -> Any:
    """A ``layers`` step keeps layers the encoder it gets has; returns the layer count after the step
    (the encoder itself after ``load``, whose ``layers`` are counted)."""
    from torchslim.text.students import check_layers

    available = len(current.layers) if hasattr(current, "layers") else current
    if spec.name != "layers" or not isinstance(available, int):
        return current
    params = spec.params
    if params.keep is not None and params.keep > available:
        raise RecipeError(f"{at}: keep = {params.keep}, but the encoder it gets has {available} layers; keep at most "
                          f"{available}.")
    if params.layers is not None:
        try:
            check_layers(params.layers, available)
        except TorchSlimError as exc:
            raise RecipeError(f"{at}: {exc}") from None
    return params.keep if params.keep is not None else len(params.layers)


def _prune_targets(model: nn.Module, params: Any, at: str) -> None:
    """``ignore`` paths or class names and per-layer ``ratios`` paths exist in the model (by the
    pruning library's own resolvers, so the recipe and the library agree on what is valid)."""
    from torchslim.prune.targets import resolve_ignore, resolve_ratios

    try:
        resolve_ignore(model, params.ignore)
        resolve_ratios(model, getattr(params, "ratios", None) or None)
    except TorchSlimError as exc:
        raise RecipeError(f"{at}: {exc}") from None


def preflight(ctx: Any, strategies: list[str]) -> None:
    """Check every strategy in ``strategies`` against the data and models it will use, before the
    run writes anything; raises RecipeError naming the strategy, step and ``file:line``."""
    _data(ctx)
    for name in strategies:
        _strategy(ctx, name)


__all__ = ["check_out", "preflight"]
