"""``torchslim compare``: run every strategy of a recipe, measure them together, write the report.

Strategies run one after another; one that fails becomes a row holding its error while the others
finish (the exit code says something failed). Every final model is then measured on each
deployment target of ``measure.targets`` that applies to it (torch eager FP32; ONNX Runtime FP32,
exported here; ONNX Runtime INT8 for a quantize step's model): accuracy on the same test set,
then every (strategy, target) timed in one run of interleaved rounds until each speed-up's 95%
interval is narrow or the time cap (:func:`torchslim.measure.rounds.confident_latency`), each
against the teacher on the same runtime. For the text task, quality is agreement with the teacher
(:mod:`torchslim.pipeline.text_measure`). The measured selection matrix, the recommendations per
deployment scenario and the report files follow (:mod:`torchslim.report`).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from torchslim.core.io import atomic_write_json
from torchslim.pipeline.preflight import check_out, preflight
from torchslim.pipeline.recipe import Recipe, RecipeError, load_recipe
from torchslim.pipeline.runner import Context, StrategyResult, format_error, run_strategy

RUN_FILE = "run.json"


def prepare_out(out: Path, recipe: Recipe, quick: bool, resume: bool, force: bool, log: Callable) -> None:
    """Claim ``out`` for this recipe: a directory holding another recipe's run is refused unless
    ``resume`` (reuse whatever steps still match) or ``force`` (delete it and start afresh). A run
    that finished no step protects nothing: the next command claims it (a fixed recipe reruns)."""
    identity = {"recipe": recipe.name, "fingerprint": recipe.fingerprint(), "quick": quick}
    marker = out / RUN_FILE
    if marker.is_file():
        try:
            previous = json.loads(marker.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            previous = {}
        same = {k: previous.get(k) for k in identity} == identity
        if not same:
            if force or not _finished_steps(out):
                log(f"{out} held a run of {'another recipe' if force else 'a recipe that finished no step'} "
                    f"({previous.get('recipe')!r}{', quick' if previous.get('quick') else ''}); starting afresh.")
                _clear(out)
            elif resume:
                log(f"{out} holds a run of recipe {previous.get('recipe')!r} with other settings; --resume: "
                    "reusing every step whose configuration still matches.")
            else:
                raise RecipeError(
                    f"{out} already holds a run of recipe {previous.get('recipe')!r} "
                    f"({'quick' if previous.get('quick') else 'full'}, fingerprint "
                    f"{str(previous.get('fingerprint'))[:12]}), not of this one ({recipe.name!r}, "
                    f"{'quick' if quick else 'full'}, {identity['fingerprint'][:12]}). Pass --resume to reuse "
                    "its matching steps, --force to delete it, or choose another --out.")
    elif out.exists() and any(p.name not in (RUN_FILE,) for p in out.iterdir()) and not (resume or force):
        if (out / "steps").exists() or (out / "matrix.json").exists():
            raise RecipeError(f"{out} holds a torchslim run without its {RUN_FILE}; pass --resume or --force.")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, {**identity, "source": recipe.source, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                               "recipe_config": recipe.plain()})


def _clear(out: Path) -> None:
    for child in ("steps", "strategies", "targets", "report.html", "matrix.md", "matrix.json", "pareto.png"):
        target = out / child
        shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)


def _finished_steps(out: Path) -> bool:
    """Whether any step of a run in ``out`` finished (a run that failed before its first step
    finished holds nothing worth protecting, so the same command may claim it again)."""
    return any((out / "steps").glob("*/step.json"))


def _claim(recipe: Recipe, out: str | Path, chosen: list[str], resume: bool, force: bool, ctx_kwargs: dict,
           quick: bool, log: Callable) -> tuple[Path, Context]:
    """The checks before any work, then ``out`` claimed: flags, the output directory, and every
    strategy's data, models and taps (:func:`~torchslim.pipeline.preflight.preflight`)."""
    if resume and force:
        raise RecipeError("--resume and --force contradict each other (resume=True, force=True): --resume reuses "
                          "the matching steps in OUT, --force deletes them; give one.")
    out = check_out(out)
    ctx = Context(recipe=recipe, out=out, quick=quick, log=log, **ctx_kwargs)
    preflight(ctx, chosen)
    prepare_out(out, recipe, quick, resume, force, log)
    return out, ctx




def measure_results(ctx: Context, results: list[StrategyResult]) -> dict[str, Any]:
    """Measure every successful strategy's final model the way the recipe's task does (see
    :meth:`torchslim.pipeline.tasks.Task.measure`): ``{"records", "timing", "failures"}``."""
    return ctx.task.measure(ctx, results)


