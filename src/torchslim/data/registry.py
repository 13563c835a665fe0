"""The dataset registry: each entry is a function returning a :class:`DataBundle`."""

from torchslim.core.registry import Registry

DATASETS: Registry = Registry("dataset")
