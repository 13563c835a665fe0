"""Every method's options class is the one definition its three front ends derive from.

Walks every registered pipeline step of every task and every ``torchslim`` command that declares an
options class, and proves: each field is documented; each is settable from a recipe and from the
CLI under the same name with the same type, bound and default; and a bad value is refused by the
recipe, the CLI and the library with the same words (:func:`torchslim.options.explain`). A new
method or a new option is covered the moment it is registered.
"""

from __future__ import annotations

import argparse
import re
import typing
from typing import Any, Literal

import pytest
from pydantic.fields import FieldInfo

from torchslim.cli import build_parser
from torchslim.core.errors import TorchSlimError
from torchslim.options import Options
from torchslim.options.cli import _args, default_text, flag, from_args
from torchslim.pipeline.recipe import RecipeError, _Lines, validate_section
from torchslim.pipeline.steps import STEPS, TEXT_STEPS

# Steps whose options have no command of their own, and why.
RECIPE_ONLY = {
    "load": "it names a recipe source; every command takes its model as the positional SOURCE",
    "evaluate": "`torchslim eval` measures on every split and target; the step picks one split",
}


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = {}
    for name, command in sub.choices.items():
        for group in getattr(command, "_subparsers", None) and [
                a for a in command._actions if isinstance(a, argparse._SubParsersAction)] or []:
            for inner, sub_command in group.choices.items():
                out[f"{name} {inner}"] = sub_command
        out[name] = command
    return out


COMMANDS = _commands()
OPTIONED = {name: p.get_default("options") for name, p in COMMANDS.items()
            if isinstance(p.get_default("options"), type) and issubclass(p.get_default("options"), Options)}
METHODS = [(task, name, registry.get(name)) for task, registry in (("image", STEPS), ("text", TEXT_STEPS))
           for name in registry.list()]


def _command_for(params: type[Options]) -> str | None:
    """The command whose options class is ``params`` (or whose class ``params`` specialises)."""
    exact = [name for name, cls in OPTIONED.items() if cls is params]
    if exact:
        return exact[0]
    return None


@pytest.mark.parametrize(("task", "name", "step"), METHODS, ids=[f"{t}-{n}" for t, n, _ in METHODS])
def test_every_step_is_an_options_class_with_every_field_documented(task, name, step):
    assert issubclass(step.Params, Options), f"{task} step {name!r}: Params must derive from Options"
    missing = [f for f, info in step.Params.model_fields.items() if not (info.description or "").strip()]
    assert not missing, f"{task} step {name!r}: fields without a description: {missing}"
    assert (step.__doc__ or "").strip(), f"{task} step {name!r} has no docstring"


@pytest.mark.parametrize(("task", "name", "step"), METHODS, ids=[f"{t}-{n}" for t, n, _ in METHODS])
def test_every_method_has_a_command_or_a_reason(task, name, step):
    if name in RECIPE_ONLY and task == "image" or (task == "text" and name in ("load", "evaluate")):
        return
    assert _command_for(step.Params), (
        f"{task} step {name!r} ({step.Params.__name__}) has no `torchslim` command whose options are that class; "
        f"commands with options: { {k: v.__name__ for k, v in OPTIONED.items()} }")


def _valid(info: FieldInfo) -> Any:
    """A value the field accepts (for required fields of a baseline)."""
    inner, _ = _args(info.annotation)
    if typing.get_origin(inner) is Literal:
        return typing.get_args(inner)[0]
    low = next((getattr(m, a) for m in info.metadata for a in ("gt", "ge") if getattr(m, a, None) is not None), None)
    high = next((getattr(m, a) for m in info.metadata for a in ("lt", "le") if getattr(m, a, None) is not None), None)
    if inner is int:
        return max(1, int(low or 0) + 1)
    if inner is float:
        return (low + high) / 2 if low is not None and high is not None else float((low or 0) + 1)
    if inner is str:
        return "x"
    raise AssertionError(f"no valid value known for a required field of type {inner}")


def _bad(info: FieldInfo) -> list[tuple[Any, str]]:
    """(value, the same value as command-line text) pairs the field must refuse."""
    inner, _ = _args(info.annotation)
    out: list[tuple[Any, str]] = []
    if typing.get_origin(inner) is Literal and all(isinstance(a, str) for a in typing.get_args(inner)):
        out.append(("bogus-choice", "bogus-choice"))
    for item in info.metadata:
        for attr, step in (("gt", 0), ("ge", -1), ("lt", 0), ("le", 1)):
            bound = getattr(item, attr, None)
            if bound is None or inner not in (int, float):
                continue
            value = bound + step if attr in ("ge", "le") else bound
            value = int(value) if inner is int else float(value)
            out.append((value, str(value)))
    if inner is int:
        out.append(("seven", "seven"))
    return out


