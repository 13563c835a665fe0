"""The federation's data: a seeded non-IID Dirichlet split, a public transfer set and a test set.

Every participant derives the same split from the recipe and the seed, so a client needs only its
own partition id to find its shard (in a real deployment each machine would hold only its own
shard; deriving it here keeps the simulation and the loopback deployment identical). The public set
is a disjoint slice of the training images taken *before* the split; its labels are never read.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np
import torch

from torchslim.core.errors import TorchSlimError
from torchslim.data.base import ArrayImageDataset, make_loader
from torchslim.federated.config import FederatedConfig

MAX_DRAWS = 200  # Dirichlet redraws before a split that leaves a client too small is refused


@dataclass(frozen=True)
class FederatedData:
    """The arrays every participant shares by construction, and the index sets of the split.

    Attributes:
        train: the labelled training images (shards index into it; the public set too).
        test: the held-out test images.
        shards: per client, indices into ``train``.
        public: indices into ``train`` of the public set (labels unused).
    """

    train: ArrayImageDataset
    test: ArrayImageDataset
    shards: tuple[np.ndarray, ...]
    public: np.ndarray
    num_classes: int
    input_shape: tuple[int, int, int]

    def histograms(self) -> list[list[int]]:
        """Label counts per client (what the output JSON records)."""
        labels = self.train.labels.numpy()
        return [np.bincount(labels[s], minlength=self.num_classes).tolist() for s in self.shards]

    def public_images(self) -> torch.Tensor:
        """The normalised public images (N, C, H, W), in a fixed order both sides agree on."""
        x, _, _ = self.train[self.public.tolist()]
        return x

    def test_loader(self, batch_size: int = 1000):
        return make_loader(self.test, batch_size, train=False)


def dirichlet_split(labels: np.ndarray, clients: int, alpha: float, seed: int, min_size: int) -> list[np.ndarray]:
    """Split sample indices across ``clients`` with per-class proportions ~ Dirichlet(alpha).

    For each class the fractions going to each client are drawn from Dir(alpha·1); small alpha gives
    each client few classes. Draws repeat (seeded) until every client has ``min_size`` samples.

    Raises:
        TorchSlimError: more clients than ``len(labels) // min_size``, or no draw in
            ``MAX_DRAWS`` gives every client ``min_size`` samples (alpha too small for this count).
    """
    if clients * min_size > len(labels):
        raise TorchSlimError(
            f"{clients} clients need at least {clients * min_size} labelled training samples "
            f"({min_size} each, federated.split.min_size) but the split has {len(labels)}; use fewer "
            "clients (federated.clients.count) or more data.")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(MAX_DRAWS):
        shards: list[list[int]] = [[] for _ in range(clients)]
        for c in classes:
            members = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(clients, alpha))) * len(members)).astype(int)[:-1]
            for k, part in enumerate(np.split(members, cuts)):
                shards[k].extend(part.tolist())
        if min(len(s) for s in shards) >= min_size:
            return [np.sort(np.asarray(s, dtype=np.int64)) for s in shards]
    raise TorchSlimError(
        f"No Dirichlet(alpha={alpha}) split in {MAX_DRAWS} draws gives each of {clients} clients "
        f"{min_size} samples from {len(labels)}; raise federated.split.alpha, lower "
        "federated.split.min_size, or use fewer clients.")


def _subset(dataset: ArrayImageDataset, n: int | None, seed: int) -> ArrayImageDataset:
    if n is None or n >= len(dataset):
        return dataset
    keep = torch.from_numpy(np.sort(np.random.default_rng(seed).permutation(len(dataset))[:n]))
    return ArrayImageDataset(dataset.images[keep], dataset.labels[keep], tuple(dataset.mean.flatten().tolist()),
                             tuple(dataset.std.flatten().tolist()))


def build(cfg: FederatedConfig, seed: int) -> FederatedData:
    """Load the dataset and split it; raises :class:`TorchSlimError` for a split that cannot be made."""
    from torchslim import data

    kwargs = {"val_size": 0, "augment": False, "seed": seed, **cfg.data.options}
    if cfg.data.root:
        kwargs["root"] = cfg.data.root
    bundle = data.load(cfg.data.name, **kwargs)
    train, test = bundle.train.dataset, bundle.test.dataset
    if not isinstance(train, ArrayImageDataset):
        raise TorchSlimError(f"federated.data.name {cfg.data.name!r} is not an in-memory image dataset; "
                             "federated runs take fashion-mnist or synthetic.")
    train, test = _subset(train, cfg.data.train_subset, seed), _subset(test, cfg.data.test_subset, seed + 1)
    order = np.random.default_rng(seed).permutation(len(train))
    if cfg.public.size >= len(train):
        raise TorchSlimError(
            f"federated.public.size = {cfg.public.size} leaves no labelled data: the training split has "
            f"{len(train)} images; the public set must be smaller (and the clients need the rest).")
    public, private = np.sort(order[:cfg.public.size]), order[cfg.public.size:]
    labels = train.labels.numpy()[private]
    shards = dirichlet_split(labels, cfg.clients.count, cfg.split.alpha, seed, cfg.split.min_size)
    return FederatedData(train, test, tuple(private[s] for s in shards), public,
                         bundle.num_classes, tuple(bundle.input_shape))


@functools.lru_cache(maxsize=2)
def _cached(cfg_json: str, seed: int) -> FederatedData:
    return build(FederatedConfig.model_validate_json(cfg_json), seed)


def shared(cfg: FederatedConfig, seed: int) -> FederatedData:
    """:func:`build`, cached per process: a client answers many messages from one loaded dataset."""
    return _cached(json.dumps(cfg.model_dump(mode="json"), sort_keys=True), seed)
