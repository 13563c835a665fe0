"""Checks of a recipe's strategies that need more than one key: names that become folder names
and the order of steps (a loss's typed options are checked by the step's ``LossItem`` itself); and
the section a validation error points into, for the valid-keys hint of its message.

Each raises :class:`RecipeError` naming the value, the strategy, ``file:line`` and what is valid,
while the recipe is parsed (before anything runs or is written).
"""

from __future__ import annotations

import re
from typing import Any, get_args

from pydantic import BaseModel

from torchslim.pipeline.recipe_yaml import RecipeError

# A strategy's name is a file name (OUT/strategies/<name>.json): letters, digits, '.', '_', '-',
# starting with a letter or digit, so it can never climb out of OUT ('..', '/') or hide ('.x').
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"
MAX_NAME = 100


def safe_name(name: Any) -> bool:
    """Whether ``name`` (a string, or an integer YAML key) is a safe strategy name."""
    text = str(name) if isinstance(name, (str, int)) and not isinstance(name, bool) else None
    return text is not None and bool(re.fullmatch(NAME_PATTERN, text)) and ".." not in text and len(text) <= MAX_NAME


def check_strategy_name(name: Any, path: tuple, lines: Any) -> None:
    """Raises unless ``name`` is a safe strategy name (:data:`NAME_PATTERN`, no ``..``, <= 100 chars)."""
    if safe_name(name):
        return
    raise RecipeError(f"{lines.where(path)}: strategy name {name!r} is not allowed: a strategy's name becomes a file "
                      f"name in the output directory, so it must match {NAME_PATTERN} (letters, digits, '.', '_', "
                      f"'-'; starting with a letter or digit), contain no '..' and be at most {MAX_NAME} "
                      "characters, e.g. student-distilled.")


def check_sequence(strategy: str, specs: list, path: tuple, lines: Any, task: str) -> None:
    """Each step gets the input it takes: nothing for a step that starts a model, a torch model for
    one that transforms it, a model of either kind for ``evaluate``."""
    from torchslim.pipeline.tasks import TASKS

    owner = TASKS.get(task)
    registry, start = owner.steps, owner.start_hint
    have, made_by = "nothing", ""
    for i, spec in enumerate(specs):
        step = registry.get(spec.name)()
        need = step.needs(spec.params)
        where = f"{lines.where((*path, i))}: strategy {strategy!r}, step {i + 1} ({spec.name})"
        if need == "nothing" and have != "nothing":
            raise RecipeError(f"{where} starts a new model, but step {made_by} already made one. "
                              f"{step.restart_hint}")
        if need in ("module", "any") and have == "nothing":
            raise RecipeError(f"{where} needs a model from an earlier step; start the strategy with {start}.")
        if need == "module" and have == "onnx":
            raise RecipeError(f"{where} needs a torch model, but step {made_by} produced an ONNX file; put "
                              f"{spec.name!r} before `quantize`/`export`.")
        made = step.makes
        if made != "same":
            have, made_by = made, f"{i + 1} ({spec.name})"


def check_recipe_search(recipe: Any, lines: Any) -> None:
    """A parsed recipe's ``search:`` section against the step configs, at the line of the bad key
    (a search runs image recipes).

    Raises:
        RecipeError: a text recipe with a search section, or the space's first problem.
    """
    from torchslim.pipeline.recipe_yaml import RecipeError
    from torchslim.pipeline.search_space import SpaceError, build_space

    if recipe.task != "image":
        kind = "an" if recipe.task[:1] in "aeiou" else "a"
        raise RecipeError(f"{lines.where(('search',))}: `search:` searches image recipes; this is {kind} {recipe.task} "
                          "recipe.")
    cfg = recipe.search
    try:
        build_space(cfg.space, cfg.fixed)
    except SpaceError as exc:
        key = next((k for k in (cfg.space or {}) if str(exc).startswith(str(k)) or repr(str(k)) in str(exc)), None)
        path = ("search", "space", key) if key is not None else ("search", "fixed" if str(exc).startswith("fixed") else "space")
        text = str(exc).rstrip(".")
        raise RecipeError(f"{lines.where(path)}: search space: {text}{'' if text.endswith('?') else '.'}") from None


__all__ = ["check_recipe_search", "MAX_NAME", "NAME_PATTERN", "check_sequence", "check_strategy_name", "safe_name"]


# -- which section a validation error points into (for the valid-keys hint) --------------------------


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The section classes an annotation holds: itself, or inside ``X | None``, ``dict[str, X]``,
    ``list[X]`` and unions."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def fields_at(model: type[BaseModel], path: tuple) -> list[str]:
    """The valid keys of the section ``path`` points into (for the closest-name hint). A part that is
    no field is a mapping's key (a search dimension) or the union member pydantic names: the
    section is then the value type gathered so far, or that member."""
    current: list[type[BaseModel]] = [model]
    for part in path:
        if isinstance(part, int):
            continue
        named = [c for c in current if c.__name__ == part]
        fields = [c.model_fields[part] for c in current if part in c.model_fields]
        if named:
            current = named
        elif fields:
            current = [m for f in fields for m in _models_in(f.annotation)]
    return list(dict.fromkeys(name for c in current for name in c.model_fields))


def section_at(model: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The model class of the section ``path`` points into (None past a list or a plain value)."""
    current: Any = model
    for part in path:
        field = current.model_fields.get(part) if isinstance(part, str) else None
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        current = annotation
    return current
