"""Distil a sentence encoder into a smaller one with torchslim's engine (``DistillTask`` + ``fit``).

A loss is ``(name, options, weight)`` from the distillation registry; the default aligns pooled
embeddings (``embed-cos``). When no loss reads the teacher's intermediate features, the teacher's
embeddings of the training set are computed once (``TeacherCache``) and every step costs only the
student's forward and backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from torchslim.core.errors import TorchSlimError
from torchslim.distill import DistillTask
from torchslim.distill import losses as L
from torchslim.text.encoder import SentenceEncoder
from torchslim.train import History, fit

LossSpec = tuple[str, dict[str, Any], float]
DEFAULT_LOSSES: tuple[LossSpec, ...] = (("embed-cos", {}, 1.0),)
# AdamW with warm-up and cosine decay, the usual schedule for transformer fine-tuning.
FIT = {"optimizer": "adamw", "lr": 2e-4, "weight_decay": 0.01, "schedule": "cosine", "warmup_epochs": 0.05,
       "max_grad_norm": 1.0}


def build_task(student: SentenceEncoder, teacher: SentenceEncoder,
               losses: Sequence[LossSpec] = DEFAULT_LOSSES) -> DistillTask:
    """A :class:`DistillTask` with ``losses`` built by name (feature losses tap both encoders)."""
    if not losses:
        raise TorchSlimError("Give at least one loss, e.g. ('embed-cos', {}, 1.0); list them with `torchslim losses`.")
    built = [(L.create(name, **dict(options)), weight) for name, options, weight in losses]
    return DistillTask(student, teacher, built)


def uses_teacher_features(task: DistillTask) -> bool:
    return any(getattr(loss, "teacher_tap", None) for loss in task.losses)


def distill_encoder(student: SentenceEncoder, teacher: SentenceEncoder, train, *, epochs: int = 1,
                    losses: Sequence[LossSpec] = DEFAULT_LOSSES, cache: str | None = "memory",
                    cache_dir: str | Path | None = None, checkpoint_dir: str | Path | None = None,
                    threads: int | None = None, progress: bool = True, log: Callable[[str], None] = print,
                    seed: int = 0, **fit_options: Any) -> History:
    """Train ``student`` to reproduce ``teacher`` on the text loader ``train``; returns the history.

    Args:
        train: a torchslim text loader (``wordnet-glosses``' ``bundle.train``).
        losses: ``(name, options, weight)`` each (see ``torchslim losses``).
        cache: ``"memory"``, ``"disk"`` (memory-mapped under ``cache_dir``) or None: teacher
            embeddings computed once. Ignored (the teacher runs live) when a loss taps the teacher.
        fit_options: override :data:`FIT` (lr, schedule, ...).

    Raises:
        TorchSlimError: no losses, an unknown loss or option, or ``cache`` not one of the three.
    """
    if cache not in (None, "memory", "disk"):
        raise TorchSlimError(f"cache must be 'memory', 'disk' or None, got {cache!r}.")
    task = build_task(student, teacher, losses)
    try:
        if cache and not uses_teacher_features(task):
            directory = Path(cache_dir or "cache") if cache == "disk" else None
            task.use_cache(train, draws=1, directory=directory, log=log)
        elif cache:
            log("teacher cache: off (a loss reads the teacher's intermediate features, so it runs live)")
        options = {**FIT, "seed": seed, **fit_options}
        torch.manual_seed(seed)
        return fit(task, train, epochs, checkpoint_dir=checkpoint_dir, resume=checkpoint_dir is not None,
                   threads=threads, progress=progress, **options)
    finally:
        task.close()
        student.eval()
