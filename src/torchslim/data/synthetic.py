"""A seeded, learnable image-classification dataset of any shape and class count, for fast tests.

Each class has a fixed random prototype image; a sample is its class prototype plus Gaussian noise
(scaled by ``noise``), so a small model learns it in a few steps while the task is not trivial.
"""

from __future__ import annotations

import torch

from torchslim.core.errors import TorchSlimError
from torchslim.data.base import ArrayImageDataset, Augment, DataBundle, make_loader
from torchslim.data.registry import dataset


def make_arrays(n: int, shape: tuple[int, int, int], num_classes: int, noise: float, seed: int,
                prototypes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    images = prototypes[labels] + noise * torch.randn((n, *shape), generator=g)
    return images.float(), labels


@dataset("synthetic", task="image")
def synthetic(
    batch_size: int = 32,
    *,
    num_classes: int = 4,
    shape: tuple[int, int, int] = (1, 16, 16),
    train_size: int = 512,
    val_size: int = 128,
    test_size: int = 256,
    noise: float = 1.0,
    augment: bool = False,
    seed: int = 0,
    eval_batch_size: int = 128,
) -> DataBundle:
    """Prototype-plus-noise images (C, H, W) = ``shape`` in ``num_classes`` classes."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) <= 0:
        raise TorchSlimError(f"shape must be (channels, height, width) > 0, got {shape!r}.")
    if num_classes < 2:
        raise TorchSlimError(f"num_classes must be at least 2, got {num_classes!r}.")
    if min(train_size, test_size) <= 0 or val_size < 0:
        raise TorchSlimError(
            f"train_size and test_size must be positive and val_size non-negative, got "
            f"{train_size!r}, {test_size!r}, {val_size!r}."
        )
    prototypes = torch.randn((num_classes, *shape), generator=torch.Generator().manual_seed(seed))
    mean, std = (0.0,) * shape[0], (1.0,) * shape[0]
    aug = Augment(crop_padding=1, hflip=True) if augment else Augment()
    splits = {}
    for i, (name, n) in enumerate((("train", train_size), ("val", val_size), ("test", test_size))):
        if n:
            x, y = make_arrays(n, shape, num_classes, noise, seed * 10 + i + 1, prototypes)
            splits[name] = ArrayImageDataset(x, y, mean, std, aug if name == "train" else None)
    return DataBundle(
        name="synthetic",
        train=make_loader(splits["train"], batch_size, train=True, seed=seed),
        val=make_loader(splits["val"], eval_batch_size, train=False) if "val" in splits else None,
        test=make_loader(splits["test"], eval_batch_size, train=False),
        num_classes=num_classes,
        input_shape=shape,  # type: ignore[arg-type]
        class_names=[f"class{i}" for i in range(num_classes)],
        info={"seed": seed, "noise": noise},
    )
