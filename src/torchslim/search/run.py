"""``torchslim search``: from a recipe and a budget to the best compressed models it can find.

Every check runs before any training: the recipe's ``search:`` section (the space against the step
configs), the budget (enough for one trial and the final re-measurement), the storage URL, the
output directory, the data's validation split. Then the study runs (one worker in this process, or
``workers`` processes on the same study), and the final phase re-measures the front on the test set
in one comparison, interleaved against the teacher (:func:`torchslim.pipeline.compare`, reusing
every step the trials made), picks one model per scenario of the recipe, exports each pick as a
recipe ``torchslim compare`` reproduces, and writes the search report.

Output directory::

    OUT/study.db            the Optuna study (SQLite; or the --storage database)
    OUT/search.json         budget spent, every trial, the front so far (rewritten after each trial)
    OUT/search.md|.png|.html  the report of the search: every trial, the front, the picks
    OUT/steps/              every step of every trial, shared and reused (the runner's store)
    OUT/trials/<trial>/     a trial's deployed model and its architecture probe
    OUT/report.html, matrix.*  the final comparison of the front on the test set
    OUT/picks/<scenario>.yaml  each pick as a standalone recipe

A search killed at any moment and started again with the same command continues the same study:
finished trials stay finished, the budget already spent is subtracted (``search.json`` records it
every few seconds), a trial whose worker died is retried from its last saved step and epoch.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchslim.core.io import atomic_write_json
from torchslim.options.search import SearchConfig, human_seconds
from torchslim.pipeline.search_space import SpaceError, build_space
from torchslim.search.progress import RUN_FILE, STATE_FILE, Ledger, progress, run_workers, write_run_file
from torchslim.search.study import SearchError, Session, directions, run_worker, sampler, storage
from torchslim.search.trial import Baseline, deploy


def _config(recipe: Any, overrides: dict[str, Any]) -> SearchConfig:
    base = recipe.search.model_dump() if recipe.search is not None else {}
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return SearchConfig.model_validate({**base, **given})
    except Exception as exc:
        from torchslim.options.base import explain

        errors = getattr(exc, "errors", lambda: [])()
        if errors:
            e = errors[0]  # the key path as written: pydantic's union labels left out
            where = ".".join(str(p) for p in e["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
            text = explain(e, where, SearchConfig)
            raise SearchError(f"search: {text}." if e["type"] == "extra_forbidden" else f"search option {text}.") from None
        raise


def final_cap(recipe: Any, budget: float, quick: bool) -> float:
    """The timing cap per setting of the final comparison: the recipe's, at most 8% of the budget
    split over its settings (and the quick cap in a quick run)."""
    settings = len(recipe.measure.batch_sizes) * len(recipe.measure.thread_counts)
    cap = min(recipe.measure.max_seconds, max(3.0, 0.08 * budget / settings))
    return min(cap, 3.0) if quick else cap


def final_reserve(recipe: Any, cfg: SearchConfig, budget: float, quick: bool) -> float:
    """Seconds kept for the final phase: the front re-measured on the test set (exports, accuracy,
    interleaved timing up to the cap per setting) and the report."""
    settings = len(recipe.measure.batch_sizes) * len(recipe.measure.thread_counts)
    rows = 2 * (cfg.front_size + 1)
    return settings * (final_cap(recipe, budget, quick) + 0.3 * rows) + 4.0 * rows + 15.0


def identity(recipe: Any, cfg: SearchConfig, quick: bool) -> str:
    """What decides a search's trials (not its budget, trial count or front size): a study with
    another identity in the same directory is another search."""
    from torchslim.pipeline.recipe import digest

    plain = recipe.plain(exclude={"name", "description", "source", "search"})
    plain.pop("search", None)
    plain.pop("strategies", None)
    plain.pop("baseline", None)
    search = cfg.model_dump(mode="json", exclude={"budget", "trials", "front_size", "compare_with"})
    return digest({"recipe": plain, "search": search, "quick": quick})


def _claim(out: Path, ident: str, budget: float, force: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """The search state in ``out``: a new one, or the one to continue; another search's refused."""
    path = out / STATE_FILE
    state: dict[str, Any] = {}
    if path.is_file():
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            state = {}
    if state and state.get("identity") != ident:
        if not force:
            raise SearchError(f"{out} holds another search (recipe {state.get('recipe')!r}, identity "
                              f"{str(state.get('identity'))[:12]}); this one differs ({ident[:12]}) in its recipe, space, "
                              "objectives, constraints, target, sampler or --quick. Pass --force to delete it, or "
                              "choose another --out.")
        state = {}
    if force or not state:
        if force and out.exists():
            log(f"{out}: --force: deleting the previous search")
            for child in out.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        elif out.exists() and any(out.iterdir()) and not state:
            if (out / "steps").exists() or (out / "study.db").exists() or (out / "run.json").exists():
                raise SearchError(f"{out} holds a torchslim run or study that is not a search of this recipe; pass "
                                  "--force to delete it, or choose another --out.")
    out.mkdir(parents=True, exist_ok=True)
    state = {"identity": ident, "spent_seconds": 0.0, "sessions": [], **state}
    state["budget_seconds"] = budget
    return state


