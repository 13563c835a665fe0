"""Your own DataLoaders as a torchslim :class:`DataBundle` (for ``torchslim.pipeline.compare``).

Each loader is read once into memory **in index order**, whatever its sampler: a ``shuffle=True``
loader read as it iterates would give another order (and so other batches, other accuracies and
another data fingerprint, so no finished step would be reused) in every process. Random
per-sample transforms are drawn from generators seeded for the snapshot, so the same loaders give
the same tensors in every run.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    DataLoader,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

from torchslim.core.errors import TorchSlimError
from torchslim.data.base import ArrayImageDataset, Augment, DataBundle, make_loader

RANDOM_SAMPLERS = (RandomSampler, SubsetRandomSampler, WeightedRandomSampler)
CHUNK = 1024  # samples per batch when a dataset is read in index order


def first_non_finite(x: torch.Tensor) -> int | None:
    """Index of the first sample (along dim 0) holding NaN or Inf, or None."""
    if not x.is_floating_point() or len(x) == 0:
        return None
    bad = (~torch.isfinite(x.reshape(len(x), -1))).any(1).nonzero()
    return int(bad[0]) if len(bad) else None


def check_finite(bundle: DataBundle) -> None:
    """Refuse a bundle whose train, val or test images hold NaN or Inf (tensors held in memory only).

    Raises:
        TorchSlimError: naming the split and the index of its first bad sample.
    """
    for split in ("train", "val", "test"):
        images = getattr(getattr(getattr(bundle, split, None), "dataset", None), "images", None)
        if isinstance(images, torch.Tensor):
            bad = first_non_finite(images)
            if bad is not None:
                raise TorchSlimError(f"The {split} split of dataset {bundle.name!r} holds NaN or Inf in sample {bad} "
                                     f"(the first of {len(images)}); training, calibration and accuracy on it would "
                                     "be meaningless: clean or drop those samples.")


def _map_style(dataset: Any) -> bool:
    return (dataset is not None and not isinstance(dataset, IterableDataset)
            and hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"))


def _unseeded_random_sampler(loader: Any) -> Any:
    for sampler in (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if isinstance(sampler, RANDOM_SAMPLERS) and sampler.generator is None:
            return sampler
    return None


def _indices_read(loader: Any) -> list[int] | None:
    """The dataset indices a DataLoader's sampler covers when it only orders them (every index once:
    sequential, a plain shuffle, or a subset shuffled), sorted; None for anything else."""
    sampler, dataset = loader.sampler, loader.dataset
    if isinstance(sampler, SequentialSampler) or (
            isinstance(sampler, RandomSampler) and not sampler.replacement and sampler.num_samples == len(dataset)):
        return list(range(len(dataset)))
    if isinstance(sampler, SubsetRandomSampler):
        return sorted(int(i) for i in sampler.indices)
    return None


def _in_index_order(loader: Iterable, split: str) -> Iterable:
    """What to iterate to read ``loader``'s data in a fixed order.

    A DataLoader over a map-style dataset whose sampler only orders the samples is read in index
    order (batched and collated as the loader would); anything else is read as it iterates, which
    is refused when a random sampler without a seeded generator drives it.
    """
    dataset = getattr(loader, "dataset", None)
    if isinstance(dataset, ArrayImageDataset):  # torchslim's own: whole batches by index lists
        n = len(dataset)
        return (dataset[list(range(i, min(i + CHUNK, n)))] for i in range(0, n, CHUNK))
    if isinstance(loader, DataLoader) and loader.batch_sampler is not None and _map_style(dataset):
        indices = _indices_read(loader)
        if indices is not None:
            part = dataset if len(indices) == len(dataset) else Subset(dataset, indices)
            return DataLoader(part, batch_size=loader.batch_size or 256, shuffle=False, num_workers=0,
                              collate_fn=loader.collate_fn)
    sampler = _unseeded_random_sampler(loader)
    if sampler is not None:
        raise TorchSlimError(
            f"from_loaders: the {split} loader draws its samples with a {type(sampler).__name__} without a seeded "
            "generator, which cannot be read in index order, so every run would see other data. Pass "
            "shuffle=False (torchslim reshuffles the training split per epoch from its seed) or "
            "generator=torch.Generator().manual_seed(0).")
    return loader


class _SeededRandomness:
    """Seeds torch, numpy and Python's generators for the block and restores them afterwards, so
    random per-sample transforms draw the same values in every process."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        self.states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
        torch.manual_seed(self.seed)
        np.random.seed(self.seed % 2**32)
        random.seed(self.seed)

    def __exit__(self, *exc: object) -> None:
        torch.set_rng_state(self.states[0])
        np.random.set_state(self.states[1])
        random.setstate(self.states[2])


