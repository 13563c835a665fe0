"""Knowledge-distillation options: :class:`DistillConfig` (which student, which teachers, which
weighted losses, the teacher cache, mixing, then the fit options) and :class:`LossItem` (one loss).

A recipe's ``distill`` step is a :class:`DistillConfig`; ``torchslim distill``'s flags are generated
from it; :func:`torchslim.distill.distill` takes it. A loss's own options (``T``, ``alpha``, taps...)
are defined once, by the loss (``DistillLoss.options_model()``: types from its constructor, bounds
from ``OPTION_BOUNDS``); :class:`LossItem` validates against that definition, so a misspelled or
non-numeric ``T`` is refused when the options are read, by every front end in the same words.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from torchslim.core.errors import UnknownNameError
from torchslim.core.registry import did_you_mean
from torchslim.options.base import Options
from torchslim.options.fit import FitConfig

# The loss whose option is filled in from the training data (CRD's memory bank holds one entry
# per training sample), so a loss item need not give it.
SUPPLIED = {"crd": ("num_data",)}


def loss_registry() -> Any:
    """The registry of distillation losses (``LOSSES``), imported when a loss is checked (the losses
    import torch; building the options, e.g. for ``--help``, must not)."""
    from torchslim.distill.losses import LOSSES

    return LOSSES


def invalid(loc: tuple, value: Any, message: str, title: str = "options") -> ValidationError:
    """A validation error at ``loc`` (a key path inside the validated options) with ``message``:
    front ends name the place (``file:line``, ``--flag``, keyword) and the value themselves."""
    return ValidationError.from_exception_data(title, [InitErrorDetails(type=_custom(message), loc=loc, input=value)])


def parse_loss(text: str) -> dict[str, Any]:
    """One loss as a command line writes it: ``"kd:T=4,weight=0.9"`` -> ``{"name": "kd", "T": 4,
    "weight": 0.9}`` (numbers, true/false and none are read as such; the item's validation judges
    them).

    Raises:
        ValueError: no name, an option without ``=``, or an option given twice.
    """
    name, _, rest = text.partition(":")
    item: dict[str, Any] = {"name": name.strip()}
    if not item["name"]:
        raise ValueError(f"a loss needs a name before ':', got {text!r}")
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"loss option {part!r} in {text!r} must be KEY=VALUE")
        if key.strip() in item:
            raise ValueError(f"loss option {key.strip()!r} is given twice in {text!r}")
        item[key.strip()] = _value(value.strip())
    return item


class LossItem(Options):
    """``{name: kd, weight: 0.9, T: 4}``: a registered loss, its weight in the total, the teacher
    it reads, and the loss's own options (checked against the loss's typed options)."""

    model_config = ConfigDict(extra="allow")  # the loss's own options; validated by _loss_options

    name: str
    """A registered distillation loss (`torchslim losses` lists them and their options)."""
    weight: float = Field(1.0, ge=0)
    """The loss's weight in the total loss."""
    teacher: str | None = None
    """The teacher (one of `teachers`) the loss reads; none: the first, or all of them for logit losses."""

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        try:
            loss_registry().get(name)
        except UnknownNameError as exc:
            raise ValueError(str(exc)) from None
        return name

    @model_validator(mode="after")
    def _loss_options(self) -> LossItem:
        loss = loss_registry().get(self.name)
        problems = loss.check_options(self.arguments(), SUPPLIED.get(self.name, ()))
        if problems:
            raise _loss_errors(self.name, loss, problems, self.arguments())
        return self

    def arguments(self) -> dict[str, Any]:
        """The loss's own options as written (``T``, taps, ...): keyword arguments of the loss."""
        return dict(self.model_extra or {})


def _loss_errors(name: str, loss: Any, problems: list[dict], given: dict[str, Any]) -> ValidationError:
    """The problems of a loss's options as errors at each option's key (a missing one at the loss's
    name), every message ending with the loss's options: their types, bounds and defaults."""
    valid = list(loss.options_model().model_fields)
    options = f"Its options: {loss.describe_options()}"
    details, missing = [], []
    for error in problems:
        key = str(error["loc"][0]) if error["loc"] else "name"
        if error["type"] == "missing":
            missing.append(key)
            continue
        if error["type"] == "extra_forbidden":
            message, value = f"loss {name!r} has no option {key!r}.{did_you_mean(key, valid)} {options}", given.get(key)
        else:
            message, value = f"{error['msg'].rstrip('.')} (loss {name!r}). {options}", error.get("input")
        details.append(InitErrorDetails(type=_custom(message), loc=(key,), input=value))
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        message = f"{' and '.join(missing)} {verb} required by loss {name!r}. {options}"
        details.append(InitErrorDetails(type=_custom(message), loc=("name",), input=name))
    return ValidationError.from_exception_data("LossItem", details)


