"""Channel importance criteria, registered by name in :data:`IMPORTANCE`.

Each entry builds a torch-pruning importance estimator that scores every channel of a coupled
group (a convolution, its BatchNorm, the residual branches sharing its channels, ...): the lowest
scores are removed. ``taylor`` needs gradients: :func:`accumulate_gradients` computes them on a
few labelled batches first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from torchslim.core.registry import Registry
from torchslim.train.batch import as_batch

# name -> (factory of a torch-pruning importance, one-line description)
IMPORTANCE: Registry[tuple[Callable[[], Any], str]] = Registry("importance criterion")
NEEDS_GRADIENTS = frozenset({"taylor"})


def _tp():
    import torch_pruning as tp  # imported on use: `import torchslim` stays fast

    return tp


IMPORTANCE.register("l1", (lambda: _tp().importance.MagnitudeImportance(p=1),
                           "L1 norm of each channel's weights across its coupled group"))
IMPORTANCE.register("l2", (lambda: _tp().importance.MagnitudeImportance(p=2),
                           "L2 norm of each channel's weights across its coupled group"))
IMPORTANCE.register("fpgm", (lambda: _tp().importance.FPGMImportance(p=2),
                             "distance to the other filters (geometric median): redundant filters go first"))
IMPORTANCE.register("taylor", (lambda: _tp().importance.TaylorImportance(),
                               "first-order Taylor estimate |weight x gradient| of the loss change"))
IMPORTANCE.register("bn_scale", (lambda: _tp().importance.BNScaleImportance(),
                                 "|gamma| of the BatchNorm after each channel (network slimming)"))
IMPORTANCE.register("lamp", (lambda: _tp().importance.LAMPImportance(p=2),
                             "layer-adaptive magnitude score (LAMP), comparable across layers"))
IMPORTANCE.register("random", (lambda: _tp().importance.RandomImportance(),
                               "uniformly random scores: the control every criterion must beat"))


def create(name: str) -> Any:
    """A fresh torch-pruning importance estimator for the criterion registered as ``name``.

    Raises:
        UnknownNameError: no such criterion (the valid names and the closest one listed).
    """
    factory, _ = IMPORTANCE.get(name)
    return factory()


def describe(name: str) -> str:
    """The one-line description of criterion ``name``."""
    return IMPORTANCE.get(name)[1]


def accumulate_gradients(model: nn.Module, batches: Iterable, max_batches: int = 4) -> int:
    """Fill every parameter's ``.grad`` with the cross-entropy gradient summed over up to
    ``max_batches`` batches ``(x, y[, index])``; the model runs in eval mode (BatchNorm statistics
    stay untouched). A batch without labels uses the model's own predictions as targets.

    Returns:
        The number of batches used.
    """
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    used = 0
    try:
        with torch.enable_grad():
            for raw in batches:
                if used >= max_batches:
                    break
                batch = raw if isinstance(raw, dict) else (as_batch(raw) if isinstance(raw, (tuple, list))
                                                           else {"x": raw})
                logits = model(batch["x"])
                target = batch.get("y")
                if target is None:
                    target = logits.detach().argmax(1)
                nn.functional.cross_entropy(logits, target).backward()
                used += 1
    finally:
        model.train(was_training)
    return used
