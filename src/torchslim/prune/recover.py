"""Recovery training after pruning: fine-tuning, or distillation from the unpruned model.

Distillation (``"kd"``) trains the pruned model to match the unpruned one's softened outputs (plus a
little cross-entropy) — structured pruning then distillation, the combination that keeps the most
accuracy for a given size. The unpruned model's logits can be cached once (``TeacherCache``) and
reused by every recovery phase of an iterative run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.distill import DistillTask, TeacherCache
from torchslim.distill.losses import CE, KD
from torchslim.prune.errors import PruneError
from torchslim.train import FitConfig, History, fit
from torchslim.train.batch import as_batch

MODES = ("none", "finetune", "kd")
CACHES = ("none", "memory", "disk")
# Short recovery from good weights: a gentle peak and a decay to zero.
DEFAULT_FIT = {"optimizer": "sgd", "lr": 0.02, "schedule": "cosine", "weight_decay": 5e-4}


@dataclass
class Recovery:
    """How to recover accuracy after each pruning step.

    Args:
        mode: ``"none"``, ``"finetune"`` (cross-entropy) or ``"kd"`` (distillation from the
            unpruned model: ``kd_weight`` x KD(T) + (1 - ``kd_weight``) x CE).
        epochs: total recovery epochs, split over the pruning steps (later steps get the rest).
        cache: for ``"kd"``: compute the unpruned model's logits once (``"memory"`` or ``"disk"``
            under ``cache_dir``), run it live (``"none"``), or reuse a ``TeacherCache`` already
            built for the same unpruned model and training loader (several runs, one cache).
        fit_options: options of ``torchslim.fit`` (lr, schedule, ...), over :data:`DEFAULT_FIT`.
        bn_batches: training batches that re-estimate BatchNorm statistics right after each
            pruning step (0: keep the old ones). Removing a layer's input channels shifts the
            statistics of its outputs; without this a pruned network can score near chance
            before any training, which hides how much each criterion kept.
    """

    mode: str = "none"
    epochs: int = 0
    T: float = 4.0
    kd_weight: float = 0.9
    cache: str | TeacherCache = "memory"
    cache_dir: str | Path | None = None
    fit_options: dict[str, Any] = field(default_factory=dict)
    progress: bool = False
    threads: int | None = None
    bn_batches: int = 50

    def validate(self, has_data: bool) -> None:
        if self.mode not in MODES:
            raise PruneError(f"recover must be one of {', '.join(MODES)}; got {self.mode!r}.")
        if not isinstance(self.cache, TeacherCache) and self.cache not in CACHES:
            raise PruneError(f"cache must be one of {', '.join(CACHES)}; got {self.cache!r}.")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise PruneError(f"recovery epochs must be a non-negative integer, got {self.epochs!r}.")
        if self.mode != "none" and self.epochs and not has_data:
            raise PruneError(f"recover={self.mode!r} with {self.epochs} epoch(s) needs data= (a DataBundle "
                             "with train and test loaders) to train on.")
        if isinstance(self.bn_batches, bool) or not isinstance(self.bn_batches, int) or self.bn_batches < 0:
            raise PruneError(f"bn_batches must be a non-negative integer, got {self.bn_batches!r}.")
        valid = [f for f in FitConfig.__dataclass_fields__ if f != "epochs"]
        unknown = sorted(set(self.fit_options) - set(valid))
        if unknown:
            raise PruneError(f"fit_options has unknown key(s) {unknown}; valid: {', '.join(valid)}.")
        if not 0.0 <= self.kd_weight <= 1.0:
            raise PruneError(f"kd_weight must be in [0, 1], got {self.kd_weight!r}.")

    @property
    def active(self) -> bool:
        return self.mode != "none" and self.epochs > 0

    def per_step(self, steps: int) -> list[int]:
        """Epochs of each of ``steps`` recovery phases: as even as possible, the rest at the end."""
        base, extra = divmod(self.epochs, steps)
        return [base + (1 if i >= steps - extra else 0) for i in range(steps)]


def build_cache(teacher: nn.Module, data: Any, recovery: Recovery, draws: int) -> TeacherCache | None:
    """The unpruned model's logits over ``draws`` replayed epochs, when KD recovery uses a cache."""
    if isinstance(recovery.cache, TeacherCache):
        return recovery.cache if recovery.mode == "kd" else None
    if recovery.mode != "kd" or recovery.cache == "none" or draws < 1:
        return None
    directory = None
    if recovery.cache == "disk":
        if recovery.cache_dir is None:
            raise PruneError("cache='disk' needs cache_dir= (where to keep the teacher's logits).")
        directory = Path(recovery.cache_dir)
    return TeacherCache(teacher, data.train, draws=draws, directory=directory,
                        log=print if recovery.progress else (lambda *_: None))


def recover(model: nn.Module, teacher: nn.Module, data: Any, epochs: int, recovery: Recovery,
            cache: TeacherCache | None = None, seed: int = 0) -> History | None:
    """Train ``model`` for ``epochs`` epochs as ``recovery`` says; its ``History`` (None: no training)."""
    if recovery.mode == "none" or epochs < 1:
        return None
    options = {**DEFAULT_FIT, "seed": seed, **recovery.fit_options}
    if recovery.mode == "finetune":
        return fit(model, data, epochs, progress=recovery.progress, threads=recovery.threads, **options)
    task = DistillTask(model, teacher, [(KD(T=recovery.T), recovery.kd_weight), (CE(), 1.0 - recovery.kd_weight)])
    if cache is not None:
        task.caches["teacher"] = cache
        cache.attach()
    try:
        return fit(task, data, epochs, progress=recovery.progress, threads=recovery.threads, **options)
    finally:
        task.close()
        if cache is not None:
            cache.detach()  # the loader serves fresh augmentations again, as it came


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader: Any, batches: int) -> int:
    """Re-estimate every BatchNorm's running statistics as the plain average over ``batches``
    training batches (forward passes only; no weight changes). Returns the batches used."""
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
