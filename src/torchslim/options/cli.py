"""Command-line flags generated from a method's options class.

``add_options(parser, PruneConfig)`` adds one flag per field (``head_ratio`` -> ``--head-ratio``),
its help being the field's description, type, bounds and default. Flags default to "not given", so
the options class's own default is the only default; :func:`from_args` builds the options from the
flags that were given, through the same strict validation as a recipe, so a bad value is refused
with the same words (``--lr = -1 is invalid: Input should be greater than 0``).

How text becomes a value follows the field's type: numbers and booleans are parsed from the text,
strings and string choices are kept as written, a list takes comma-separated items
(``--ignore fc,layer4``), a mapping takes repeated ``KEY=VALUE`` (``--ratios layer1=0.3``), and a
nested structure takes YAML flow text (``--temperature '{kind: linear, start: 8, end: 2}'``);
``none`` is None where None is allowed.

A list field may name a readable syntax for its items instead: ``json_schema_extra={"cli":
{"item_parser": parse_item, "metavar": "NAME[:KEY=VALUE,...]"}}`` makes its flag repeatable,
each occurrence one item read by that torch-free function (``--losses kd:T=4,weight=0.9 --losses
ce:weight=0.1``); a ``ValueError`` it raises is refused naming the flag, and the items it returns
are validated like a recipe's.
"""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from torchslim.options.base import Options, OptionsError, bounds, explain

NONE_WORDS = ("none", "null")


def flag(name: str) -> str:
    """The flag of an option: ``head_ratio`` -> ``--head-ratio``."""
    return "--" + name.replace("_", "-")


def _args(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without ``| None``, whether None is allowed)."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        inner = members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007
        return inner, len(members) != len(typing.get_args(annotation))
    return annotation, False


def _kind(annotation: Any) -> str:
    """How the flag's text is read: scalar, text, list, mapping or yaml."""
    inner, _ = _args(annotation)
    origin = typing.get_origin(inner)
    if inner is bool:
        return "bool"
    if inner in (int, float) or inner is Any:
        return "scalar"
    if inner is str or (origin is Literal and all(isinstance(a, str) for a in typing.get_args(inner))):
        return "text"
    if origin is Literal:
        return "scalar"
    if origin is list and _kind(typing.get_args(inner)[0]) in ("scalar", "text"):
        return "list"
    if origin is dict and _kind(typing.get_args(inner)[1]) in ("scalar", "text"):
        return "mapping"
    return "yaml"


def _scalar(text: str) -> Any:
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    lowered = text.strip().lower()
    if lowered in ("true", "yes"):
        return True
    if lowered in ("false", "no"):
        return False
    return text


def _convert(annotation: Any, raw: Any) -> Any:
    """The value of one flag's text(s), before validation (which judges it)."""
    inner, optional = _args(annotation)
    if optional and isinstance(raw, str) and raw.strip().lower() in NONE_WORDS:
        return None
    kind = _kind(annotation)
    if kind == "scalar":
        return _scalar(raw)
    if kind == "list":
        item = typing.get_args(inner)[0]
        return [_convert(item, part.strip()) for part in raw.split(",") if part.strip()]
    if kind == "mapping":
        value_type, out = typing.get_args(inner)[1], {}
        for pair in raw:  # repeated KEY=VALUE
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise OptionsError(f"expected KEY=VALUE, got {pair!r}")
            out[key.strip()] = _convert(value_type, value.strip())
        return out
    if kind == "yaml":
        import yaml

        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise OptionsError(f"expected YAML flow text such as [{{name: kd, T: 4}}], got {raw!r} ({exc})") from None
    return raw


