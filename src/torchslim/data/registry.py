"""The dataset registry (each entry is a function returning a :class:`DataBundle`), and where a
dataset's files are looked for when the user named a location."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from torchslim.core.errors import DataNotFoundError, TorchSlimError
from torchslim.core.registry import Registry

DATASETS: Registry = Registry("dataset")
TASKS = ("image", "text")  # what a dataset's samples are: images to classify, or sentences to encode


def dataset(name: str, task: str) -> Callable[[Callable], Callable]:
    """Register a dataset loader under ``name``, declaring its task: ``"image"`` (images to classify)
    or ``"text"`` (token ids of sentences: a sentence-encoder teacher, agreement with it instead of
    accuracy). A recipe's task follows its dataset's."""
    if task not in TASKS:
        raise ValueError(f"dataset {name!r}: task must be one of {TASKS}, got {task!r}")

    def add(loader: Callable) -> Callable:
        loader.task = task  # type: ignore[attr-defined]
        return DATASETS.register(name, loader)

    return add


def dataset_task(name: str) -> str:
    """The task a registered dataset declared (an unknown name: the closest and the valid ones)."""
    task = getattr(DATASETS.get(name), "task", None)
    if task not in TASKS:
        raise TorchSlimError(f"dataset {name!r} declares no task; register it with "
                             f"@torchslim.data.registry.dataset({name!r}, task=...) (one of {', '.join(TASKS)}).")
    return task


def loader_kwargs(name: str, always: dict, given: dict[str, tuple[str, object]]) -> dict:
    """Keyword arguments for the dataset ``name``'s loader: ``always`` (batch size, seed, ...) where
    the loader takes them, and each of ``given`` — what the user set, ``key: (where it was set,
    value)`` — refused when the loader does not take it (a setting is never dropped silently).

    Raises:
        TorchSlimError: a given setting the dataset's loader has no use for (naming where it came
            from and the datasets that take it).
    """
    import inspect

    def takes(loader: Callable) -> set[str]:
        return set(inspect.signature(loader).parameters)

    accepted = takes(DATASETS.get(name))
    out = {k: v for k, v in always.items() if k in accepted}
    for key, (where, value) in given.items():
        if key not in accepted:
            others = [n for n in DATASETS.list() if key in takes(DATASETS.get(n))]
            raise TorchSlimError(f"{where} {value}: the dataset {name!r} has no use for it (datasets that take "
                                 f"{key}: {', '.join(others) or 'none'}); drop it.")
        out[key] = value
    return out


def datasets_of(task: str) -> list[str]:
    """The registered datasets of ``task``."""
    return [n for n in DATASETS.list() if getattr(DATASETS.get(n), "task", None) == task]


def given_location(root: str | Path | None, subdir: str) -> tuple[Path, str] | None:
    """The directory the user pointed at, and how: ``root`` (``root=`` / ``--data-root`` /
    ``data.root``) first, else ``$TORCHSLIM_DATA/<subdir>``; None when neither is set.

    A location the user gave is the only place looked: the system copy of a dataset stands in only
    when no location was given, so results never come from data the user did not point at.
    """
    if root:
        return Path(root), "root= / --data-root / data.root"
    if os.environ.get("TORCHSLIM_DATA"):
        return Path(os.environ["TORCHSLIM_DATA"]) / subdir, "$TORCHSLIM_DATA"
    return None


def refuse_incomplete(dataset: str, directory: Path, how: str, missing: Iterable[str], hint: str) -> None:
    """Raise :class:`DataNotFoundError` for a given location that lacks ``missing`` files."""
    missing = list(missing)
    state = "does not exist" if not directory.exists() else f"lacks {', '.join(missing)}"
    raise DataNotFoundError(
        f"{dataset}: the data location you gave ({how}), {directory}, {state}. It is the only place looked "
        f"when given (the system copy is used only when no location is given): {hint}")
