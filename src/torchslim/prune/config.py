"""Pruning options: channel pruning with its recovery training (:class:`PruneConfig`) and
magnitude sparsity (:class:`SparsifyConfig`).

``torchslim.prune.channels(model, x, ratio=0.5, ...)`` and ``torchslim.prune.sparsify(model, ...)``
build these from their keyword arguments; a recipe's ``prune`` and ``sparsify`` steps are these;
``torchslim prune`` and ``torchslim sparsify`` generate their flags from them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from torchslim.options.base import Options
from torchslim.options.fit import Optimizer, Schedule

Recover = Literal["none", "finetune", "kd"]
Cache = Literal["none", "memory", "disk"]
Scope = Literal["global", "layer"]
Ramp = Literal["oneshot", "agp"]


class _RecoveryFit(Options):
    """The training that follows pruning or sparsifying: a short run from already good weights, so a
    gentle peak learning rate and a decay to zero."""

    lr: float = Field(0.02, gt=0)
    """Peak learning rate of the training after pruning."""
    optimizer: Optimizer = "sgd"
    """sgd (Nesterov momentum 0.9) or adamw."""
    schedule: Schedule = "cosine"
    """Learning-rate schedule of the training after pruning: cosine, onecycle or constant."""
    weight_decay: float = Field(5e-4, ge=0)
    """Weight decay of the training after pruning."""
    channels_last: bool = False
    """Channels-last memory format for that training (faster convolutions on CPU)."""

    def fit_options(self, seed: int) -> dict:
        """Keyword arguments of ``torchslim.fit`` for the training after pruning."""
        return {"optimizer": self.optimizer, "lr": self.lr, "schedule": self.schedule,
                "weight_decay": self.weight_decay, "channels_last": self.channels_last, "seed": seed}


class PruneConfig(_RecoveryFit):
    """Remove channels (and attention heads) of every prunable layer, then recover accuracy."""

    ratio: float = Field(0.5, gt=0, lt=1)
    """Fraction of each layer's output channels to remove (parameters fall by about 1 - (1 - ratio)^2)."""
    importance: str = "l2"
    """Channel importance criterion: l1, l2, fpgm, taylor, bn_scale, lamp or random."""
    global_ranking: bool = False
    """Rank channels of all layers together (layers prune unevenly) instead of ratio of each layer."""
    round_to: int | None = Field(None, gt=0)
    """Keep channel counts multiples of this (hardware-friendly widths); none: any count."""
    ignore: list[str] = Field(default_factory=list)
    """Module paths (or module class names such as BatchNorm2d) whose output channels are kept."""
    ignore_classifier: bool = True
    """Keep the output channels of the layer that produces the model's output (found automatically)."""
    ratios: dict[str, float] = Field(default_factory=dict)
    """Per-layer ratios by module path (a container's path covers its layers), over ratio."""
    head_ratio: float | None = Field(None, ge=0, lt=1)
    """Fraction of the heads of each attention block to remove; none: ratio."""
    heads: dict[str, int] = Field(default_factory=dict)
    """Head count per attention block (the module owning its q/k/v layers), for blocks without num_heads."""
    iterations: int = Field(1, gt=0)
    """Prune in this many equal rounds, recovering between them (iterative pruning)."""
    recover: Recover = "none"
    """Recovery after each round: none, finetune (cross-entropy) or kd (distillation from the unpruned model)."""
    epochs: int = Field(0, ge=0)
    """Total recovery epochs, split over the iterations (later ones get the rest)."""
    T: float = Field(4.0, gt=0)
    """Temperature of the kd recovery's soft targets."""
    kd_weight: float = Field(0.9, ge=0, le=1)
    """Weight of the KD term in kd recovery; cross-entropy gets 1 - kd_weight."""
    bn_batches: int = Field(50, ge=0)
    """Training batches re-estimating BatchNorm statistics after each round (0: keep the old ones)."""
    cache: Cache = "memory"
    """kd recovery: the unpruned model's logits computed once and kept in memory or on disk, or none (run it live)."""

    @field_validator("importance")
    @classmethod
    def _registered_criterion(cls, name: str) -> str:
        from torchslim.core.errors import TorchSlimError
        from torchslim.prune.importance import IMPORTANCE  # imports torch: only when options are checked

        try:
            IMPORTANCE.get(name)
        except TorchSlimError as exc:
            raise ValueError(str(exc).rstrip(".")) from None
        return name

    # The bounds of a mapping's values are checked here rather than in its type, so the CLI reads
    # the mapping as repeated KEY=VALUE flags.
    @field_validator("ratios")
    @classmethod
    def _ratios_are_fractions(cls, ratios: dict[str, float]) -> dict[str, float]:
        bad = {path: value for path, value in ratios.items() if not 0 < value < 1}
        if bad:
            path, value = next(iter(bad.items()))
            raise ValueError(f"ratios[{path!r}] = {value:g} must be a fraction of channels in (0, 1)")
        return ratios

    @field_validator("heads")
    @classmethod
    def _heads_are_counts(cls, heads: dict[str, int]) -> dict[str, int]:
        bad = {path: count for path, count in heads.items() if count < 1}
        if bad:
            path, count = next(iter(bad.items()))
            raise ValueError(f"heads[{path!r}] = {count} must be a positive number of attention heads")
        return heads

    @model_validator(mode="after")
    def _recovery_has_epochs(self) -> PruneConfig:
        if self.recover != "none" and not self.epochs:
            raise ValueError(f"recover={self.recover!r} needs epochs > 0 (the recovery trains for that many "
                             "epochs); set epochs, or recover='none'")
        if self.recover == "none" and self.epochs:
            raise ValueError(f"epochs = {self.epochs} recovery epochs with recover='none' would never run; set "
                             "recover='finetune' or 'kd', or drop epochs")
        return self

    def epochs_per_iteration(self) -> list[int]:
        """Recovery epochs of each iteration: as even as possible, the rest at the end."""
        base, extra = divmod(self.epochs, self.iterations)
        return [base + (1 if i >= self.iterations - extra else 0) for i in range(self.iterations)]


class SparsifyConfig(_RecoveryFit):
    """Zero the smallest-magnitude convolution and linear weights (the model keeps its shape)."""

    sparsity: float = Field(0.5, gt=0, lt=1)
    """Fraction of the weights to zero."""
    scope: Scope = "global"
    """Rank weights across all layers (global) or zero sparsity of each layer (layer)."""
    ramp: Ramp = "oneshot"
    """How sparsity is reached: oneshot (then train epochs with the zeros kept) or agp (rising while training)."""
    epochs: int = Field(0, ge=0)
    """Training epochs: after the one-shot zeros, or along the agp ramp."""
    ignore: list[str] = Field(default_factory=list)
    """Module paths (or module class names) whose weights stay dense."""

    @model_validator(mode="after")
    def _agp_trains(self) -> SparsifyConfig:
        if self.ramp == "agp" and not self.epochs:
            raise ValueError("ramp='agp' raises sparsity while training: it needs epochs > 0")
        return self


__all__ = ["PruneConfig", "SparsifyConfig"]
