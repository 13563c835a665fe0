"""Training options: the fit loop's (:class:`FitConfig`) and the ``train`` method's
(:class:`TrainConfig`: which model to train, then the fit options).

``torchslim.fit(model, data, epochs, **options)`` builds a :class:`FitConfig`; a recipe's
``train`` step is a :class:`TrainConfig`; ``torchslim train``'s flags are generated from it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from torchslim.options.base import Options

Optimizer = Literal["sgd", "adamw"]
Schedule = Literal["onecycle", "cosine", "constant"]


class FitConfig(Options):
    """Every hyperparameter of a training run; recorded in checkpoints and compared on resume."""

    epochs: int = Field(gt=0)
    """Passes over the training split."""
    optimizer: Optimizer = "sgd"
    """sgd (momentum, Nesterov by default) or adamw."""
    lr: float | None = Field(None, gt=0)
    """Peak learning rate; none: 0.1 for sgd, 1e-3 for adamw."""
    momentum: float = Field(0.9, ge=0, lt=1)
    """SGD momentum."""
    nesterov: bool = True
    """Nesterov momentum for sgd (when momentum > 0)."""
    weight_decay: float = Field(5e-4, ge=0)
    """Weight decay (L2 for sgd, decoupled for adamw)."""
    schedule: Schedule = "onecycle"
    """Learning-rate schedule over the run: onecycle, cosine or constant."""
    warmup_epochs: float = Field(0.0, ge=0)
    """Linear warm-up length in epochs (fractions allowed; less than epochs)."""
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    """Label smoothing of the cross-entropy (teachers trained with it distil worse)."""
    max_grad_norm: float | None = Field(None, gt=0)
    """Clip the gradients' global norm to this; none: no clipping."""
    seed: int | None = None
    """Seed of initial weights, data order and augmentation; none: the recipe's seed (0 elsewhere)."""
    channels_last: bool = True
    """Channels-last memory format (faster convolutions on CPU; no effect on other layers)."""

    @model_validator(mode="after")
    def _warmup_within_run(self) -> FitConfig:
        if self.warmup_epochs and self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs = {self.warmup_epochs} must be less than epochs = {self.epochs} "
                             "(the warm-up is part of the training, not longer than it)")
        return self

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else (0.1 if self.optimizer == "sgd" else 1e-3)

    def fit_options(self, seed: int = 0) -> dict[str, Any]:
        """The :class:`FitConfig` fields of these options (a subclass's extra fields left out), the
        seed resolved to ``seed`` when none was set: keyword arguments of ``torchslim.fit``."""
        options = {k: getattr(self, k) for k in FitConfig.model_fields if k != "epochs"}
        options["seed"] = self.seed if self.seed is not None else seed
        return options


class TrainConfig(FitConfig):
    """Train a fresh registered model (``model``), or fine-tune the current one (no ``model``)."""

    model: str | None = None
    """A registered model to train from fresh weights; none: fine-tune the model made so far."""
    width: float | None = Field(None, gt=0)
    """Channel width multiplier of the model family."""
    depth: float | None = Field(None, gt=0)
    """Depth multiplier of the model family (blocks or layers per stage); none: the family's own depth."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Further keyword arguments of the model's factory."""


__all__ = ["FitConfig", "Optimizer", "Schedule", "TrainConfig"]
