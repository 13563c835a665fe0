"""Distillation from a :class:`~torchslim.distill.config.DistillConfig`: the losses, the teachers,
the task and the run, built in one place for the library, ``torchslim distill`` and a recipe's
``distill`` step.

``distill(student, teacher, data, epochs=4, losses=[...])`` is the whole run (the keyword
arguments build the config), returning a :class:`DistillHistory`: the fit's history with what the
teacher cache cost and the run's total wall time beside the training time; :func:`make_task` is the part a front end with its own training loop
or checkpointing needs; :func:`build_losses` turns loss items into loss modules (CRD's ``num_data``
is the training set's size when the item does not give it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.distill import losses as L
from torchslim.distill.config import DistillConfig, LossItem, TemperatureSchedule
from torchslim.distill.schedule import Schedule
from torchslim.distill.task import DistillTask
from torchslim.options.base import OptionsError
from torchslim.train.fit import History


@dataclass
class DistillHistory(History):
    """The fit's :class:`History` of a distillation run, with its whole cost.

    ``seconds`` is the training epochs' time; ``cache_seconds`` what building (or loading) the
    teacher cache took; ``total_seconds`` the run's wall time: cache, training, and the evaluation
    and set-up around it. A resumed run's ``seconds`` counts the epochs of earlier processes too,
    and its ``total_seconds`` is then at least ``cache_seconds + seconds``.
    """

    cache_seconds: float = 0.0
    total_seconds: float = 0.0


def cache_seconds(task: DistillTask) -> float:
    """Seconds ``task``'s teacher caches took to build or load (0 without a cache)."""
    return sum(cache.seconds for cache in task.caches.values())


def total_seconds(began: float, cache: float, train: float) -> float:
    """A distillation run's wall time since ``began`` (``time.perf_counter``), and never less than
    its cache and training seconds (a resumed run's training seconds include earlier processes)."""
    return max(time.perf_counter() - began, cache + train)


def build_losses(items: Sequence[LossItem], num_data: int | None = None) -> list[tuple[L.DistillLoss, float]]:
    """``(loss module, weight)`` for each item, the way :class:`DistillTask` takes them.

    Args:
        items: validated loss items (a config's ``losses``).
        num_data: the training set's size, CRD's memory-bank length when its item gives none.

    Raises:
        TorchSlimError: a CRD item without ``num_data`` and no training set size to fill it in.
    """
    built = []
    for item in items:
        options = item.arguments()
        if item.name == "crd" and "num_data" not in options:
            if num_data is None:
                raise TorchSlimError("loss 'crd' keeps one memory entry per training sample: give its num_data, "
                                     "or the training data (its dataset's length is used).")
            options["num_data"] = num_data
        built.append((L.create(item.name, teacher=item.teacher, **options), item.weight))
    return built


def load_teachers(sources: Sequence[str], load: Callable[[str], nn.Module]) -> dict[str, nn.Module]:
    """Each teacher source loaded by ``load``, named by its source (which a loss's ``teacher``
    names); a source given twice gets its index appended to the second name."""
    teachers: dict[str, nn.Module] = {}
    for i, source in enumerate(sources):
        teachers[source if source not in teachers else f"{source}{i}"] = load(source)
    return teachers


def temperature_schedule(options: TemperatureSchedule | None) -> Schedule | None:
    """The task's temperature :class:`Schedule` for a config's ``temperature`` (None: none)."""
    if options is None:
        return None
    return Schedule(options.kind, options.start, options.end, options.warmup, tuple(options.milestones),
                    options.gamma)


def make_task(student: nn.Module, teachers: Mapping[str, nn.Module], config: DistillConfig, *, train: Any = None,
              cache_dir: str | Path | None = None, log: Callable[[str], None] = print) -> DistillTask:
    """The :class:`DistillTask` of ``config``, its teacher cache filled when ``config.cache`` asks.

    Args:
        student: the model being trained.
        teachers: ``{name: module}``, named as the config's ``teachers`` (and its losses' ``teacher``).
        config: the distillation options.
        train: the training loader: CRD's ``num_data`` is its dataset's length, and the cache
            records its batches (required when ``config.cache`` is not ``"none"``).
        cache_dir: where a ``"disk"`` cache is memory-mapped.
        log: where the cache reports what it computed.

    Raises:
        TorchSlimError: a cache without ``train`` or a disk cache without ``cache_dir``; the task's own
            checks (tap paths, teacher names, class counts).
    """
    dataset = getattr(train, "dataset", None)
    num_data = len(dataset) if dataset is not None and hasattr(dataset, "__len__") else None
    task = DistillTask(student, dict(teachers), build_losses(config.losses, num_data),
                       teacher_weights=config.teacher_weights, multi_teacher=config.multi_teacher,
                       temperature=temperature_schedule(config.temperature), mix=config.mix)
    if config.cache == "none":
        return task
    if train is None or (config.cache == "disk" and cache_dir is None):
        task.close()
        need = "the training loader" if train is None else "a cache directory"
        raise TorchSlimError(f"cache = {config.cache!r} needs {need}; pass it, or set cache to none.")
    try:
        task.use_cache(train, draws=config.cache_draws or config.epochs,
                       directory=Path(cache_dir) if config.cache == "disk" else None, log=log)
    except BaseException:
        task.close()  # the loader is given back as it came
        raise
    return task