def _teacher_baseline(ctx: Any, out: Path, runtime: str) -> Baseline:
    from torchslim.measure import artifact_bytes
    from torchslim.pipeline.runner import step_lock
    from torchslim.train.evaluate import evaluate

    teacher, _ = ctx.load_model("teacher")
    with step_lock(out / "teacher"):
        done = (out / "teacher" / "model.onnx").is_file()
        runnable, path = (ctx.runnable(out / "teacher" / "model.onnx"), out / "teacher" / "model.onnx") if done and \
            runtime == "ort" else deploy(ctx, teacher, False, out / "teacher", runtime)
    size = artifact_bytes(path) if runtime == "ort" else sum(p.numel() * p.element_size() for p in teacher.parameters())
    accuracy = evaluate(runnable, ctx.data.val, "cpu")["accuracy"]
    return Baseline(val_accuracy=accuracy, runnable=runnable, bytes=size, artifact=str(path))


def _stages(teacher: Any) -> list[str]:
    """The teacher's stages: top-level modules holding at least two convolutions (a ResNet's
    ``layer1``..``layer3``), each a per-stage pruning ratio of the default space."""
    from torch import nn

    return [name for name, child in teacher.named_children()
            if sum(isinstance(m, nn.Conv2d) for m in child.modules()) >= 2]


def session_for(recipe: Any, cfg: SearchConfig, out: Path, url: str, deadline: float, quick: bool,
                log: Callable[[str], None], ctx_kwargs: dict[str, Any] | None = None) -> Session:
    """A worker's session: the data, the teacher on the target, the study opened."""
    import optuna

    from torchslim.search.trial import TrialContext

    ctx = TrialContext(recipe=recipe, out=out, quick=quick, log=lambda m: None, progress=False, **(ctx_kwargs or {}))
    if ctx.data.val is None or not len(ctx.data.val.dataset):
        raise SearchError(f"{recipe.where('data')}: a search measures candidates on the validation split (the test set "
                          "is kept for the final re-measurement), but this data has none; set data.val_size.")
    teacher, _ = ctx.load_model("teacher")
    space = _space(recipe, cfg, _stages(teacher))
    _check_paths(recipe, space, teacher)
    baseline = _teacher_baseline(ctx, out, cfg.target.runtime)
    seed = cfg.seed if cfg.seed is not None else recipe.seed
    study = optuna.load_study(study_name=study_name(recipe, cfg, quick), storage=storage(url), sampler=sampler(cfg, seed))
    floor = None if cfg.constraints.accuracy_floor is None else baseline.val_accuracy - cfg.constraints.accuracy_floor
    study.set_user_attr("teacher", {"val_accuracy": baseline.val_accuracy, "bytes": baseline.bytes, "floor": floor,
                                    "artifact": str(Path(baseline.artifact).relative_to(out))
                                    if Path(baseline.artifact).is_relative_to(out) else baseline.artifact,
                                    "val_samples": len(ctx.data.val.dataset)})
    return Session(recipe=recipe, cfg=cfg, space=space, out=out, ctx=ctx, study=study, baseline=baseline,
                   batch_size=cfg.target.batch_size or max(recipe.measure.batch_sizes),
                   threads=cfg.target.threads or recipe.measure.thread_counts[0], deadline=deadline, quick=quick, log=log)