def _check_batch(batch: Any, i: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise TorchSlimError(f"from_loaders: the {split} loader's batch {i} is a {type(batch).__name__}; "
                             "expected (inputs, labels) or (inputs, labels, ...).")
    x, y = batch[0], batch[1]
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise TorchSlimError(f"from_loaders: the {split} loader's batch {i} inputs are "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}; expected an image batch "
                             "(N, C, H, W).")
    y = torch.as_tensor(y)
    if y.ndim != 1 or len(y) != len(x) or y.is_floating_point() or y.dtype == torch.bool:
        raise TorchSlimError(f"from_loaders: the {split} loader's batch {i} labels are {tuple(y.shape)} "
                             f"{y.dtype}; expected integer class indices ({len(x)},).")
    return x.detach().cpu(), y.long().cpu()


def _collect(loader: Iterable, split: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    with _SeededRandomness(seed):
        batches: Iterator = iter(_in_index_order(loader, split))
        for i, batch in enumerate(batches):
            x, y = _check_batch(batch, i, split)
            xs.append(x)
            ys.append(y)
    if not xs:
        raise TorchSlimError(f"from_loaders: the {split} loader yielded no batches.")
    shapes = {tuple(x.shape[1:]) for x in xs}
    if len(shapes) != 1:
        raise TorchSlimError(f"from_loaders: the {split} loader's images have several shapes {sorted(shapes)}; "
                             "resize them to one (C, H, W).")
    images, labels = torch.cat(xs), torch.cat(ys)
    bad = first_non_finite(images)
    if bad is not None:
        raise TorchSlimError(f"from_loaders: the {split} split holds NaN or Inf in sample {bad} (in index order, of "
                             f"{len(images)}); clean or drop it before compressing a model on this data.")
    if int(labels.min()) < 0:
        raise TorchSlimError(f"from_loaders: the {split} split holds label {int(labels.min())} (sample "
                             f"{int((labels < 0).nonzero()[0])}); class indices start at 0.")
    return images, labels


def from_loaders(train: Iterable, test: Iterable, *, val: Iterable | None = None, num_classes: int | None = None,
                 batch_size: int | None = None, augment: Augment | None = None, seed: int = 0,
                 name: str = "custom") -> DataBundle:
    """A :class:`DataBundle` from DataLoaders of your own that yield ``(images, labels)`` batches.

    Each loader is read once, **in index order** when it has a map-style ``.dataset`` (its sampler,
    ``shuffle=True`` included, is ignored: the training split is reshuffled per epoch from ``seed``
    here), and its (already transformed) images are kept in memory, as the built-in datasets are:
    the same loaders give the same data, batches and accuracies in every process, a resumed run sees
    the same batches, and cached teacher outputs find each sample by index. A random transform in
    your loader is drawn once, from generators seeded by ``seed``; give ``augment`` for per-batch
    random crops and flips instead.

    Args:
        train: a DataLoader or iterable of ``(images (N, C, H, W), labels (N,))`` (extra items
            ignored).
        test: the test batches, in the same form.
        val: the validation batches, in the same form.
        num_classes: default: the largest label seen plus one.
        batch_size: of the loaders made here (default: the training loader's, else 128); the
            training split drops its last partial batch, so it must hold at least one batch.
        seed: the snapshot's random transforms and the training split's per-epoch order.

    Raises:
        TorchSlimError: a batch that is not (images, labels), images of different shapes across
            batches or splits, non-integer or negative labels, NaN/Inf images (the split and the
            first bad sample named), an empty loader, a label >= ``num_classes``, or a loader
            driven by an unseeded random sampler that cannot be read in index order.
    """
    splits = {"train": _collect(train, "train", seed), "test": _collect(test, "test", seed)}
    if val is not None:
        splits["val"] = _collect(val, "val", seed)
    shapes = {split: tuple(x.shape[1:]) for split, (x, _) in splits.items()}
    if len(set(shapes.values())) != 1:
        raise TorchSlimError(f"from_loaders: the splits' image shapes differ: {shapes}.")
    top = max(int(y.max()) for _, y in splits.values()) + 1
    if num_classes is None:
        num_classes = top
    elif top > num_classes:
        raise TorchSlimError(f"from_loaders: a label {top - 1} is not below num_classes={num_classes}.")
    batch_size = batch_size or getattr(train, "batch_size", None) or 128
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise TorchSlimError(f"from_loaders: batch_size must be a positive integer, got {batch_size!r}.")
    if len(splits["train"][1]) < batch_size:
        raise TorchSlimError(f"from_loaders: the train split has {len(splits['train'][1])} samples, fewer than one "
                             f"batch of {batch_size} (training drops the last partial batch); pass a smaller batch_size.")
    channels = shapes["train"][0]
    zero, one = (0.0,) * channels, (1.0,) * channels  # the loaders already normalised the images

    def loader(split: str, is_train: bool):
        x, y = splits[split]
        return make_loader(ArrayImageDataset(x, y, zero, one, augment if is_train else None), batch_size,
                           train=is_train, seed=seed)

    return DataBundle(name=name, train=loader("train", True), val=loader("val", False) if val is not None else None,
                      test=loader("test", False), num_classes=num_classes, input_shape=shapes["train"],
                      info={"source": "from_loaders", "sizes": {k: len(v[1]) for k, v in splits.items()}})
