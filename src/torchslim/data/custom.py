"""Your own DataLoaders as a torchslim :class:`DataBundle` (for ``torchslim.pipeline.compare``)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from torchslim.core.errors import TorchSlimError
from torchslim.data.base import ArrayImageDataset, Augment, DataBundle, make_loader


def _collect(loader: Iterable, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for i, batch in enumerate(loader):
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise TorchSlimError(f"from_loaders: the {split} loader's batch {i} is a {type(batch).__name__}; "
                                 "expected (inputs, labels) or (inputs, labels, ...).")
        x, y = batch[0], batch[1]
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise TorchSlimError(f"from_loaders: the {split} loader's batch {i} inputs are "
                                 f"{getattr(x, 'shape', type(x).__name__)}; expected an image batch (N, C, H, W).")
        y = torch.as_tensor(y)
        if y.ndim != 1 or len(y) != len(x) or y.is_floating_point():
            raise TorchSlimError(f"from_loaders: the {split} loader's batch {i} labels are {tuple(y.shape)} "
                                 f"{y.dtype}; expected integer class indices ({len(x)},).")
        xs.append(x.detach().cpu())
        ys.append(y.long().cpu())
    if not xs:
        raise TorchSlimError(f"from_loaders: the {split} loader yielded no batches.")
    shapes = {tuple(x.shape[1:]) for x in xs}
    if len(shapes) != 1:
        raise TorchSlimError(f"from_loaders: the {split} loader's images have several shapes {sorted(shapes)}; "
                             "resize them to one (C, H, W).")
    return torch.cat(xs), torch.cat(ys)


def from_loaders(train: Iterable, test: Iterable, *, val: Iterable | None = None, num_classes: int | None = None,
                 batch_size: int = 128, augment: Augment | None = None, seed: int = 0,
                 name: str = "custom") -> DataBundle:
    """A :class:`DataBundle` from DataLoaders of your own that yield ``(images, labels)`` batches.

    Each loader is read once and its (already transformed) images are kept in memory, as the
    built-in datasets are: then the training split is reshuffled per epoch from the seed, a resumed
    run sees the same batches, and cached teacher outputs find each sample by index. A random
    transform in your loader is therefore drawn once; give ``augment`` for per-batch random crops
    and flips instead.

    Args:
        train, test, val: iterables of ``(images (N, C, H, W), labels (N,))`` (extra items ignored).
        num_classes: default: the largest label seen plus one.
        batch_size: of the loaders made here.

    Raises:
        TorchSlimError: a batch that is not (images, labels), images of different shapes across
            batches or splits, non-integer labels, an empty loader, or a label >= ``num_classes``.
    """
    splits = {"train": _collect(train, "train"), "test": _collect(test, "test")}
    if val is not None:
        splits["val"] = _collect(val, "val")
    shapes = {split: tuple(x.shape[1:]) for split, (x, _) in splits.items()}
    if len(set(shapes.values())) != 1:
        raise TorchSlimError(f"from_loaders: the splits' image shapes differ: {shapes}.")
    top = max(int(y.max()) for _, y in splits.values()) + 1
    if num_classes is None:
        num_classes = top
    elif top > num_classes:
        raise TorchSlimError(f"from_loaders: a label {top - 1} is not below num_classes={num_classes}.")
    channels = shapes["train"][0]
    zero, one = (0.0,) * channels, (1.0,) * channels  # the loaders already normalised the images

    def loader(split: str, is_train: bool):
        x, y = splits[split]
        return make_loader(ArrayImageDataset(x, y, zero, one, augment if is_train else None), batch_size,
                           train=is_train, seed=seed)

    return DataBundle(name=name, train=loader("train", True), val=loader("val", False) if val is not None else None,
                      test=loader("test", False), num_classes=num_classes, input_shape=shapes["train"],
                      info={"source": "from_loaders", "sizes": {k: len(v[1]) for k, v in splits.items()}})
