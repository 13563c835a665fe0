"""The whole QAT route in one call: prepare the fake-quantized copy, fine-tune it (distilled from a
teacher when the options name one), and build the INT8 artifact with the ranges it learned.

``torchslim quantize --mode qat`` and the recipe's ``qat`` step both run :func:`run_qat`; the parts
(:func:`~torchslim.quantize.prepare_qat`, ``fit``, :func:`~torchslim.quantize.qat_int8`) stay
public for a training loop of one's own.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.options.base import OptionsError
from torchslim.options.quantize import QATConfig, configured
from torchslim.quantize.qat import prepare_qat, qat_int8
from torchslim.quantize.static import check_out
from torchslim.runtime import OnnxModel

WHERE = "quantize.run_qat"


def load_named(name: str, where: str = f"{WHERE}: teacher") -> nn.Module:
    """A teacher by name: a shipped model or a checkpoint directory (``where``: the option as the
    user wrote it, for the message).

    Raises:
        OptionsError: ``name`` is neither.
    """
    from torchslim import zoo
    from torchslim.models.checkpoint import load_model

    if name in zoo.ZOO:
        return zoo.load(name)[0]
    if not Path(name).exists():
        raise OptionsError(f"{where} = {name!r} is neither source (the model before QAT), a shipped "
                           f"model ({', '.join(zoo.list())}) nor a checkpoint directory.")
    return load_model(Path(name))[0]


def _teacher(config: QATConfig, model: nn.Module, given: nn.Module | None) -> nn.Module | None:
    """The teacher module the options ask for: none, the FP32 model itself, or the named one
    (``given`` when the caller resolved the name already)."""
    if config.teacher is None or config.teacher == "source":
        if given is not None:
            raise OptionsError(f"{WHERE}: teacher_model was passed, but teacher = {config.teacher or 'none'}; "
                               "name the teacher in the options (any name other than source) to use it.")
        # a copy: distillation freezes its teacher, and the caller's model must come back as it was
        return copy.deepcopy(model).eval() if config.teacher == "source" else None
    return given if given is not None else load_named(config.teacher)


def _objective(qmodel: nn.Module, teacher: nn.Module | None, config: QATConfig) -> nn.Module:
    """What is trained: the QAT model alone, or a distillation of ``teacher`` into it."""
    if teacher is None:
        return qmodel
    from torchslim.distill import DistillTask
    from torchslim.distill import losses as L

    terms = [(L.create("kd", T=config.T), config.kd_weight), (L.create("ce"), 1 - config.kd_weight)]
    return DistillTask(qmodel, teacher, [(loss, weight) for loss, weight in terms if weight > 0])


def run_qat(model: nn.Module, data: Any, calibration: Iterable, *, out: str | Path | None = None,
            teacher_model: nn.Module | None = None, teacher_label: str | None = None,
            example_input: torch.Tensor | None = None, test_data: Iterable | None = None,
            metadata: dict[str, Any] | None = None, progress: bool = True, threads: int | None = None,
            seed: int | None = None, config: QATConfig | None = None, **options: Any) -> OnnxModel:
    """Fine-tune ``model`` with quantization-aware training, then write its INT8 artifact.

    Args:
        model: the FP32 torch model (not changed).
        data: the training data: a ``DataBundle`` or a loader of (inputs, labels) batches.
        calibration: real batches: the first ``calibration_batches`` initialise the ranges and
            calibrate what QAT did not simulate.
        out: the artifact directory or ``.onnx`` path, as for ``static_int8``.
        teacher_model: the module ``config.teacher`` names, when the caller has loaded it (the
            recipe's teacher); otherwise the name is loaded (``"source"``: ``model``).
        teacher_label: how the record names the teacher (default: ``config.teacher``).
        example_input: a batch for the export (default: the first calibration batch).
        test_data: a loader; the FP32 and INT8 accuracy over all of it is recorded.
        metadata: JSON-serialisable entries added to the sidecar.
        progress: show a progress bar while training.
        threads: torch CPU threads for the training (None leaves them).
        seed: seed of the training's data order (None: ``fit``'s default).
        config: the options (:class:`~torchslim.options.QATConfig`).
        **options: any :class:`~torchslim.options.QATConfig` field, laid over ``config``.

    Returns:
        The artifact (its sidecar's ``qat.training`` says what the training did).

    Raises:
        OptionsError: a bad option or an unknown teacher name (before any training).
        TorchSlimError, CalibrationError, ExportError, QuantizeError: as ``prepare_qat``,
            ``fit`` and ``qat_int8`` raise them.
    """
    from torchslim.train import fit

    cfg = configured(QATConfig, WHERE, config, options)
    check_out(out)
    if not isinstance(model, nn.Module):
        raise OptionsError(f"{WHERE}: QAT trains a torch model; got a {type(model).__name__}.")
    distil_from = _teacher(cfg, model, teacher_model)
    qmodel = prepare_qat(model, calibration, config=cfg)
    fit_options: dict[str, Any] = {"lr": cfg.lr, "schedule": cfg.schedule}
    if seed is not None:
        fit_options["seed"] = seed
    history = fit(_objective(qmodel, distil_from, cfg), data, cfg.epochs, test=None, progress=progress,
                  threads=threads, **fit_options)
    training = {"epochs": cfg.epochs, "lr": cfg.lr, "schedule": cfg.schedule,
                "teacher": (teacher_label or cfg.teacher) if distil_from is not None else None,
                "losses": cfg.losses_text(), "seconds": history.seconds}
    return qat_int8(qmodel, calibration, out=out, example_input=example_input, test_data=test_data,
                    training=training, metadata=metadata, config=cfg)


__all__ = ["load_named", "run_qat"]