def _check_paths(recipe: Any, space: Any, teacher: Any) -> None:
    """Every per-layer ratio of the space (``prune.ratios.PATH``) names a module of the teacher."""
    from torchslim.core.registry import did_you_mean

    paths = [name for name, _ in teacher.named_modules() if name]
    keys = [d.key for d in space.dimensions if d.key.startswith("prune.ratios.")]
    keys += [f"prune.ratios.{p}" for p in (space.fixed.get("prune", {}).get("ratios") or {})]
    for key in keys:
        path = key.removeprefix("prune.ratios.")
        if path not in paths:
            stages = _stages(teacher)
            raise SearchError(f"{recipe.where('search', 'space', key)}: search space: {key} names no module of the "
                              f"teacher.{did_you_mean(path, paths)} Its stages: {', '.join(stages) or 'none'} (any "
                              "module path of the teacher is valid).")


def study_name(recipe: Any, cfg: SearchConfig, quick: bool) -> str:
    return f"{recipe.name}-{identity(recipe, cfg, quick)[:12]}"


def _space(recipe: Any, cfg: SearchConfig, stages: list[str] | None, models: list[str] | None = None) -> Any:
    """The space built (``models``: student names given besides the registry; none: unchecked), a
    bad one refused at the line of its dimension."""
    try:
        return build_space(cfg.space, cfg.fixed, stages, models)
    except SpaceError as exc:
        text = str(exc)
        key = next((k for k in (cfg.space or {}) if text.startswith(str(k)) or repr(str(k)) in text), None)
        path = ("search", "space", key) if key is not None else ("search", "fixed" if text.startswith("fixed") else "space")
        raise SearchError(f"{recipe.where(*path)}: search space: {text}{'' if text.endswith(('.', '?')) else '.'}") from None


