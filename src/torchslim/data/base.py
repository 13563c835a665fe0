"""In-memory image datasets served a whole batch at a time.

Small image datasets (Fashion-MNIST is 47 MB as uint8) fit in memory, so a batch is gathered and
augmented with a handful of tensor operations instead of one Python call per image. The result is
still a plain ``torch.utils.data.DataLoader``; its sampler yields batches of indices tagged with
the epoch, so augmentation is a pure function of (seed, epoch, batch): a resumed run sees exactly
the batches an uninterrupted one would, and DDP ranks each see their own shard.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from torchslim.core.errors import TorchSlimError


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation, applied per batch with one random draw per image.

    Args:
        crop_padding: pixels of zero padding for a random crop back to the input size (0: off).
        hflip: flip each image horizontally with probability 1/2.
    """

    crop_padding: int = 0
    hflip: bool = False

    @property
    def enabled(self) -> bool:
        return self.crop_padding > 0 or self.hflip


class ArrayImageDataset(Dataset):
    """Images (N, C, H, W) uint8 or float and labels (N,) int64, normalised on the fly.

    Indexing takes a ``(seed, epoch, batch, indices)`` tuple from :class:`EpochBatchSampler`
    (or a plain list of indices, without augmentation) and returns ``(x, y, indices)``; the indices
    let index-aware losses (CRD's memory bank, cached teacher outputs) find each sample.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        augment: Augment | None = None,
    ) -> None:
        if images.ndim != 4 or labels.ndim != 1 or len(images) != len(labels):
            raise TorchSlimError(
                f"Expected images (N, C, H, W) and labels (N,), got {tuple(images.shape)} "
                f"and {tuple(labels.shape)}."
            )
        self.images = images
        self.labels = labels.long()
        self.scale = 255.0 if images.dtype == torch.uint8 else 1.0
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.augment = augment or Augment()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key):
        if isinstance(key, tuple) and len(key) == 4:
            seed, epoch, batch, indices = key
            generator = torch.Generator().manual_seed(_mix(seed, epoch, batch))
        else:
            indices, generator = key, None
        index = torch.as_tensor(indices, dtype=torch.long)
        x = self.images[index].float().div_(self.scale)
        if generator is not None and self.augment.enabled:
            x = augment_batch(x, self.augment, generator)
        x = (x - self.mean) / self.std
        return x, self.labels[index], index


def _mix(seed: int, epoch: int, batch: int) -> int:
    # A fixed odd-multiplier hash keeps (seed, epoch, batch) streams apart without a global RNG.
    return (seed * 1_000_003 + epoch * 10_007 + batch) % (2**63 - 1)


def augment_batch(x: torch.Tensor, aug: Augment, generator: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding and horizontal flip for a (B, C, H, W) float batch."""
    b, c, h, w = x.shape
    if aug.crop_padding > 0:
        p = aug.crop_padding
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (b, 1, 1), generator=generator)
        dx = torch.randint(0, 2 * p + 1, (b, 1, 1), generator=generator)
        rows = (torch.arange(h).view(1, h, 1) + dy).expand(b, h, w)
        cols = (torch.arange(w).view(1, 1, w) + dx).expand(b, h, w)
        flat = (rows * (w + 2 * p) + cols).view(b, 1, h * w).expand(b, c, h * w)
        x = padded.flatten(2).gather(2, flat).view(b, c, h, w)
    if aug.hflip:
        flip = torch.rand(b, generator=generator) < 0.5
        x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
    return x


class EpochBatchSampler(Sampler):
    """Yields ``(seed, epoch, batch_index, indices)`` for one epoch, shuffled by (seed, epoch).

    Call :meth:`set_epoch` before each epoch (``fit`` does). With ``world_size > 1`` each rank
    takes every ``world_size``-th batch of the same global order, so ranks never overlap.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size <= 0:
            raise TorchSlimError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.n, self.batch_size, self.shuffle, self.drop_last = n, batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0
        # With a teacher cache of K recorded augmentation draws, epoch e replays draw e % K.
        self.cycle: int | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch % self.cycle if self.cycle else epoch

    def shard(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size

    def _num_global_batches(self) -> int:
        full = self.n // self.batch_size if self.drop_last else math.ceil(self.n / self.batch_size)
        return full - full % self.world_size if self.world_size > 1 else full

    def __len__(self) -> int:
        return self._num_global_batches() // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int, int, list[int]]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(_mix(self.seed, self.epoch, 0))
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        for b in range(self.rank, self._num_global_batches(), self.world_size):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.seed, self.epoch, b, idx.tolist()


def make_loader(
    dataset: ArrayImageDataset, batch_size: int, *, train: bool, seed: int = 0
) -> DataLoader:
    """A DataLoader over ``dataset`` that serves whole batches (``batch_size=None`` on purpose)."""
    sampler = EpochBatchSampler(
        len(dataset), batch_size, shuffle=train, drop_last=train, seed=seed
    )
    return DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=0)


@dataclass
class DataBundle:
    """What a dataset gives: loaders for each split and the facts a model needs."""

    name: str
    train: DataLoader
    val: DataLoader | None
    test: DataLoader
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def example_batch(self, n: int = 2) -> torch.Tensor:
        """The first ``n`` test images, normalised, for shape probing and export."""
        x, _, _ = self.test.dataset[list(range(n))]
        return x


def split_train_val(
    n: int, val_size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded disjoint index sets (train, val) over ``range(n)``; val may be empty."""
    if not 0 <= val_size < n:
        raise TorchSlimError(f"val_size must be in [0, {n}), got {val_size!r}.")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[val_size:].sort().values, order[:val_size].sort().values