def compare(
    recipe: Recipe | str | Path,
    out: str | Path,
    *,
    quick: bool = False,
    resume: bool = False,
    force: bool = False,
    strategies: list[str] | None = None,
    models: Mapping[str, Callable[..., nn.Module]] | None = None,
    teacher: nn.Module | None = None,
    data: Any = None,
    allow_imports: tuple[str, ...] = (),
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the recipe's strategies, measure them in one run, and write the report into ``out``.

    Args:
        recipe: a :class:`Recipe` or the path of a YAML recipe.
        quick: every strategy on a subset of the data with few epochs (the recipe's ``quick``).
        resume: when ``out`` holds another recipe's run, reuse every step that still matches
            (see :func:`prepare_out`).
        force: when ``out`` holds another recipe's run, delete it and start afresh.
        strategies: run only these (default: all).
        models: ``{name: factory}`` for models of your own; a factory is called as
            ``factory(num_classes=..., in_channels=..., **model_kwargs)`` and a recipe refers to it
            by ``name`` (``train: {model: name}``, ``distill: {student: name}``).
        teacher: an ``nn.Module`` used as the recipe's ``teacher`` (instead of its ``teacher:``); for
            a text recipe a :class:`~torchslim.text.SentenceEncoder`.
        data: a ``DataBundle`` (train/val/test loaders, num_classes, input_shape) instead of the
            recipe's ``data:`` section; for a text recipe, tokenized by the teacher's tokenizer.

    Returns:
        The matrix (also written to ``out/matrix.json``; its schema is in
        :mod:`torchslim.report.matrix`); ``matrix["failures"]`` lists what failed, with its error.
    """
    from torchslim.report import build_matrix, write_report

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    chosen = list(recipe.strategies) if strategies is None else list(strategies)
    unknown = [s for s in chosen if s not in recipe.strategies]
    if unknown:
        from torchslim.core.registry import did_you_mean

        raise RecipeError(f"Unknown strategy {unknown[0]!r}.{did_you_mean(unknown[0], list(recipe.strategies))} "
                          f"Strategies of {recipe.name!r}: {', '.join(recipe.strategies)}.")
    if recipe.baseline_name not in chosen:
        chosen.insert(0, recipe.baseline_name)
    out, ctx = _claim(recipe, out, chosen, resume, force, dict(
        progress=progress, factories=dict(models or {}), allow_imports=tuple(allow_imports), data_override=data,
        teacher_override=teacher), quick, log)
    started = time.perf_counter()
    results: list[StrategyResult] = []
    for name in chosen:
        log(f"== strategy {name} ==")
        try:
            result = run_strategy(ctx, name)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one failing strategy must not stop the others
            message = format_error(exc)
            log(f"{name}: FAILED — {message}")
            result = StrategyResult(name=name, steps=[], error=message,
                                    route=ctx.task.route([s.name for s in recipe.strategies[name]]))
        results.append(result)
        atomic_write_json(out / "strategies" / f"{name}.json", {
            "name": name, "ok": result.ok, "error": result.error, "steps": result.steps,
            "final": str(result.final.path) if result.final else None})
    measured = measure_results(ctx, results)
    data_info = {"name": ctx.data.name, "train_samples": len(ctx.data.train.dataset),
                 "test_samples": len(ctx.data.test.dataset)}
    matrix = build_matrix(recipe, results, measured, out=out, data=data_info, quick=quick,
                          wall_seconds=time.perf_counter() - started)
    write_report(matrix, out)
    log(f"report: {out / 'report.html'}, {out / 'matrix.md'}, {out / 'matrix.json'}, {out / 'pareto.png'}")
    return matrix


def run(recipe: Recipe | str | Path, out: str | Path, *, strategy: str | None = None, quick: bool = False,
        resume: bool = False, force: bool = False, progress: bool = True, log: Callable[[str], None] = print,
        **kwargs: Any) -> StrategyResult:
    """Run one pipeline (a recipe's only strategy, or ``strategy``), saving each step in ``out``."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    if strategy is None:
        if len(recipe.strategies) != 1:
            raise RecipeError(f"{recipe.source} has {len(recipe.strategies)} strategies "
                              f"({', '.join(recipe.strategies)}): name one with --strategy, or use "
                              "`torchslim compare` to run them all.")
        strategy = next(iter(recipe.strategies))
    if strategy not in recipe.strategies:
        from torchslim.core.registry import did_you_mean

        raise RecipeError(f"Unknown strategy {strategy!r}.{did_you_mean(strategy, list(recipe.strategies))} "
                          f"Strategies: {', '.join(recipe.strategies)}.")
    out, ctx = _claim(recipe, out, [strategy], resume, force, dict(
        progress=progress, factories=dict(kwargs.get("models") or {}),
        allow_imports=tuple(kwargs.get("allow_imports", ())), data_override=kwargs.get("data"),
        teacher_override=kwargs.get("teacher")), quick, log)
    result = run_strategy(ctx, strategy)
    atomic_write_json(out / "strategies" / f"{strategy}.json", {
        "name": strategy, "ok": True, "error": None, "steps": result.steps, "final": str(result.final.path)})
    return result


__all__ = ["RUN_FILE", "compare", "measure_results", "prepare_out", "run"]

