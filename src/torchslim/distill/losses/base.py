"""The interface every distillation loss implements, and the registry that names them.

A loss is an ``nn.Module`` called as ``loss(student, teacher, batch)`` on the two models'
:class:`Outputs` and the batch dict (``"y"``: (B,) int64 labels, optionally ``"index"``: (B,) int64
dataset indices); it returns a scalar tensor.

Contract: every loss detaches the teacher's tensors itself, so no gradient ever reaches a teacher,
even when its outputs were computed with autograd on. Half-precision inputs are computed in float32
(softmax and Gram matrices overflow float16); float32 and float64 are kept as they are.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from torch import Tensor, nn

from torchslim.core.errors import TorchSlimError
from torchslim.core.registry import Registry

KINDS = ("logits", "features", "relation", "contrastive", "labels")

# The bounds of loss options, by option name: the names mean the same in every loss that takes
# them (a loss with a different meaning declares its own in ``DistillLoss.option_bounds``). The
# types come from the constructor's signature; together they are each loss's typed options, checked
# by ``create`` and by recipes at load time, before any training.
OPTION_BOUNDS: dict[str, dict[str, Any]] = {
    "T": {"gt": 0}, "p": {"gt": 0}, "nce_t": {"gt": 0},
    "alpha": {"ge": 0}, "beta": {"ge": 0}, "gamma": {"ge": 0}, "w_d": {"ge": 0}, "w_a": {"ge": 0},
    "momentum": {"ge": 0, "lt": 1}, "label_smoothing": {"ge": 0, "lt": 1},
    "num_data": {"ge": 2}, "feat_dim": {"ge": 1}, "nce_k": {"ge": 1}, "heads": {"ge": 1},
    "student_tap": {"min_length": 1}, "teacher_tap": {"min_length": 1},
}
_SYMBOLS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "min_length": "length >="}


@dataclass(eq=False)  # tensors have no truth value, so a generated __eq__ would raise
class Outputs:
    """What one model produced for one batch.

    Attributes:
        logits: (B, C) class scores, or None when the model has no classifier output.
        features: tapped intermediate outputs keyed by module path, e.g. ``{"layer3": (B, C, H, W)}``.
    """

    logits: Tensor | None
    features: dict[str, Tensor] = field(default_factory=dict)


def full_precision(x: Tensor) -> Tensor:
    """``x`` in float32 when it is float16/bfloat16, else unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class DistillLoss(nn.Module):
    """Base of every distillation loss: ``forward(student, teacher, batch) -> scalar``.

    Class attributes:
        kind: one of :data:`KINDS`; the engine uses it to mix labels ("labels") and to average
            several teachers' distributions ("logits").
        registered_name: the name under :data:`LOSSES` (set by the registry), used in messages.
    """

    kind: ClassVar[str] = ""
    registered_name: ClassVar[str] = ""
    option_bounds: ClassVar[dict[str, dict[str, Any]]] = {}  # overrides of OPTION_BOUNDS for this loss

    @classmethod
    def options_model(cls) -> type[BaseModel]:
        """The loss's options as a pydantic model: types from ``__init__``, bounds from
        :data:`OPTION_BOUNDS` (NaN and infinity refused, numbers not coerced from strings)."""
        return _options_model(cls)

    @classmethod
    def describe_options(cls) -> str:
        """``"T: float > 0 (default 4.0)"``-style text of every option, for messages and listings."""
        return ", ".join(_describe_option(cls, name, param) for name, param in _params(cls).items()) or "(none)"

    @classmethod
    def check_options(cls, options: Mapping[str, Any], supplied: tuple[str, ...] = ()) -> list[dict]:
        """The pydantic errors of ``options`` (empty when valid); ``supplied`` options are filled in
        by the caller later (e.g. CRD's ``num_data``), so their absence is not an error."""
        try:
            cls.options_model().model_validate(dict(options))
        except ValidationError as exc:
            return [e for e in exc.errors() if not (e["type"] == "missing" and e["loc"][0] in supplied)]
        return []

    def forward(self, student: Outputs, teacher: Outputs, batch: Mapping[str, Any]) -> Tensor:
        raise NotImplementedError

    # -- checks shared by the losses ---------------------------------------------------------------

    @property
    def _who(self) -> str:
        return self.registered_name or type(self).__name__

    def _error(self, message: str) -> TorchSlimError:
        return TorchSlimError(f"{self._who}: {message}")

    def _positive(self, what: str, value: float) -> float:
        """``value`` as a float; raises unless it is > 0 (NaN included)."""
        if not _number(value) or not value > 0:
            raise self._error(f"{what} must be positive, got {value!r}.")
        return float(value)

    def _non_negative(self, what: str, value: float) -> float:
        """``value`` as a float; raises unless it is >= 0 (NaN included)."""
        if not _number(value) or not value >= 0:
            raise self._error(f"{what} must be >= 0, got {value!r}.")
        return float(value)

    def _logits_of(self, outputs: Outputs, owner: str) -> Tensor:
        if outputs.logits is None:
            raise self._error(f"needs logits, but the {owner}'s outputs have none.")
        return outputs.logits

    def _logit_pair(self, student: Outputs, teacher: Outputs) -> tuple[Tensor, Tensor]:
        """(student logits, detached teacher logits), both (B, C).

        Raises:
            TorchSlimError: missing logits, or different batch sizes or class counts.
        """
        s, t = self._logits_of(student, "student"), self._logits_of(teacher, "teacher")
        if s.ndim != 2 or t.ndim != 2:
            raise self._error(f"logits must be (batch, classes); got student {tuple(s.shape)}, "
                              f"teacher {tuple(t.shape)}.")
        if s.shape[1] != t.shape[1]:
            raise self._error(f"the student predicts {s.shape[1]} classes but the teacher predicts "
                              f"{t.shape[1]}; logit distillation needs the same classes.")
        _same_batch(self, s, t)
        return full_precision(s), full_precision(t.detach())

    def _labels(self, batch: Mapping[str, Any], logits: Tensor) -> Tensor:
        """``batch["y"]`` as (B,) int64, checked against the logits' batch size."""
        y = batch.get("y")
        if y is None:
            raise self._error("needs the labels batch['y'] ((batch,) int64 class indices); the batch has "
                              f"keys {sorted(batch)}.")
        if y.shape != logits.shape[:1]:
            raise self._error(f"labels have shape {tuple(y.shape)} but the logits are "
                              f"{tuple(logits.shape)}; expected ({logits.shape[0]},).")
        return y.long()


