"""The search space: dimensions named by the step configs' own fields, and the candidate each
sample makes.

A dimension is ``route``, ``recovery``, ``quantize`` (the shape of a candidate, see
:mod:`torchslim.options.search`) or ``<step>.<field>`` of a step a candidate uses (``prune``,
``train``, ``distill``, ``quantize``, ``qat``). Two kinds of field reach inside: a mapping field by
key (``prune.ratios.layer2``: the ratio of one stage) and the loss list by loss name
(``distill.losses.kd.T``). A field's type decides the dimension's kind (an integer or a float range,
or choices), and every end of a range and every choice is checked by the step's own config class,
so a range outside a field's bounds is refused in the config's own words before anything trains.

A candidate is a recipe strategy::

    route pruned:  load teacher -> prune (prune.*) -> train (train.*) or distill (distill.*) -> [quantize | qat]
    route student: distill a fresh student (distill.student, .width, .depth and distill.*) -> [quantize | qat]

so it runs, is reused and resumes like every strategy (two candidates that begin with the same
steps share them), and the picks are exported as recipes ``torchslim compare`` reproduces.

Imports no torch.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import ValidationError

from torchslim.core.registry import did_you_mean
from torchslim.options.base import explain
from torchslim.options.search import QUANTIZE, RECOVERIES, ROUTES, SPECIAL, Range

# The steps a candidate is made of, and the fields that vary nothing a search can measure (where
# files go, which teacher) and so are not dimensions.
CANDIDATE_STEPS = ("prune", "train", "distill", "quantize", "qat")
NOT_DIMENSIONS = {"ignore", "heads", "model_kwargs", "teachers", "teacher_weights", "temperature", "seed",
                  "cache", "model", "ignore_classifier", "mix"}
STUDENT_FIELDS = {"student", "width", "depth"}  # distill fields that only a fresh student has

# What every candidate starts from before its sampled values (a field neither here nor sampled keeps
# its config's default): recovery that decays to zero, the teacher's logits cached once.
BASE: dict[str, dict[str, Any]] = {
    "prune": {"ratio": 0.5},
    "train": {"epochs": 6, "lr": 0.02, "schedule": "cosine"},
    "distill": {"epochs": 6, "lr": 0.02, "schedule": "cosine", "cache": "memory", "cache_draws": 1,
                "losses": [{"name": "kd", "T": 4.0, "weight": 0.9}, {"name": "ce", "weight": 0.1}]},
    "quantize": {"mode": "static", "calibration_batches": 16},
    "qat": {"epochs": 1},
}
STUDENT_BASE = {"student": "cnn-small", "epochs": 8, "lr": 0.2, "schedule": "onecycle", "cache_draws": 2}

# The default space: every route, recovery and quantization; the pruning ratio overall and per stage
# (stages are added from the teacher, see default_space), the criterion; recovery and distillation
# length, rate, temperature and weight; the student's family, width and depth (compound scaling).
DEFAULT_SPACE: dict[str, Any] = {
    "route": list(ROUTES),
    "quantize": list(QUANTIZE),
    "prune.ratio": {"low": 0.3, "high": 0.85},
    "prune.importance": ["l1", "l2", "fpgm"],
    "recovery": list(RECOVERIES),
    "train.epochs": {"low": 2, "high": 8},
    "train.lr": {"low": 0.005, "high": 0.1, "log": True},
    "distill.epochs": {"low": 2, "high": 12},
    "distill.lr": {"low": 0.01, "high": 0.3, "log": True},
    "distill.losses.kd.T": {"low": 2.0, "high": 8.0},
    "distill.losses.kd.weight": {"low": 0.5, "high": 1.0},
    "distill.student": ["cnn-small", "cnn-medium", "resnet8", "resnet14"],
    "distill.width": {"low": 0.5, "high": 2.0},
    "distill.depth": {"low": 1.0, "high": 2.0},
}
STAGE_RANGE = {"low": 0.2, "high": 0.9}


class SpaceError(ValueError):
    """A dimension of the space is unknown, empty, contradictory or outside its field's bounds."""


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One thing a trial samples: its key, its choices or range, and the field it sets."""

    key: str
    choices: tuple[Any, ...] | None = None
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    integer: bool = False

    @property
    def step_name(self) -> str | None:
        return None if self.key in SPECIAL else self.key.split(".", 1)[0]

    def distribution(self) -> Any:
        """The Optuna distribution of this dimension."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.choices is not None:
            return CategoricalDistribution(list(self.choices))
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log,
                                 step=None if self.step is None else float(self.step))

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.key} in {list(self.choices)}"
        scale = ", log" if self.log else (f", step {self.step}" if self.step else "")
        return f"{self.key} in [{self.low}, {self.high}]{scale}"