def _excluded(command: str) -> dict[str, str]:
    """Fields a command leaves out, each with the reason it has no meaning there."""
    return COMMANDS[command].get_default("options_exclude") or {}


def _cases() -> list[tuple[str, str, type[Options], str, Any, str]]:
    cases = []
    for command, cls in sorted(OPTIONED.items()):
        for field, info in cls.model_fields.items():
            if field in _excluded(command):
                continue
            for value, text in _bad(info):
                cases.append((command, field, cls, text, value, f"{command}-{field}-{text}"))
    return cases


CASES = _cases()


def _fill_required(command: str, argv: list[str]) -> list[str]:
    """``argv`` completed with a valid value for each other required argument of the command."""
    parser = COMMANDS[command]
    out = list(argv)
    for action in parser._actions:
        if action.required and not any(s in argv for s in action.option_strings):
            if action.option_strings:
                out += [action.option_strings[0], "1" if action.dest == "epochs" else "x"]
            else:
                out.insert(0, "x")
    return out


def _message(exc: BaseException) -> str:
    return " ".join(str(exc).split())


@pytest.mark.parametrize(("command", "field", "cls", "text", "value"), [c[:5] for c in CASES],
                         ids=[c[5] for c in CASES])
def test_a_bad_value_is_refused_with_the_same_words_everywhere(command, field, cls, text, value):
    required = {f: _valid(i) for f, i in cls.model_fields.items() if i.is_required() and f != field}
    # library: the class's own builder
    with pytest.raises(TorchSlimError) as library:
        cls.build("library", {**required, field: value})
    # recipe: the recipe parser's validation of a step's keys, with file:line
    with pytest.raises(RecipeError) as recipe:
        validate_section(cls, {**required, field: value}, ("strategies", "s", 0, "step"), _Lines(None, "r.yaml"))
    # CLI: the command's own parser, then the options built from its flags
    argv = _fill_required(command, [flag(field), text, *[x for f, v in required.items() for x in (flag(f), str(v))]])
    args = COMMANDS[command].parse_args(argv)
    with pytest.raises(TorchSlimError) as cli:
        from_args(cls, args)
    lib, rec, flg = _message(library.value), _message(recipe.value), _message(cli.value)
    core = lib.split(f"{field} ", 1)[-1] if f"{field} =" in lib else lib.split(": ", 1)[-1]
    assert core.rstrip(".") in rec, f"recipe words differ:\n library: {lib}\n recipe:  {rec}"
    assert core.rstrip(".") in flg, f"CLI words differ:\n library: {lib}\n CLI:     {flg}"
    if f"{field} =" in lib:
        assert f"{flag(field)} =" in flg, flg
        assert "r.yaml" in rec and f"step.{field} =" in rec, rec


@pytest.mark.parametrize("command", sorted(OPTIONED))
def test_every_field_is_a_flag_with_the_same_name_and_default(command):
    cls, parser = OPTIONED[command], COMMANDS[command]
    actions = {a.dest: a for a in parser._actions}
    excluded = _excluded(command)
    assert set(excluded) <= set(cls.model_fields), f"{command} leaves out fields {cls.__name__} does not have"
    assert all(len(reason) > 20 for reason in excluded.values()), f"{command}: say why each field is left out"
    for field, info in cls.model_fields.items():
        if field in excluded:
            assert field not in actions, f"{command} leaves out {field} but has a flag for it"
            continue
        assert field in actions, f"`torchslim {command}` has no flag for {cls.__name__}.{field}"
        action = actions[field]
        assert flag(field) in action.option_strings, (command, field, action.option_strings)
        assert action.default is argparse.SUPPRESS, f"{flag(field)} has its own default; the class holds it"
        assert f"default: {default_text(info)}" in (action.help or "").replace("%%", "%"), (command, field)
        assert action.required == info.is_required(), (command, field)


@pytest.mark.parametrize("command", sorted(OPTIONED))
def test_flags_not_given_mean_the_class_defaults(command):
    cls = OPTIONED[command]
    required = {f: _valid(i) for f, i in cls.model_fields.items() if i.is_required()}
    argv = _fill_required(command, [x for f, v in required.items() for x in (flag(f), str(v))])
    args = COMMANDS[command].parse_args(argv)
    try:
        expected = cls.model_validate(required)
    except ValueError as exc:  # a rule over several options that no default meets (text layers: keep or layers)
        with pytest.raises(TorchSlimError, match=re.escape(str(exc.errors()[0]["msg"]).removeprefix("Value error, "))):
            from_args(cls, args, exclude=tuple(_excluded(command)))
        return
    assert from_args(cls, args, exclude=tuple(_excluded(command))) == expected
