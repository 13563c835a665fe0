"""Recipes: YAML parsed into typed, versioned configs.

A recipe names a teacher, a dataset and one or more *strategies*; each strategy is a list of steps
(``train``, ``load``, ``distill``, ``prune``, ``sparsify``, ``quantize``, ``qat``, ``export``,
``evaluate``) run in order, each step transforming the previous step's model::

    version: 1
    name: fashion-mnist
    teacher: fashion-mnist-teacher        # a shipped model name or a checkpoint directory
    data: {name: fashion-mnist, batch_size: 128}
    strategies:
      student-distilled:
        - distill: {student: cnn-small, epochs: 4, losses: [{name: kd, T: 4, weight: 0.9}]}
      teacher-int8:
        - load: teacher
        - quantize: {mode: static}

A recipe's *task* is ``image`` (the default) or ``text``: ``task: text`` or a text dataset
(``data: {name: wordnet-glosses}``) makes the teacher a sentence encoder (``minilm`` or a model
directory) and the steps the text ones (``load``, ``layers``, ``prune`` with ``heads``/``ffn``,
``distill``, ``quantize``, ``export``, ``evaluate``; see :mod:`torchslim.pipeline.steps.text`), and
quality is agreement with the teacher instead of accuracy.

Parsing is strict: an unknown key is an error naming its path (``strategies.x[1].prune.ratoi``),
the closest valid key and the file and line; a wrong type names the value and the expected type.
YAML is only ever read with ``yaml.safe_load`` semantics: a recipe never imports or runs code. A
model given as ``module:function`` is imported only when the caller allows that module explicitly
(``torchslim compare --allow-import mypkg``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from torchslim.core.registry import did_you_mean
from torchslim.options.base import explain
from torchslim.options.search import SearchConfig
from torchslim.pipeline.recipe_checks import MAX_NAME, NAME_PATTERN, fields_at, safe_name, section_at
from torchslim.pipeline.recipe_yaml import RecipeError, dotted, non_finite, read_text, read_yaml
from torchslim.pipeline.schema import (
    TARGETS,
    DataConfig,
    MeasureConfig,
    QuickConfig,
    ScenarioConfig,
    Strict,
    TextConfig,
)

VERSION = 1


class StepSpec(Strict):
    """One step: its registered name and its validated parameters (a pydantic model)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    name: str
    params: Any
    where: str = ""  # "file:line" of the step in the recipe, for messages

    def config(self) -> dict[str, Any]:
        return {"step": self.name, **self.params.model_dump(mode="json")}


