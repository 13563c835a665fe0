"""The dataset registry: each entry is a function returning a :class:`DataBundle`."""

from torchslim.core.registry import Registry

DATASETS: Registry = Registry("dataset")

# Datasets whose samples are token ids of sentences (the text task: a sentence-encoder teacher,
# agreement with it instead of accuracy); every other registered dataset holds images.
TEXT_DATASETS = ("wordnet-glosses",)
