"""The base of every method's options: one pydantic model per method is the only definition.

A method's options class (``FitConfig``, ``PruneConfig``, ...) is what the library function takes,
what a recipe step *is*, what ``torchslim COMMAND`` flags are generated from
(:mod:`torchslim.options.cli`) and what the reference tables are generated from
(:mod:`torchslim.options.docs`). Each field carries its type, bounds, default and a one-line
description (the docstring under the field), so adding an option to a method is one edit.

Validation is strict everywhere (no silent coercion, no NaN or infinity, unknown keys refused), and
a bad value gets the same words from every front end: :func:`explain` writes the part after the
place (``lr = -1 is invalid: Input should be greater than 0``); a recipe puts ``file:line`` before
it, the CLI the flag, the library the function's name.

This module imports no torch: ``torchslim --help`` builds every flag from these classes.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from torchslim.core.errors import TorchSlimError
from torchslim.core.registry import did_you_mean

T = TypeVar("T", bound="Options")


# pydantic error kinds that do not state the field's bounds themselves
NOT_BOUND_ERRORS = {"finite_number", "int_parsing", "float_parsing", "int_type", "float_type", "int_from_float"}


class OptionsError(TorchSlimError):
    """A method's option was given a bad value (or an unknown option was given)."""


class Options(BaseModel):
    """Strict, frozen options: unknown keys are errors, values are not coerced silently, and no
    number is NaN or infinite. Subclasses document each field with a docstring under it."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False,
                              use_attribute_docstrings=True)

    @classmethod
    def build(cls: type[T], where: str, values: dict[str, Any]) -> T:
        """The options from keyword arguments, every bad one named in one :class:`OptionsError`.

        ``where`` says who was called (``"prune.channels"``); it starts the message.
        """
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = [explain(e, _dotted(e["loc"]), cls) for e in exc.errors()]
            raise OptionsError(f"{where}: " + "; ".join(problems) + ".") from None

    def changed(self) -> dict[str, Any]:
        """The fields set to something other than their default (plain JSON values)."""
        dumped = self.model_dump(mode="json")
        defaults = {k: f.get_default(call_default_factory=True) for k, f in type(self).model_fields.items()
                    if not f.is_required()}
        return {k: v for k, v in dumped.items()
                if k not in defaults or json.dumps(defaults[k], default=str) != json.dumps(v, default=str)}


def bounds(info: FieldInfo) -> str:
    """The field's numeric bounds as text (``> 0``, ``>= 0, < 1``), or ""."""
    words = []
    for item in info.metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            value = getattr(item, attr, None)
            if value is not None:
                words.append(f"{sign} {value:g}" if isinstance(value, float) else f"{sign} {value}")
        if getattr(item, "min_length", None):
            words.append(f"at least {item.min_length} item(s)")
    return ", ".join(words)


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, str) and ("[" in part or part.startswith("function-")):
            continue  # pydantic's union-member and validator markers are not places a user wrote
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(options)"


def shown(value: Any) -> str:
    """A value as a message shows it: JSON for plain data, "a mapping" for a dict."""
    return "a mapping" if isinstance(value, dict) else json.dumps(value, default=str)


def explain(error: dict[str, Any], name: str, model: type[BaseModel] | None = None) -> str:
    """One pydantic error in the words every front end uses, ``name`` being the option as the user
    wrote it there (a recipe key path, a ``--flag``, a keyword argument)."""
    kind = error["type"]
    if kind == "extra_forbidden":
        valid = list(model.model_fields) if model is not None else []
        leaf = name.rsplit(".", 1)[-1].lstrip("-")
        hint = did_you_mean(leaf, valid) if valid else ""
        return f"unknown option {name!r}.{hint}" + (f" Valid: {', '.join(valid)}" if valid else "")
    if kind == "missing":
        return f"{name} is required"
    message = error["msg"].removeprefix("Value error, ").rstrip(".")
    if kind == "literal_error" and isinstance(error.get("input"), str):
        choices = re.findall(r"'([^']*)'", str((error.get("ctx") or {}).get("expected", "")))
        hint = did_you_mean(error["input"], choices).strip().rstrip("?")
        message += f" ({hint[:1].lower() + hint[1:]})" if hint else ""  # the name keeps its case
    if name == "(options)":
        return message  # a check of several options together: its message names them
    leaf = error["loc"][-1] if error["loc"] else None
    field = model.model_fields.get(leaf) if model is not None and isinstance(leaf, str) else None
    if field is not None and kind in NOT_BOUND_ERRORS and bounds(field):
        message += f" (valid: {bounds(field)})"  # a value that is not a number: say what numbers are valid
    return f"{name} = {shown(error.get('input'))} is invalid: {message}"


__all__ = ["Options", "OptionsError", "bounds", "explain", "shown"]