class TapLoss(DistillLoss):
    """A loss on tapped features: ``Outputs.features[student_tap]`` and ``[teacher_tap]``.

    When ``needs_taps`` is False both taps may be None, and the loss then uses the logits.
    :meth:`build` is called once by the engine with probed shapes before training.

    Args:
        student_tap: the module path naming the student's feature entry to compare.
        teacher_tap: the module path naming the teacher's feature entry to compare.
    """

    needs_taps: ClassVar[bool] = True

    def __init__(self, student_tap: str | None = None, teacher_tap: str | None = None) -> None:
        super().__init__()
        taps = (student_tap, teacher_tap)
        valid = all(isinstance(p, str) and p for p in taps)
        if not valid and not (taps == (None, None) and not self.needs_taps):
            need = "both" if self.needs_taps else "both, or neither (to use the logits),"
            raise self._error(f"give {need} of student_tap and teacher_tap as module paths; got "
                              f"student_tap={student_tap!r}, teacher_tap={teacher_tap!r}.")
        self.student_tap, self.teacher_tap = student_tap, teacher_tap

    def build(self, student_shape: torch.Size, teacher_shape: torch.Size) -> None:
        """Create connectors for the probed (B, ...) shapes; nothing to create by default."""

    def _pair(self, student: Outputs, teacher: Outputs) -> tuple[Tensor, Tensor]:
        """(student tensor, detached teacher tensor): the tapped features, or the logits.

        Raises:
            TorchSlimError: a tap missing from the features (naming the ones there), or different
                batch sizes.
        """
        if self.student_tap is None:
            s = self._logits_of(student, "student")
            t = self._logits_of(teacher, "teacher")
        else:
            s = _feature(self, student, self.student_tap, "student")
            t = _feature(self, teacher, self.teacher_tap, "teacher")
        _same_batch(self, s, t)
        return full_precision(s), full_precision(t.detach())


