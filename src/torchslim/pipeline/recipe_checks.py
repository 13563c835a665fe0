"""Checks of a recipe's strategies that need more than one key: names that become folder names
and the order of steps (a loss's typed options are checked by the step's ``LossItem`` itself).

Each raises :class:`RecipeError` naming the value, the strategy, ``file:line`` and what is valid,
while the recipe is parsed (before anything runs or is written).
"""

from __future__ import annotations

import re
from typing import Any

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