def _params_class(step: str) -> type:
    from torchslim.pipeline.steps.base import STEPS

    return STEPS.get(step).Params


def _field_kind(annotation: Any) -> tuple[str, tuple | None]:
    """``("int" | "float" | "choice" | "mapping" | "losses" | "other", literal choices)``."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return _field_kind(args[0])
    if annotation is bool:
        return "choice", (False, True)
    if annotation is int:
        return "int", None
    if annotation is float:
        return "float", None
    if annotation is str:
        return "choice", None
    if origin is typing.Literal:
        return "choice", typing.get_args(annotation)
    if origin is dict:
        return "mapping", None
    if origin is list and getattr(typing.get_args(annotation)[0], "__name__", "") == "LossItem":
        return "losses", None
    return "other", None


def _dimension(key: str, spec: Any, fixed: Mapping[str, Mapping[str, Any]], route_base: dict) -> Dimension:
    """``spec`` (a list of choices or a :class:`Range`) as the dimension ``key``, every end and
    choice checked by the step's config class."""
    if isinstance(spec, list):
        if not spec:
            raise SpaceError(f"{key}: an empty list of choices leaves nothing to try; give at least one value")
        if len({json.dumps(v, sort_keys=True, default=str) for v in spec}) != len(spec):
            raise SpaceError(f"{key}: choices {spec} name a value twice")
    if key in SPECIAL:
        valid = SPECIAL[key]
        if not isinstance(spec, list):
            raise SpaceError(f"{key} is a choice among {', '.join(valid)}; give a list of them, not a range")
        bad = [v for v in spec if v not in valid]
        if bad:
            raise SpaceError(f"{key}: {bad[0]!r} is not one of {', '.join(valid)}.{did_you_mean(str(bad[0]), list(valid))}")
        return Dimension(key, choices=tuple(spec))
    step, _, rest = key.partition(".")
    if step not in CANDIDATE_STEPS or not rest:
        hint = did_you_mean(step, [*CANDIDATE_STEPS, *SPECIAL])
        raise SpaceError(f"unknown dimension {key!r}: a dimension is route, recovery, quantize or STEP.FIELD of a "
                         f"candidate's step ({', '.join(CANDIDATE_STEPS)}).{hint}")
    params = _params_class(step)
    field, _, sub = rest.partition(".")
    info = params.model_fields.get(field)
    if info is None or field in NOT_DIMENSIONS:
        valid = [f for f in params.model_fields if f not in NOT_DIMENSIONS]
        why = " (not something a search varies)" if info is not None else ""
        raise SpaceError(f"unknown dimension {key!r}: {step} has no field {field!r} to vary{why}."
                         f"{'' if why else did_you_mean(field, valid)} Fields of {step}: {', '.join(valid)}.")
    kind, literal = _field_kind(info.annotation)
    if kind == "mapping":
        if not sub:
            raise SpaceError(f"{key} is a mapping; vary one entry of it: {key}.KEY (e.g. prune.ratios.layer2)")
        kind = "float"
    elif kind == "losses":
        name, _, option = sub.partition(".")
        if not name or not option:
            raise SpaceError(f"{key}: vary one option of one loss: {step}.losses.LOSS.OPTION (e.g. distill.losses.kd.T)")
        kind = "float"
    elif sub:
        raise SpaceError(f"unknown dimension {key!r}: {step}.{field} has no entries; vary {step}.{field} itself")
    elif kind == "other":
        raise SpaceError(f"{key}: {step}.{field} is not a number or a choice, so a search cannot vary it")
    if isinstance(spec, Range):
        if kind == "choice":
            raise SpaceError(f"{key} is a choice ({', '.join(map(str, literal)) if literal else 'a name'}); "
                             "give a list of choices, not a range")
        integer = kind == "int"
        if integer and not all(float(v).is_integer() for v in (spec.low, spec.high)):
            raise SpaceError(f"{key} is an integer field; its range needs integer ends (got {spec.low}..{spec.high})")
        dim = Dimension(key, low=spec.low, high=spec.high, log=spec.log, step=spec.step, integer=integer)
        values = [spec.low, spec.high]
    else:
        dim, values = Dimension(key, choices=tuple(spec)), list(spec)
    base = {**BASE.get(step, {}), **route_base.get(step, {}), **fixed.get(step, {})}
    for value in values:
        _check_value(step, key, rest, value, base)
    return dim