class Recipe(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    version: Literal[1] = VERSION
    name: str = Field(min_length=1)
    description: str = ""
    task: Literal["image", "text"] = "image"  # parse() infers it from data.name when not given
    teacher: str | None = None
    seed: int = 0
    threads: int | None = Field(None, gt=0)  # torch threads for training steps (None: torch's default)
    data: DataConfig = Field(default_factory=DataConfig)
    measure: MeasureConfig = Field(default_factory=MeasureConfig)
    scenarios: ScenarioConfig = Field(default_factory=ScenarioConfig)
    quick: QuickConfig = Field(default_factory=QuickConfig)
    text: TextConfig = Field(default_factory=TextConfig)
    baseline: str | None = None  # the strategy every ratio is taken against (default: the first)
    search: SearchConfig | None = None  # what `torchslim search` varies, measures and must hold
    strategies: dict[str, list[StepSpec]]
    source: str = ""
    _lines: Any = PrivateAttr(default=None)  # key path -> line, for messages of checks made later

    def where(self, *path: Any) -> str:
        """``file:line`` of the key at ``path`` (e.g. ``where("teacher")``), or the recipe's source."""
        return self._lines.where(tuple(path)) if self._lines is not None else (self.source or "<recipe>")

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        if not self.strategies:
            raise ValueError("a recipe needs at least one strategy")
        for name, steps in self.strategies.items():
            if not safe_name(name):  # also for a Recipe built in Python, not parsed: the name becomes a path
                raise ValueError(f"strategy name {name!r} must match {NAME_PATTERN} without '..' (at most "
                                 f"{MAX_NAME} characters): it becomes a file name in the output directory")
            if not steps:
                raise ValueError(f"strategy {name!r} has no steps")
        if self.baseline is not None and self.baseline not in self.strategies:
            raise ValueError(f"baseline {self.baseline!r} is not a strategy of this recipe; strategies: "
                             f"{', '.join(self.strategies)}")
        return self

    @property
    def baseline_name(self) -> str:
        return self.baseline or next(iter(self.strategies))

    def fingerprint(self) -> str:
        """A hash of everything that decides a comparison's results (not the name, description,
        source, or the ``search:`` section, which only ``torchslim search`` reads)."""
        return digest(self.plain(exclude={"name", "description", "source", "search"}))

    def plain(self, exclude: set[str] | None = None) -> dict[str, Any]:
        from torchslim.pipeline.tasks import TASKS

        own = TASKS.get(self.task).sections
        foreign = {s for t in TASKS.list() for s in TASKS.get(t).sections} - own
        skip = {"strategies"} | foreign  # sections of other tasks are not part of this recipe
        out = {k: (v.model_dump(mode="json") if isinstance(v, BaseModel) else v)
               for k, v in self if k not in (exclude or set()) and k not in skip}
        out["strategies"] = {name: [s.config() for s in steps] for name, steps in self.strategies.items()}
        return json.loads(json.dumps(out))


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# -- YAML with line numbers -----------------------------------------------------------------------


class _Lines:
    """Maps a key path (tuple of keys and list indices) to its line in the YAML source."""

    def __init__(self, node: yaml.Node | None, source: str) -> None:
        self.source, self.lines = source, {}
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: tuple) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    continue
                k = _key(key)
                self.lines[(*path, k)] = key.start_mark.line + 1
                self._walk(value, (*path, k))
                self.lines[(*path, k)] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, value in enumerate(node.value):
                self._walk(value, (*path, i))

    def where(self, path: tuple) -> str:
        while path and path not in self.lines:
            path = path[:-1]
        line = self.lines.get(path)
        return f"{self.source}:{line}" if line else self.source


def _key(node: yaml.ScalarNode) -> Any:
    """A mapping key as the data holds it (``1:`` is the int 1, as YAML constructs it)."""
    if node.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:bool"):
        try:
            return yaml.SafeLoader("").construct_object(node)
        except yaml.YAMLError:
            return node.value
    return node.value


def _describe(error: dict, root: tuple, model: type[BaseModel], lines: _Lines) -> str:
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
    path = (*root, *loc)
    if error["type"] == "extra_forbidden":
        valid = fields_at(model, loc[:-1])
        hint = did_you_mean(str(loc[-1]), valid) if valid else ""
        return (f"{lines.where(path)}: unknown key {dotted(path)!r}.{hint} Valid keys here: "
                f"{', '.join(valid)}.")
    owner = section_at(model, loc[:-1])
    return f"{lines.where(path)}: {explain(error, dotted(path), owner)}."  # the words every front end uses


