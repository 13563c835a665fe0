"""Recovery training after pruning: fine-tuning, or distillation from the unpruned model.

Distillation (``"kd"``) trains the pruned model to match the unpruned one's softened outputs (plus a
little cross-entropy) — structured pruning then distillation, the combination that keeps the most
accuracy for a given size. The unpruned model's logits can be cached once (``TeacherCache``) and
reused by every recovery phase of an iterative run. What to do is a
:class:`~torchslim.prune.config.PruneConfig`; where and how loudly (data, cache directory, progress,
threads) are the run's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.distill import DistillTask, TeacherCache
from torchslim.distill.losses import CE, KD
from torchslim.prune.config import PruneConfig
from torchslim.prune.errors import PruneError
from torchslim.train import History, fit
from torchslim.train.batch import as_batch


@dataclass
class RecoveryRun:
    """What a recovery needs besides its options: the data, where a disk cache goes (or a
    ``TeacherCache`` already built for the same unpruned model and training loader), and output."""

    data: Any = None
    cache_dir: str | Path | None = None
    teacher_cache: TeacherCache | None = None
    progress: bool = False
    threads: int | None = None


def check_recovery(config: PruneConfig, run: RecoveryRun) -> None:
    """Refuse a recovery that cannot run with what was given, before any work."""
    if config.recover != "none" and run.data is None:
        raise PruneError(f"recover={config.recover!r} with {config.epochs} epoch(s) needs data= (a DataBundle "
                         "with train and test loaders) to train on.")
    if config.recover == "kd" and config.cache == "disk" and run.teacher_cache is None and run.cache_dir is None:
        raise PruneError("cache='disk' needs cache_dir= (where to keep the teacher's logits).")


def build_cache(teacher: nn.Module, config: PruneConfig, run: RecoveryRun) -> TeacherCache | None:
    """The unpruned model's logits over the recovery's epochs, when KD recovery uses a cache."""
    if config.recover != "kd":
        return None
    if run.teacher_cache is not None:
        return run.teacher_cache
    draws = max(config.epochs_per_iteration())
    if config.cache == "none" or draws < 1:
        return None
    directory = Path(run.cache_dir) if config.cache == "disk" else None
    return TeacherCache(teacher, run.data.train, draws=draws, directory=directory,
                        log=print if run.progress else (lambda *_: None))


def recover(model: nn.Module, teacher: nn.Module | None, epochs: int, config: PruneConfig, run: RecoveryRun,
            cache: TeacherCache | None = None, seed: int = 0) -> History | None:
    """Train ``model`` for ``epochs`` epochs as ``config`` says; its ``History`` (None: no training)."""
    if config.recover == "none" or epochs < 1:
        return None
    options = config.fit_options(seed)
    if config.recover == "finetune":
        return fit(model, run.data, epochs, progress=run.progress, threads=run.threads, **options)
    task = DistillTask(model, teacher, [(KD(T=config.T), config.kd_weight), (CE(), 1.0 - config.kd_weight)])
    if cache is not None:
        task.caches["teacher"] = cache
        cache.attach()
    try:
        return fit(task, run.data, epochs, progress=run.progress, threads=run.threads, **options)
    finally:
        task.close()
        if cache is not None:
            cache.detach()  # the loader serves fresh augmentations again, as it came


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader: Any, batches: int) -> int:
    """Re-estimate every BatchNorm's running statistics as the plain average over ``batches``
    training batches (forward passes only; no weight changes). Returns the batches used.

    Removing a layer's input channels shifts the statistics of its outputs; without this a pruned
    network can score near chance before any training, which hides how much each criterion kept.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or batches < 1 or loader is None:
        return 0
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches seen
    model.train()
    used = 0
    try:
        for raw in loader:
            if used >= batches:
                break
            model(as_batch(raw)["x"])
            used += 1
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
    return used