def _check_value(step: str, key: str, rest: str, value: Any, base: dict) -> None:
    """The step's config validated with ``value`` set at ``rest``: its own error when it refuses."""
    params = apply_field(dict(base), rest, value)
    try:
        _params_class(step).model_validate(params)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"] if isinstance(p, str | int)) or rest
        raise SpaceError(f"{key} = {json.dumps(value, default=str)} is outside what {step} takes: "
                         f"{explain(error, where, _params_class(step))}") from None


def apply_field(params: dict[str, Any], rest: str, value: Any) -> dict[str, Any]:
    """``params`` with ``value`` set at ``rest`` (``ratio``, ``ratios.layer2``, ``losses.kd.T``).

    A loss's ``weight`` set when the list has two losses gives the other one ``1 - weight`` (the
    weights stay a split of one).
    """
    field, _, sub = rest.partition(".")
    if not sub:
        params[field] = value
    elif field == "losses":
        name, _, option = sub.partition(".")
        losses = [dict(item) for item in params.get(field) or []]
        mine = next((item for item in losses if item.get("name") == name), None)
        if mine is None:
            mine = {"name": name}
            losses.append(mine)
        mine[option] = value
        if option == "weight" and len(losses) == 2 and isinstance(value, int | float) and 0 <= value <= 1:
            other = next(item for item in losses if item is not mine)
            other["weight"] = round(1.0 - float(value), 10)
        params[field] = losses
    else:
        params[field] = {**(params.get(field) or {}), sub: value}
    return params