def validate_section(model: type[BaseModel], data: Any, root: tuple, lines: _Lines) -> BaseModel:
    """``model.model_validate(data)``, errors turned into one RecipeError naming every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(e, root, model, lines) for e in exc.errors()]
        raise RecipeError("Invalid recipe — " + " | ".join(problems)) from None


def _parse_step(item: Any, path: tuple, lines: _Lines, task: tuple[str, str] = ("image", "")) -> StepSpec:
    """One step of the recipe's task (``task`` = (name, why: the key that decided it))."""
    from torchslim.data.registry import datasets_of
    from torchslim.pipeline.tasks import TASKS

    kind, why = task
    steps = TASKS.get(kind).steps
    if isinstance(item, str):  # "- load" without parameters
        item = {item: None}
    if not isinstance(item, dict) or len(item) != 1:
        raise RecipeError(
            f"{lines.where(path)}: {dotted(path)} must be one step written as `- <step>: {{parameters}}` "
            f"({kind} steps: {', '.join(steps.list())}); got {json.dumps(item, default=str)}.")
    (name, params), = item.items()
    others = [TASKS.get(t) for t in TASKS.list() if t != kind]
    owner = next((t for t in others if name in t.steps), None)
    if name not in steps and owner is not None:
        raise RecipeError(
            f"{lines.where(path)}: step {name!r} at {dotted(path)} is {_a(owner.name)} step, but this is {_a(kind)} "
            f"recipe ({why}). {kind.capitalize()} steps: {', '.join(steps.list())}. {owner.name.capitalize()} steps "
            f"need a dataset of that task (data.name: {', '.join(datasets_of(owner.name))}).")
    if name not in steps:
        raise RecipeError(f"{lines.where(path)}: unknown step {name!r} at {dotted(path)}."
                          f"{did_you_mean(str(name), steps.list())} {kind.capitalize()} steps: "
                          f"{', '.join(steps.list())}.")
    step = steps.get(name)
    params = step.shorthand(params) if params is None or not isinstance(params, dict) else params
    try:
        validated = validate_section(step.Params, params, (*path, name), lines)
    except RecipeError as exc:
        fits = next((t for t in others if name in t.steps and _valid(t.steps.get(name).Params, params)), None)
        if fits is None:
            raise
        raise RecipeError(f"{exc} (These are the parameters of the {fits.name} step {name!r}; this is {_a(kind)} "
                          f"recipe: {why}.)") from None
    return StepSpec(name=name, params=validated, where=lines.where(path))


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _valid(model: type[BaseModel], data: Any) -> bool:
    try:
        model.model_validate(data)
    except ValidationError:
        return False
    return True


def _task(data: dict, lines: _Lines) -> tuple[str, str]:
    """The recipe's task and why: ``task:`` when given (checked against the dataset), else the task
    its dataset declares (an unknown dataset is judged later, with the valid names)."""
    from torchslim.data.registry import DATASETS, dataset_task, datasets_of
    from torchslim.pipeline.tasks import TASKS

    section = data.get("data")
    name = section.get("name") if isinstance(section, dict) else None
    name = DataConfig.model_fields["name"].default if name is None else name
    inferred = dataset_task(name) if isinstance(name, str) and name in DATASETS else "image"
    given = data.get("task")
    if given is None:
        return inferred, f"data.name {name!r}"
    where = lines.where(("task",))
    if given not in TASKS:
        raise RecipeError(f"{where}: task = {json.dumps(given, default=str)} is invalid: a recipe's task is one of "
                          f"{', '.join(repr(t) for t in TASKS.list())}.")
    if given != inferred:
        raise RecipeError(f"{where}: task {given!r} does not fit data.name {name!r}, a dataset of the {inferred} task; "
                          f"drop `task:` or use a {given} dataset ({', '.join(datasets_of(given)) or 'none registered'}).")
    return given, f"task: {given}"


