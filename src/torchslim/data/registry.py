"""The dataset registry (each entry is a function returning a :class:`DataBundle`), and where a
dataset's files are looked for when the user named a location."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from torchslim.core.errors import DataNotFoundError
from torchslim.core.registry import Registry

DATASETS: Registry = Registry("dataset")

# Datasets whose samples are token ids of sentences (the text task: a sentence-encoder teacher,
# agreement with it instead of accuracy); every other registered dataset holds images.
TEXT_DATASETS = ("wordnet-glosses",)


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
