"""Distil a sentence encoder into a smaller one with torchslim's engine (``DistillTask`` + ``fit``).

The options are a :class:`~torchslim.text.config.TextDistillConfig` (AdamW with warm-up and
cosine decay; the default loss aligns pooled embeddings, ``embed-cos``). When no loss reads the
teacher's intermediate features, the teacher's embeddings of the training set are computed once
(``TeacherCache``) and every step costs only the student's forward and backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from torchslim.core.errors import TorchSlimError
from torchslim.distill import DistillTask
from torchslim.distill import losses as L
from torchslim.distill.config import LossItem
from torchslim.text._configure import configure
from torchslim.text.config import TextDistillConfig
from torchslim.text.encoder import SentenceEncoder
from torchslim.train import History, fit

LossSpec = tuple[str, dict[str, Any], float]


def build_task(student: SentenceEncoder, teacher: SentenceEncoder,
               losses: Sequence[LossSpec | LossItem]) -> DistillTask:
    """A :class:`DistillTask` with ``losses`` built by name (feature losses tap both encoders):
    ``(name, options, weight)`` each, or the :class:`~torchslim.distill.config.LossItem` of a config.
    """
    if not losses:
        raise TorchSlimError("Give at least one loss, e.g. ('embed-cos', {}, 1.0); list them with `torchslim losses`.")
    specs = [(i.name, i.arguments(), i.weight) if isinstance(i, LossItem) else i for i in losses]
    built = [(L.create(name, **dict(options)), weight) for name, options, weight in specs]
    return DistillTask(student, teacher, built)


def uses_teacher_features(task: DistillTask) -> bool:
    return any(getattr(loss, "teacher_tap", None) for loss in task.losses)


def _sugar(options: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments in the forms this function always took, as the config's fields:
    ``(name, options, weight)`` losses become items, ``cache=None`` becomes ``"none"``."""
    options = dict(options)
    if "losses" in options and isinstance(options["losses"], (list, tuple)):
        options["losses"] = [{"name": item[0], **dict(item[1]), "weight": float(item[2])}
                             if isinstance(item, tuple) and len(item) == 3 else item for item in options["losses"]]
    if "cache" in options and options["cache"] is None:
        options["cache"] = "none"
    return options


def distill_encoder(student: SentenceEncoder, teacher: SentenceEncoder, train: Any,
                    config: TextDistillConfig | None = None, *, cache_dir: str | Path | None = None,
                    checkpoint_dir: str | Path | None = None, threads: int | None = None, progress: bool = True,
                    log: Callable[[str], None] = print, **options: Any) -> History:
    """Train ``student`` to reproduce ``teacher`` on the text loader ``train``; returns the history.

    Args:
        student: the encoder trained (a layer-dropped or pruned copy of the teacher).
        teacher: the encoder imitated (its ``teacher`` option names it in a recipe; here it is given).
        train: a torchslim text loader (``wordnet-glosses``' ``bundle.train``).
        config: a :class:`~torchslim.text.config.TextDistillConfig`; keyword arguments (``epochs``,
            ``lr``, ``losses`` as ``(name, options, weight)`` or mappings, ``cache`` as ``"memory"``,
            ``"disk"`` or ``"none"``/None, ``seed``...) build it or override its fields.
        cache_dir: where a ``cache="disk"`` keeps the teacher's embeddings (default ``./cache``).
        checkpoint_dir: where the training state is saved every epoch and resumed from.
        threads: torch CPU threads for the run (None leaves them).
        progress: show a progress bar.
        log: where messages go.

    Raises:
        OptionsError: a bad option (an unknown loss, a loss option it does not take, ...).
        TorchSlimError: a loss that does not fit the encoders.
    """
    cfg = configure(TextDistillConfig, "text.distill_encoder", config, _sugar(options))
    seed = cfg.seed if cfg.seed is not None else 0
    task = build_task(student, teacher, cfg.losses)
    try:
        if cfg.cache != "none" and not uses_teacher_features(task):
            directory = Path(cache_dir or "cache") if cfg.cache == "disk" else None
            task.use_cache(train, draws=1, directory=directory, log=log)
        elif cfg.cache != "none":
            log("teacher cache: off (a loss reads the teacher's intermediate features, so it runs live)")
        torch.manual_seed(seed)
        return fit(task, train, cfg.epochs, checkpoint_dir=checkpoint_dir, resume=checkpoint_dir is not None,
                   threads=threads, progress=progress, **cfg.fit_options(seed))
    finally:
        task.close()
        student.eval()