def _named(teacher: nn.Module | Mapping[str, nn.Module]) -> dict[str, nn.Module]:
    if isinstance(teacher, nn.Module):
        return {"teacher": teacher}
    if isinstance(teacher, Mapping) and teacher and all(isinstance(t, nn.Module) for t in teacher.values()):
        return dict(teacher)
    raise TorchSlimError(f"teacher must be an nn.Module or a non-empty {{name: module}} mapping, got "
                         f"{type(teacher).__name__}.")


def distill(student: nn.Module, teacher: nn.Module | Mapping[str, nn.Module], data: Any, epochs: int | None = None,
            *, config: DistillConfig | None = None, checkpoint_dir: str | Path | None = None, resume: bool = False,
            threads: int | None = None, progress: bool = True, log: Callable[[str], None] = print,
            **options: Any) -> DistillHistory:
    """Distil ``teacher`` into ``student`` with the fit loop; returns the fit's history with the
    teacher cache's seconds and the run's total (:class:`DistillHistory`).

    Args:
        student: the model trained (in place).
        teacher: a module (named ``"teacher"``) or ``{name: module}`` for several; the names are the
            config's ``teachers`` and what a loss's ``teacher`` names.
        data: a ``DataBundle`` or a training loader (as ``torchslim.fit`` takes it).
        epochs: passes over the training split (sugar for ``config.epochs``).
        config: the options; without it, ``epochs`` and ``options`` (any :class:`DistillConfig` field:
            ``losses=[{"name": "kd", "T": 4}]``, ``lr``, ``cache``, ...) build it. ``student``,
            ``width``, ``depth`` and ``model_kwargs`` name a model for the recipe and CLI; here the student is
            given.
        checkpoint_dir: where the training state is saved every epoch (and a disk cache kept).
        resume: continue from the state in ``checkpoint_dir``.
        threads: torch CPU threads for the run, the teacher cache's build included.
        progress: show a progress bar.
        log: where the teacher cache reports.

    Raises:
        OptionsError: a bad option (its name, value and what is valid), or teacher names that differ
            from the config's ``teachers``.
        TorchSlimError: what :func:`make_task` and ``fit`` raise.
    """
    from torchslim.train import fit

    teachers = _named(teacher)
    if config is None:
        values = {"epochs": epochs, "teachers": list(teachers), **options}
        config = DistillConfig.build("distill", {k: v for k, v in values.items() if v is not None})
    elif options or epochs is not None:
        raise OptionsError(f"distill: give the options either as config= or as keyword arguments, not both "
                           f"(got config and {', '.join(['epochs'] * (epochs is not None) + list(options))}).")
    if list(config.teachers) != list(teachers):
        raise OptionsError(f"distill: teachers = {list(config.teachers)} must name the given teacher modules: "
                           f"{', '.join(teachers)}.")
    cache_dir = Path(checkpoint_dir) / "cache" if checkpoint_dir is not None else None
    if threads is not None:
        torch.set_num_threads(threads)  # the cache is built before fit sets them
    began = time.perf_counter()
    task = make_task(student, teachers, config, train=getattr(data, "train", data), cache_dir=cache_dir, log=log)
    try:
        history = fit(task, data, config.epochs, checkpoint_dir=checkpoint_dir, resume=resume, threads=threads,
                      progress=progress, **config.fit_options())
    finally:
        task.close()
    cache = cache_seconds(task)
    return DistillHistory(**{f.name: getattr(history, f.name) for f in fields(History)}, cache_seconds=cache,
                          total_seconds=total_seconds(began, cache, history.seconds))


__all__ = ["DistillHistory", "build_losses", "cache_seconds", "distill", "load_teachers", "make_task",
           "temperature_schedule", "total_seconds"]