def _params(cls: type) -> dict[str, inspect.Parameter]:
    return {n: p for n, p in inspect.signature(cls).parameters.items()
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}


def _bounds(cls: type, name: str) -> dict[str, Any]:
    return {**OPTION_BOUNDS.get(name, {}), **getattr(cls, "option_bounds", {}).get(name, {})}


@functools.cache
def _options_model(cls: type) -> type[BaseModel]:
    hints = typing.get_type_hints(cls.__init__)
    fields = {}
    for name, param in _params(cls).items():
        annotation = hints.get(name, Any)
        numeric = annotation in (int, float)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (annotation, Field(default, strict=numeric or None, **_bounds(cls, name)))
    config = ConfigDict(extra="forbid", allow_inf_nan=False, arbitrary_types_allowed=True)
    return create_model(f"{cls.__name__}Options", __config__=config, **fields)


def _describe_option(cls: type, name: str, param: inspect.Parameter) -> str:
    annotation = typing.get_type_hints(cls.__init__).get(name)
    kind = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "").replace("collections.abc.", "")
    limits = {k: v for k, v in _bounds(cls, name).items() if k != "min_length"}
    low, high = [k for k in limits if k in ("gt", "ge")], [k for k in limits if k in ("lt", "le")]
    if low and high:  # "in [0, 1)" reads better than ">= 0 < 1"
        bounds = (f"in {'(' if low[0] == 'gt' else '['}{limits[low[0]]}, {limits[high[0]]}"
                  f"{')' if high[0] == 'lt' else ']'}")
    else:
        bounds = " ".join(f"{_SYMBOLS[k]} {v}" for k, v in limits.items())
    default = "required" if param.default is inspect.Parameter.empty else f"default {param.default!r}"
    return f"{name}: {kind}{' ' + bounds if bounds else ''} ({default})"


def _number(value: Any) -> bool:
    # bool is an int subclass, but T=True is a mistake, not 1.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _feature(loss: DistillLoss, outputs: Outputs, tap: str, owner: str) -> Tensor:
    if tap not in outputs.features:
        there = ", ".join(map(repr, outputs.features)) or "(none)"
        raise loss._error(f"the {owner} tap {tap!r} is not among the {owner}'s features; "
                          f"available: {there}.")
    value = outputs.features[tap]
    if isinstance(value, (tuple, list)):  # Taps(calls="all"): one tensor per call of the module
        raise loss._error(f"the {owner} tap {tap!r} holds {len(value)} outputs (one per call of a module that "
                          "runs several times per forward, Taps(calls='all')), but this loss compares one "
                          "tensor. Tap a module that runs once, or pick one call, e.g. features[tap][-1].")
    return value


def _same_batch(loss: DistillLoss, s: Tensor, t: Tensor) -> None:
    if s.shape[0] != t.shape[0]:
        raise loss._error(f"the student has batch size {s.shape[0]} but the teacher {t.shape[0]}.")


class LossRegistry(Registry[type[DistillLoss]]):
    """A :class:`Registry` of loss classes that also checks each class's ``kind`` and stamps it
    with its registered name (the engine names a loss's logged value by it)."""

    def register(self, name: str, obj: type[DistillLoss] | None = None
                 ) -> Callable[[type[DistillLoss]], type[DistillLoss]] | type[DistillLoss]:
        def add(cls: type[DistillLoss]) -> type[DistillLoss]:
            if getattr(cls, "kind", None) not in KINDS:
                raise TorchSlimError(f"Loss class {cls.__name__} has kind {getattr(cls, 'kind', None)!r}; "
                                     f"valid kinds: {', '.join(KINDS)}.")
            Registry.register(self, name, cls)
            cls.registered_name = name
            return cls

        return add if obj is None else add(obj)


LOSSES = LossRegistry("distillation loss")