def search(
    recipe: Any,
    out: str | Path,
    *,
    budget: float | str | None = None,
    storage_url: str | None = None,
    workers: int = 1,
    quick: bool = False,
    force: bool = False,
    models: dict[str, Callable] | None = None,
    teacher: Any = None,
    data: Any = None,
    log: Callable[[str], None] = print,
    **options: Any,
) -> dict[str, Any]:
    """Search the recipe's ``search:`` space for the best compressed models within ``budget``.

    Args:
        recipe: a :class:`~torchslim.pipeline.Recipe` or the path of a YAML recipe.
        out: the output directory (see the module docstring); the same command continues a search
            that was interrupted.
        budget: wall-clock budget, final re-measurement included (seconds, or ``"60m"``, ``"1h30m"``);
            none: the recipe's ``search.budget``.
        storage_url: Optuna RDB storage URL; none: ``sqlite:///OUT/study.db``.
        workers: worker processes on the study (recipe-defined models, teacher and data only).
        quick: every trial on the recipe's ``quick`` subset and epochs (a smoke run).
        force: delete a different search found in ``out``.
        models: your own model factories ``{name: factory}``, as for :func:`torchslim.pipeline.compare`
            (one worker).
        teacher: your own teacher module, as for :func:`torchslim.pipeline.compare` (one worker).
        data: your own ``DataBundle``, as for :func:`torchslim.pipeline.compare` (one worker).
        options: fields of :class:`~torchslim.options.search.SearchConfig` over the recipe's
            ``search:`` section (``sampler="random"``, ``trials=20``, ``objectives=[...]``, ...).

    Returns:
        The search summary written to ``OUT/search.json``: the budget, every trial, the front,
        the final comparison's recommendations and the exported picks.
    """
    from torchslim.pipeline.preflight import check_out
    from torchslim.pipeline.recipe import Recipe, load_recipe

    began = time.time()
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    if recipe.task != "image":
        raise SearchError(f"{recipe.source}: `torchslim search` searches image recipes; this is a {recipe.task} recipe "
                          "(compare its strategies with `torchslim compare`).")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise SearchError(f"--workers {workers!r} is invalid: give a positive number of worker processes.")
    if workers > 1 and (models or teacher is not None or data is not None):
        raise SearchError(f"--workers {workers}: worker processes rebuild the recipe's own models, teacher and data; "
                          "models, teacher or data given in Python need workers=1.")
    try:
        cfg = _config(recipe, {"budget": budget, **options})
    except ValueError as exc:
        raise SearchError(str(exc)) from None
    unknown = [n for n in cfg.compare_with if n not in recipe.strategies]
    if unknown:
        from torchslim.core.registry import did_you_mean

        raise SearchError(f"{recipe.where('search', 'compare_with')}: search.compare_with names {unknown[0]!r}, which is "
                          f"not a strategy of the recipe.{did_you_mean(unknown[0], list(recipe.strategies))} Strategies: "
                          f"{', '.join(recipe.strategies)}.")
    if cfg.budget is None:
        raise SearchError(f"{recipe.source}: a search needs a budget: --budget 60m (or search.budget in the recipe).")
    _space(recipe, cfg, None, list(models or {}))  # the space as written, before any data or model is loaded
    reserve = final_reserve(recipe, cfg, cfg.budget, quick)
    minimum = reserve + 60.0
    if cfg.budget < minimum:
        raise SearchError(f"budget {human_seconds(cfg.budget)} is too small: the final re-measurement of the front "
                          f"keeps about {human_seconds(reserve)} and one trial needs at least a minute; give at least "
                          f"{human_seconds(minimum)} (e.g. --budget {int(minimum // 60) + 1}m).")
    out = check_out(out)
    url = storage_url or f"sqlite:///{(out / 'study.db').resolve()}"
    ident = identity(recipe, cfg, quick)
    if storage_url is not None:
        storage(url)  # reachable, before anything is written
    state = _claim(out, ident, cfg.budget, force, log)
    import optuna

    seed = cfg.seed if cfg.seed is not None else recipe.seed
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=study_name(recipe, cfg, quick), storage=storage(url),
                                directions=directions(cfg), sampler=sampler(cfg, seed), load_if_exists=True)
    state.update(recipe=recipe.name, source=recipe.source, storage=_shown(url, out), study=study.study_name,
                 objectives=cfg.objectives, sampler=cfg.sampler)
    spent = float(state.get("spent_seconds", 0.0))
    left = cfg.budget - spent - (time.time() - began)
    deadline = time.time() + left - reserve
    log(f"search {study.study_name}: budget {human_seconds(cfg.budget)} ({human_seconds(spent)} spent before), "
        f"{len(study.trials)} trial(s) in the study, {workers} worker(s); the final re-measurement keeps "
        f"{human_seconds(reserve)}")
    ledger = Ledger(out, state, spent)
    ctx_kwargs = {"factories": dict(models or {}), "teacher_override": teacher, "data_override": data}
    write_run_file(recipe, cfg, out, url, deadline, quick)  # what a worker on another machine joins with
    with ledger:
        if deadline - time.time() > 0 and not (cfg.trials is not None and len(study.trials) >= cfg.trials):
            if workers == 1:
                session = session_for(recipe, cfg, out, url, deadline, quick, log, ctx_kwargs)
                run_worker(session, cfg.trials, on_trial=lambda: progress(out, session.study, state, cfg,
                                                                           deadline, log))
            else:
                run_workers(recipe, cfg, out, url, deadline, workers, state, log, study.study_name)
        else:
            log("no time left for another trial: re-measuring the front")
        from torchslim.search.results import finish

        summary = finish(recipe, cfg, out, optuna.load_study(study_name=study.study_name, storage=storage(url)),
                         state, quick, log, ctx_kwargs, final_cap(recipe, cfg.budget, quick))
    summary["spent_seconds"] = ledger.spent()
    summary["wall_seconds_this_run"] = time.time() - began
    atomic_write_json(out / STATE_FILE, {**summary, **ledger.record()})
    return summary


def _shown(url: str, out: Path) -> str:
    from torchslim.search.study import redact

    return "sqlite: OUT/study.db" if url == f"sqlite:///{(out / 'study.db').resolve()}" else redact(url)



__all__ = ["RUN_FILE", "STATE_FILE", "final_cap", "final_reserve", "identity", "search", "session_for", "study_name"]