def describe_type(annotation: Any) -> str:
    """A short human name of a field's type: ``float``, ``sgd|adamw``, ``list of str``."""
    inner, optional = _args(annotation)
    origin = typing.get_origin(inner)
    if origin is Literal:
        text = "|".join(str(a) for a in typing.get_args(inner))
    elif origin is list:
        text = f"list of {describe_type(typing.get_args(inner)[0])}"
    elif origin is dict:
        key, value = typing.get_args(inner)
        text = f"mapping {describe_type(key)} -> {describe_type(value)}"
    elif isinstance(inner, type):
        text = inner.__name__
    else:
        text = str(inner).replace("typing.", "")
    return f"{text} or none" if optional else text


def default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        value = [v.model_dump(mode="json", exclude_defaults=True) for v in value]
    return "none" if value is None else str(value)


def _help(info: FieldInfo) -> str:
    description = (info.description or "").strip().rstrip(".")
    facts = [describe_type(info.annotation)]
    if text := bounds(info):
        facts.append(text)
    facts.append(f"default: {default_text(info)}")
    return f"{description} [{'; '.join(facts)}]".replace("%", "%%")


def add_options(parser: argparse.ArgumentParser | Any, options: type[Options], *,
                exclude: tuple[str, ...] = (), title: str | None = None) -> None:
    """Add a flag for every field of ``options`` (but ``exclude``) to ``parser``, in a group."""
    group = parser.add_argument_group(title or f"{options.__name__} options")
    for name, info in options.model_fields.items():
        if name in exclude:
            continue
        kind = _kind(info.annotation)
        common = {"dest": name, "help": _help(info), "default": argparse.SUPPRESS}
        if kind == "bool":
            group.add_argument(flag(name), action=argparse.BooleanOptionalAction, **common)
            continue
        if kind == "mapping":
            group.add_argument(flag(name), action="append", metavar="KEY=VALUE", **common)
            continue
        if hook := _cli_hook(info):  # one item per occurrence, in the field's own syntax
            common["help"] = common["help"].removesuffix("]") + "; repeat the flag for several]"
            group.add_argument(flag(name), action="append", metavar=hook.get("metavar", name.upper()), **common)
            continue
        group.add_argument(flag(name), metavar=_metavar(name, info), required=info.is_required(),
                           **common)


def _cli_hook(info: FieldInfo) -> dict[str, Any]:
    """The field's ``json_schema_extra["cli"]`` settings (see the module docstring), or {}."""
    extra = info.json_schema_extra
    return dict(extra.get("cli") or {}) if isinstance(extra, dict) else {}


def _item_parser(info: FieldInfo) -> Any:
    """The field's ``item_parser`` (a torch-free function: one flag's text -> one item), or None."""
    return _cli_hook(info).get("item_parser")


def _metavar(name: str, info: FieldInfo) -> str:
    inner, _ = _args(info.annotation)
    if typing.get_origin(inner) is Literal:
        return "{" + ",".join(str(a) for a in typing.get_args(inner)) + "}"
    return name.upper()


def given(options: type[Options], args: argparse.Namespace, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The values of the flags of ``options`` that were given on the command line (converted, not
    yet validated)."""
    out = {}
    for name, info in options.model_fields.items():
        if name in exclude or not hasattr(args, name):
            continue
        try:
            parse = _item_parser(info)
            out[name] = [parse(text) for text in getattr(args, name)] if parse else \
                _convert(info.annotation, getattr(args, name))
        except (OptionsError, ValueError) as exc:
            raise OptionsError(f"{flag(name)}: {exc}") from None
    return out


def from_args(options: type[Options], args: argparse.Namespace, *, exclude: tuple[str, ...] = (),
              **fixed: Any) -> Any:
    """The options from the given flags (plus ``fixed`` values the command decides), validated the
    way a recipe is; a bad value raises :class:`OptionsError` naming its flag."""
    values = {**given(options, args, exclude), **fixed}
    try:
        return options.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = error["loc"]
            name = flag(str(loc[0])) + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:]) \
                if loc else "(options)"
            problems.append(explain(error, name, options))
        raise OptionsError("; ".join(problems) + ".") from None


__all__ = ["add_options", "bounds", "default_text", "describe_type", "flag", "from_args", "given"]