@dataclasses.dataclass
class Space:
    """The dimensions of a search and the fixed parameters of its steps."""

    dimensions: list[Dimension]
    fixed: dict[str, dict[str, Any]]

    def __post_init__(self) -> None:
        self.by_key = {d.key: d for d in self.dimensions}

    def choices(self, key: str) -> tuple[Any, ...]:
        dim = self.by_key.get(key)
        return dim.choices if dim is not None and dim.choices is not None else ()

    def active(self, key: str, values: Mapping[str, Any]) -> bool:
        """Whether dimension ``key`` shapes a candidate with the special values in ``values``."""
        step = self.by_key[key].step_name
        if step is None:
            return key != "recovery" or values.get("route") == "pruned"
        route, recovery, quant = values.get("route"), values.get("recovery"), values.get("quantize")
        field = key.split(".")[1]
        return {"prune": route == "pruned",
                "train": route == "pruned" and recovery == "train",
                "distill": (route == "student") if field in STUDENT_FIELDS else
                           (route == "student" or (route == "pruned" and recovery == "distill")),
                "quantize": quant == "static", "qat": quant == "qat"}[step]

    def defaults(self) -> dict[str, Any]:
        """The special values when a dimension is not searched: the first route, recovery and
        quantization the space allows (``pruned``, ``distill``, ``none`` by default)."""
        return {"route": (self.choices("route") or ("pruned",))[0],
                "recovery": (self.choices("recovery") or ("distill",))[0],
                "quantize": (self.choices("quantize") or ("none",))[0]}

    def candidate(self, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The strategy (recipe steps as plain data) of one sample ``values`` (key -> value)."""
        shape = {**self.defaults(), **{k: v for k, v in values.items() if k in SPECIAL}}

        def step(name: str, extra: dict | None = None, student: bool = False) -> dict[str, Any]:
            params = {**BASE.get(name, {}), **(STUDENT_BASE if student else {}), **(extra or {}),
                      **self.fixed.get(name, {})}
            for key, value in values.items():
                if key.startswith(name + ".") and (student or key.split(".")[1] not in STUDENT_FIELDS):
                    params = apply_field(params, key.split(".", 1)[1], value)
            return {name: params}

        if shape["route"] == "pruned":
            steps = [{"load": "teacher"}, step("prune"), step(shape["recovery"])]
            if shape["recovery"] == "distill":
                steps[-1]["distill"].pop("student", None)
        else:
            steps = [step("distill", student=True)]
        if shape["quantize"] == "static":
            steps.append(step("quantize"))
        elif shape["quantize"] == "qat":
            steps.append(step("qat"))
        return steps


def build_space(space: Mapping[str, Any] | None, fixed: Mapping[str, Mapping[str, Any]],
                stages: list[str] | None = None, models: Collection[str] | None = None) -> Space:
    """The :class:`Space` of a ``search:`` section (``space`` none: the default, with a per-stage
    pruning ratio for each of ``stages``), every dimension and fixed parameter checked.

    ``models``: the names a student may have besides the registered models (the ``models={...}``
    given to the search); every student name is then checked. None: not checked (a recipe is parsed
    before the models given with it are known).

    Raises:
        SpaceError: the first bad dimension or fixed parameter, in words naming it.
    """
    for name, params in fixed.items():
        if name not in CANDIDATE_STEPS:
            raise SpaceError(f"fixed.{name}: a candidate has no {name!r} step.{did_you_mean(name, list(CANDIDATE_STEPS))} "
                             f"Steps: {', '.join(CANDIDATE_STEPS)}.")
        _check_fixed(name, params)
    if space is None:
        space = dict(DEFAULT_SPACE)
        for stage in stages or []:
            space[f"prune.ratios.{stage}"] = dict(STAGE_RANGE)
    if not space:
        raise SpaceError("the space is empty: name at least one dimension, or leave `space` out for the default")
    dims = []
    for key, spec in space.items():
        spec = Range.model_validate(spec) if isinstance(spec, dict) else spec
        route_base = {"distill": STUDENT_BASE} if key.split(".")[-1] in STUDENT_FIELDS else {}
        dims.append(_dimension(str(key), spec, fixed, route_base))
    result = Space(dims, {k: dict(v) for k, v in fixed.items()})
    _check_contradictions(result)
    if models is not None:
        _check_students(result, models)
    return result


def _check_fixed(name: str, params: Any) -> None:
    if not isinstance(params, dict):
        raise SpaceError(f"fixed.{name} must be a mapping of {name}'s parameters; got {json.dumps(params, default=str)}")
    base = {**BASE.get(name, {}), **params}
    try:
        _params_class(name).model_validate(base)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"] if isinstance(p, str | int)) or name
        raise SpaceError(f"fixed.{name}: {explain(error, where, _params_class(name))}") from None


def _check_students(space: Space, given: Collection[str]) -> None:
    """Every student a candidate may build is a registered model or one of ``given``: an unknown
    name would otherwise fail each trial that draws it, after the teacher is measured."""
    from torchslim import models

    known = [*models.list(), *given]
    named = [("distill.student", name) for name in space.choices("distill.student")]
    if "student" in space.fixed.get("distill", {}):
        named.append(("fixed.distill.student", space.fixed["distill"]["student"]))
    for key, name in named:
        if name not in known:
            raise SpaceError(f"{key}: {name!r} is not a model.{did_you_mean(str(name), known)} Registered models: "
                             f"{', '.join(models.list())}" + (f"; given: {', '.join(given)}" if given else "") +
                             " (pass your own with models={name: factory})")


def _check_contradictions(space: Space) -> None:
    """A dimension that no candidate of the space can use contradicts the space."""
    routes = space.choices("route") or (space.defaults()["route"],)
    recoveries = space.choices("recovery") or (space.defaults()["recovery"],)
    quants = space.choices("quantize") or (space.defaults()["quantize"],)
    shapes = [{"route": r, "recovery": c, "quantize": q} for r in routes for c in recoveries for q in quants]
    for dim in space.dimensions:
        if not any(space.active(dim.key, s) for s in shapes):
            raise SpaceError(f"{dim.key} varies a step no candidate of this space has (routes {list(routes)}, "
                             f"recovery {list(recoveries)}, quantize {list(quants)}); add the route or "
                             "quantization that uses it, or drop the dimension")
    ranged = [d for d in space.dimensions if d.choices is None or len(d.choices) > 1]
    if not ranged:
        raise SpaceError("every dimension has a single value, so there is nothing to search; widen one or use "
                         "`torchslim compare` for one fixed strategy")


def sample(space: Space, trial: Any) -> dict[str, Any]:
    """Values for ``trial`` (an Optuna trial), define-by-run: a dimension is sampled only when the
    candidate's route, recovery and quantization use it."""
    values: dict[str, Any] = {}
    for key in ("route", "recovery", "quantize"):
        if key in space.by_key and space.active(key, values):
            values[key] = trial._suggest(key, space.by_key[key].distribution())
    shape = {**space.defaults(), **values}
    for dim in space.dimensions:
        if dim.step_name is not None and space.active(dim.key, shape):
            values[dim.key] = trial._suggest(dim.key, dim.distribution())
    return values


__all__ = ["BASE", "CANDIDATE_STEPS", "DEFAULT_SPACE", "Dimension", "Space", "SpaceError", "apply_field", "build_space",
           "sample"]