def _custom(message: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_option", "{message}", {"message": message})


def _default_losses() -> list[LossItem]:
    # Built without validation: the registry (and torch) must not load to print a default in
    # `--help`; tests/test_distill_options.py validates these two items.
    return [LossItem.model_construct(name="kd", weight=0.9, T=4.0), LossItem.model_construct(name="ce", weight=0.1)]


class TemperatureSchedule(Options):
    """The temperature ``T`` of every loss that has one, following training progress (from
    ``start`` at the first step to ``end`` at the last): annealed distillation."""

    kind: Literal["constant", "linear", "cosine", "step"] = "linear"
    """How T moves: constant, linear, cosine (half-cosine ease) or step (times gamma at each milestone)."""
    start: float = Field(gt=0)
    """T at the start of training."""
    end: float | None = Field(None, gt=0)
    """T at the end of training (linear and cosine); none: start."""
    warmup: float = Field(0.0, ge=0, lt=1)
    """Fraction of training that holds start before T begins to move."""
    milestones: list[float] = Field(default_factory=list)
    """Fractions of training in (0, 1) at which a step schedule multiplies T by gamma."""
    gamma: float = Field(0.1, gt=0)
    """Factor of a step schedule at each milestone."""

    @model_validator(mode="after")
    def _milestones_inside(self) -> TemperatureSchedule:
        outside = [m for m in self.milestones if not 0 < m < 1]
        if outside:
            raise invalid(("milestones",), self.milestones, f"milestones are fractions of training in (0, 1); "
                          f"{outside[0]} is not", "TemperatureSchedule")
        return self


class DistillConfig(FitConfig):
    """Distil teachers into a fresh registered student (``student``), or into the model made so far
    (no ``student``), with weighted losses; then the fit options."""

    student: str | None = None
    """A registered model to distil into, from fresh weights; none: the model made so far."""
    width: float | None = Field(None, gt=0)
    """Channel width multiplier of the student's model family."""
    depth: float | None = Field(None, gt=0)
    """Depth multiplier of the model family (blocks or layers per stage); none: the family's own depth."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Further keyword arguments of the student's factory."""
    losses: list[LossItem] = Field(default_factory=_default_losses, min_length=1, json_schema_extra={"cli": {
        "item_parser": parse_loss, "metavar": "NAME[:KEY=VALUE,...]"}})
    """Weighted losses, each a registered loss with its weight, teacher and own options (`torchslim losses`), e.g. {name: kd, weight: 0.9, T: 4}."""
    teachers: list[str] = Field(default_factory=lambda: ["teacher"], min_length=1)
    """Teacher sources: the recipe's teacher ("teacher"), a shipped model name or a checkpoint directory."""
    teacher_weights: list[float] | None = None
    """Weights of several teachers, one each (normalised); none: equal."""
    multi_teacher: Literal["mean", "each"] = "mean"
    """Several teachers: logit losses see the weighted mean of their softened outputs (mean), or one term each (each)."""
    temperature: TemperatureSchedule | None = None
    """Anneal T of every loss that has one over training (e.g. {kind: linear, start: 8, end: 2}); none: each loss keeps its T."""
    cache: Literal["memory", "disk", "none"] = "memory"
    """Teacher logits computed once and replayed (memory, or memory-mapped on disk), or live every batch (none)."""
    cache_draws: int | None = Field(None, gt=0)
    """Augmentation draws recorded in the cache and replayed in turn; none: one per epoch."""
    mix: Literal["mixup", "cutmix"] | None = None
    """Mix images per batch, seen identically by teacher and student (needs cache none)."""

    @model_validator(mode="after")
    def _teachers_agree(self) -> DistillConfig:
        weights = self.teacher_weights
        if weights is not None and (len(weights) != len(self.teachers) or min(weights) < 0 or not sum(weights)):
            raise invalid(("teacher_weights",), weights, f"teacher_weights must give one weight >= 0 per teacher "
                          f"({len(self.teachers)}: {', '.join(self.teachers)}), not all zero")
        for i, item in enumerate(self.losses):
            if item.teacher is not None and item.teacher not in self.teachers:
                raise invalid(("losses", i, "teacher"), item.teacher, f"loss {item.name!r} names teacher "
                              f"{item.teacher!r}, which is not among teachers: {', '.join(self.teachers)}")
        return self

    @model_validator(mode="after")
    def _cache_fits(self) -> DistillConfig:
        if self.mix and self.cache != "none":
            raise invalid(("mix",), self.mix, "mixing images in every batch needs the live teacher, but cache = "
                          f"{self.cache!r} replays recorded outputs; set cache to none")
        if self.cache_draws is not None and self.cache == "none":
            raise invalid(("cache_draws",), self.cache_draws, "recorded draws of teacher outputs need a cache, but "
                          "cache = 'none' computes them live; set cache to memory or disk, or drop cache_draws")
        tapped = [i for i in self.losses if i.arguments().get("teacher_tap")]
        if tapped and self.cache != "none":
            raise invalid(("cache",), self.cache, f"loss {tapped[0].name!r} reads the teacher's features "
                          f"(teacher_tap {tapped[0].arguments()['teacher_tap']!r}), which a cache does not hold; "
                          "set cache to none")
        return self

    @model_validator(mode="after")
    def _temperature_used(self) -> DistillConfig:
        if self.temperature is None:
            return self
        if not any("T" in loss_registry().get(i.name).options_model().model_fields for i in self.losses):
            raise invalid(("temperature",), self.temperature.model_dump(mode="json"), "no loss has a temperature "
                          f"T to anneal (losses: {', '.join(i.name for i in self.losses)}); drop temperature")
        return self


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None, "null": None}.get(text.lower(), text)


__all__ = ["DistillConfig", "LossItem", "TemperatureSchedule", "invalid", "parse_loss"]
