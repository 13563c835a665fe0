"""Datasets: each registered name gives train/val/test loaders, class count and input shape."""

from __future__ import annotations

from typing import Any

from torchslim.data import fashion_mnist as _fashion_mnist  # noqa: F401  (registers)
from torchslim.data import synthetic as _synthetic  # noqa: F401  (registers)
from torchslim.data import wordnet as _wordnet  # noqa: F401  (registers)
from torchslim.data.base import ArrayImageDataset, Augment, DataBundle, EpochBatchSampler
from torchslim.data.custom import from_loaders
from torchslim.data.registry import DATASETS


def load(name: str, **kwargs: Any) -> DataBundle:
    """The :class:`DataBundle` of the dataset registered as ``name``."""
    return DATASETS.get(name)(**kwargs)


def list() -> list[str]:  # noqa: A001  (mirrors models.list)
    """Registered dataset names."""
    return DATASETS.list()


__all__ = ["DATASETS", "ArrayImageDataset", "Augment", "DataBundle", "EpochBatchSampler", "from_loaders", "load", "list"]