def parse(data: Any, source: str = "<recipe>", text: str | None = None, node: yaml.Node | None = None) -> Recipe:
    """Validate the already-loaded YAML/JSON mapping ``data`` into a :class:`Recipe`.

    ``text`` (the YAML it was read from) or ``node`` (its node graph) give messages their lines.
    """
    from torchslim.pipeline.recipe_checks import check_sequence, check_strategy_name

    if node is None and text:
        node = read_yaml(text, source)[1]
    lines = _Lines(node, source)
    bad = non_finite(data)
    if bad is not None:
        raise RecipeError(f"{lines.where(bad[0])}: {dotted(bad[0])} = {bad[1]} is not a finite number; every number "
                          "in a recipe is finite (no .nan, .inf or -.inf).")
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a mapping with keys version, name, teacher, data, "
                          f"strategies, ...; got {type(data).__name__}.")
    data = dict(data)
    version = data.get("version", VERSION)
    if version != VERSION:
        raise RecipeError(f"{lines.where(('version',))}: recipe version {version!r} is not supported; "
                          f"this torchslim reads version {VERSION}.")
    raw = data.pop("strategies", None)
    pipeline = data.pop("pipeline", None)
    if raw is None and pipeline is None:
        raise RecipeError(f"{source}: the recipe has no `strategies:` (a mapping of name to steps) "
                          "and no `pipeline:` (one list of steps).")
    if raw is not None and pipeline is not None:
        raise RecipeError(f"{source}: give either `strategies:` or `pipeline:`, not both.")
    if pipeline is not None:
        raw, root = {str(data.get("name", "pipeline")): pipeline}, ("pipeline",)
    else:
        root = ("strategies",)
    if not isinstance(raw, dict):
        raise RecipeError(f"{lines.where(root)}: `strategies` must map a strategy name to its list of "
                          f"steps; got {type(raw).__name__}.")
    task = _task(data, lines)
    data["task"] = task[0]
    strategies: dict[str, list[StepSpec]] = {}
    for name, steps in raw.items():
        path = root if pipeline is not None else (*root, name)
        check_strategy_name(name, ("name",) if pipeline is not None else path, lines)
        if not isinstance(steps, list) or not steps:
            raise RecipeError(f"{lines.where(path)}: {dotted(path)} must be a non-empty list of steps; "
                              f"got {json.dumps(steps, default=str)}.")
        strategies[str(name)] = [_parse_step(item, (*path, i), lines, task) for i, item in enumerate(steps)]
        check_sequence(str(name), strategies[str(name)], path, lines, task[0])
    data["strategies"], data["source"] = strategies, source
    recipe = validate_section(Recipe, data, (), lines)
    _check_task_sections(recipe, lines)
    recipe._lines = lines
    return recipe


def _check_task_sections(recipe: Recipe, lines: _Lines) -> None:
    """Sections only another task reads are refused; then the task's own checks."""
    from torchslim.pipeline.tasks import TASKS

    task = TASKS.get(recipe.task)
    foreign = {section for other in TASKS.list() for section in TASKS.get(other).sections} - task.sections
    for section in sorted(foreign & recipe.model_fields_set):
        raise RecipeError(f"{lines.where((section,))}: the `{section}:` section configures recipes of another task, but "
                          f"this is {_a(recipe.task)} recipe (data.name {recipe.data.name!r}); drop it, or use a dataset "
                          "of that task.")
    task.check_recipe(recipe, lines)
    if recipe.search is not None:
        from torchslim.pipeline.recipe_checks import check_recipe_search

        check_recipe_search(recipe, lines)


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate the recipe at ``path``.

    Raises:
        RecipeError: the file is missing, over 1 MiB, not UTF-8, not valid YAML, beyond the YAML limits
            (duplicate keys, alias expansion, nesting: :mod:`torchslim.pipeline.recipe_yaml`), or does
            not validate (the message names every bad key or value with its path and line).
    """
    path = Path(path)
    if not path.is_file():
        what = "a directory" if path.is_dir() else "no such file"
        raise RecipeError(f"No recipe at {path} ({what}); a recipe is a YAML file, and the shipped ones are in the "
                          "repository's recipes/ folder.")
    data, node = read_yaml(read_text(path), str(path))
    return parse(data, str(path), node=node)


__all__ = ["TARGETS", "DataConfig", "MeasureConfig", "QuickConfig", "Recipe", "RecipeError", "ScenarioConfig",
           "StepSpec", "TextConfig", "VERSION", "digest", "load_recipe", "parse", "validate_section"]
