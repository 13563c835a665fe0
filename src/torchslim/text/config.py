"""Sentence-encoder options: the text task's methods, one class each.

- :class:`TextLayersConfig`: a student with fewer transformer layers (``layers`` step,
  ``torchslim.text.shrink_layers``, ``torchslim distill --keep``/``--layers``);
- :class:`TextPruneConfig`: attention heads and FFN units removed (``prune`` step,
  ``torchslim.text.prune_encoder``, ``torchslim distill --heads``/``--ffn``);
- :class:`TextDistillConfig`: the student trained to reproduce the teacher's embeddings
  (``distill`` step, ``torchslim.text.distill_encoder``, ``torchslim distill --data wordnet-glosses``);
- :class:`TextQuantizeConfig` and :class:`TextExportConfig`: deployment as ONNX (``quantize`` and
  ``export`` steps, ``torchslim.text.quantize_int8``).

Bounds that depend on the model (a layer index below the teacher's depth) are checked against the
model when it is loaded; everything else is checked here. Nothing here imports torch.
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import Field, model_validator

from torchslim.distill.config import LossItem, parse_loss
from torchslim.options.base import Options
from torchslim.options.fit import FitConfig, Optimizer, Schedule

TextCache = Literal["memory", "disk", "none"]


class TextLayersConfig(Options):
    """A student with fewer transformer layers, initialised from the teacher's: the ``keep`` layers
    whose layer-dropped model agrees best with the teacher (measured before training), or the given
    ``layers``."""

    keep: int | None = Field(None, gt=0)
    """How many layers to keep: the ones that agree best with the teacher, measured (give this or layers)."""
    layers: list[int] | None = Field(None, min_length=1)
    """The teacher layer indices to keep, increasing, e.g. [0, 4, 5] (give this or keep)."""
    sample_size: int = Field(256, ge=2)
    """Sentences the layer choice is measured on (the first ones of the validation split)."""

    @model_validator(mode="after")
    def _one_way(self) -> TextLayersConfig:
        if (self.keep is None) == (self.layers is None):
            given = f"keep = {self.keep} and layers = {self.layers}" if self.keep is not None else "neither"
            raise ValueError(f"give exactly one of keep (how many layers: the best-agreeing ones are chosen) "
                             f"or layers (the layer indices to keep, e.g. [0, 4, 5]); got {given}")
        if self.layers is not None:
            if min(self.layers) < 0:
                raise ValueError(f"layers = {self.layers} holds a negative index; teacher layers are numbered "
                                 "from 0")
            if any(b <= a for a, b in itertools.pairwise(self.layers)):
                raise ValueError(f"layers = {self.layers} must be distinct and increasing (the order of the "
                                 "teacher's layers)")
        return self


class TextPruneConfig(Options):
    """Attention heads and FFN units of every layer removed physically, the least important first
    (their contribution to the residual stream on a sample): a smaller dense encoder."""

    heads: float = Field(0.5, ge=0, lt=1)
    """Fraction of every layer's attention heads removed (at least one head stays)."""
    ffn: float = Field(0.5, ge=0, lt=1)
    """Fraction of every layer's feed-forward units removed (at least one unit stays)."""
    sample_size: int = Field(256, gt=0)
    """Sentences the importance is measured on (the first ones of the validation split)."""

    @model_validator(mode="after")
    def _something(self) -> TextPruneConfig:
        if not self.heads and not self.ffn:
            raise ValueError("heads and ffn are both 0: nothing would be pruned; give either a fraction in "
                             "(0, 1)")
        return self


def _embed_cos() -> list[LossItem]:
    # Built without validation, so that showing the default loads no loss registry (nor torch);
    # tests/test_text_distill.py validates it.
    return [LossItem.model_construct(name="embed-cos", weight=1.0)]


class TextDistillConfig(FitConfig):
    """Train a sentence encoder (a layer-dropped or pruned student) to reproduce its teacher's
    embeddings: AdamW with warm-up and cosine decay, the usual schedule for fine-tuning a
    transformer, and the teacher's embeddings computed once unless a loss reads its features."""

    optimizer: Optimizer = "adamw"
    """adamw or sgd (momentum, Nesterov by default)."""
    lr: float | None = Field(2e-4, gt=0)
    """Peak learning rate; none: 0.1 for sgd, 1e-3 for adamw."""
    weight_decay: float = Field(0.01, ge=0)
    """Weight decay (decoupled for adamw, L2 for sgd)."""
    schedule: Schedule = "cosine"
    """Learning-rate schedule over the run: cosine, onecycle or constant."""
    warmup_epochs: float = Field(0.05, ge=0)
    """Linear warm-up length in epochs (fractions allowed; less than epochs)."""
    max_grad_norm: float | None = Field(1.0, gt=0)
    """Clip the gradients' global norm to this; none: no clipping."""
    channels_last: bool = False
    """Channels-last memory format (an encoder has no convolutions: no effect)."""
    losses: list[LossItem] = Field(default_factory=_embed_cos, min_length=1, json_schema_extra={"cli": {
        "item_parser": parse_loss, "metavar": "NAME[:KEY=VALUE,...]"}})
    """The losses and their weights, e.g. [{name: embed-cos, weight: 1.0}]; on the command line NAME:KEY=VALUE,... once per loss."""
    teacher: str = "teacher"
    """The teacher: the recipe's (teacher), minilm or a BERT-family model directory."""
    cache: TextCache = "memory"
    """The teacher's embeddings computed once and kept in memory or on disk, or none (run it live)."""

    @model_validator(mode="after")
    def _one_teacher(self) -> TextDistillConfig:
        for item in self.losses:
            if item.teacher is not None:
                raise ValueError(f"loss {item.name!r} names teacher {item.teacher!r}, but text distillation has "
                                 "one teacher (set it with teacher)")
        return self


class TextQuantizeConfig(Options):
    """ONNX export, then ONNX Runtime INT8 with per-channel int8 weights."""

    mode: Literal["dynamic"] = "dynamic"
    """dynamic: activation ranges taken per batch at run time, so no calibration set is needed (the only mode for encoders)."""


class TextExportConfig(Options):
    """ONNX FP32 export of the encoder (token ids in, embeddings out), checked against torch; it has
    no options."""


__all__ = ["TextCache", "TextDistillConfig", "TextExportConfig", "TextLayersConfig", "TextPruneConfig",
           "TextQuantizeConfig"]
