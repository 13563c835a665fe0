"""Reading a recipe's YAML with limits: a recipe is small, plain data, and is read as such.

YAML allows things no recipe needs and that turn a typo or a hostile file into a hang or a
traceback: aliases that expand exponentially ("billion laughs"), aliases that refer to themselves,
nesting thousands of levels deep, a key given twice (the first silently lost), bytes that are not
UTF-8. :func:`read_yaml` refuses each of them with the file, the line and the limit, before
anything is built from the document. The limits are far above what a real recipe uses.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from torchslim.core.errors import TorchSlimError

MAX_BYTES = 1 << 20  # 1 MiB: the shipped recipes are ~3 KB
MAX_DEPTH = 50  # nesting levels of mappings and lists
MAX_ALIAS_NODES = 10_000  # YAML nodes reached through aliases (*name), counted as expanded


class RecipeError(TorchSlimError):
    """A recipe that does not parse or validate; the message names the path, value and line."""


def read_text(path: Path) -> str:
    """The recipe file's text: at most :data:`MAX_BYTES`, UTF-8 (the bad byte's offset and line named)."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise RecipeError(f"{path} is {size:,} bytes; a recipe may be at most 1 MiB ({MAX_BYTES:,} bytes). "
                          "Is this the right file?")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise RecipeError(f"{path}:{line}: the recipe is not UTF-8 text: byte 0x{raw[exc.start]:02x} at byte offset "
                          f"{exc.start} ({exc.reason}). Save the file as UTF-8.") from None


class _Loader(yaml.SafeLoader):
    """``SafeLoader`` whose composer stops at :data:`MAX_DEPTH` levels (PyYAML composes
    recursively, so a deeper document would end in a RecursionError)."""

    source = "<recipe>"
    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise RecipeError(f"{self.source}:{mark.line + 1}: the recipe nests deeper than {MAX_DEPTH} levels "
                                  "of mappings and lists; a recipe is at most that deep.")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def compose(text: str, source: str) -> yaml.Node | None:
    """The YAML node graph of ``text`` (aliases are shared nodes, not yet expanded)."""
    loader = _Loader(text)
    loader.source = source
    try:
        return loader.get_single_node()
    except yaml.YAMLError as exc:
        raise RecipeError(f"{source} is not valid YAML: {exc}") from None
    finally:
        loader.dispose()


class _Walk:
    """One pass over the node graph as it would expand: cycles, alias growth, depth, duplicate keys."""

    def __init__(self, source: str) -> None:
        self.source, self.seen, self.through_alias = source, set(), 0

    def at(self, node: yaml.Node) -> str:
        return f"{self.source}:{node.start_mark.line + 1}"

    def visit(self, node: yaml.Node, stack: tuple[int, ...] = (), aliased: bool = False) -> None:
        if id(node) in stack:
            raise RecipeError(f"{self.at(node)}: an alias refers to the node that contains it (a self-referencing "
                              "structure); a recipe is a tree, not a cycle.")
        aliased = aliased or id(node) in self.seen  # met before: this visit is an alias expansion
        self.seen.add(id(node))
        if aliased:
            self.through_alias += 1
            if self.through_alias > MAX_ALIAS_NODES:
                raise RecipeError(f"{self.at(node)}: aliases (*name) expand to more than {MAX_ALIAS_NODES:,} nodes; "
                                  "a recipe reuses a few sections, it does not multiply them.")
        if len(stack) >= MAX_DEPTH:
            raise RecipeError(f"{self.at(node)}: the recipe nests deeper than {MAX_DEPTH} levels (through aliases); "
                              "a recipe is at most that deep.")
        stack = (*stack, id(node))
        if isinstance(node, yaml.MappingNode):
            self._unique_keys(node)
            for key, value in node.value:
                self.visit(key, stack, aliased)
                self.visit(value, stack, aliased)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                self.visit(item, stack, aliased)

    def _unique_keys(self, node: yaml.MappingNode) -> None:
        first: dict[str, yaml.Node] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` merges are meant to be overridden by the keys beside them
            if key.value in first:
                raise RecipeError(f"{self.at(key)}: key {key.value!r} is given twice in one mapping (first at line "
                                  f"{first[key.value].start_mark.line + 1}, again at line {key.start_mark.line + 1}); "
                                  "YAML would silently keep only the last. Remove or rename one.")
            first[key.value] = key


def check_nodes(node: yaml.Node | None, source: str) -> None:
    """Raises RecipeError for a cycle, too much alias expansion, too deep nesting or a duplicate key."""
    if node is not None:
        _Walk(source).visit(node)


def construct(node: yaml.Node | None, source: str) -> Any:
    """The plain Python data of a checked node graph (``safe_load`` semantics: no code runs)."""
    if node is None:
        return None
    loader = _Loader("")
    try:
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{source} is not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def dotted(path: tuple) -> str:
    """A key path as a recipe spells it: ``strategies.x[1].prune.ratio``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def non_finite(data: Any, path: tuple = ()) -> tuple[tuple, float] | None:
    """The first NaN or infinite number in ``data`` (its key path and value), or None.

    Checked once over the whole document: no recipe value is meaningful as NaN or infinity
    (``T: .inf`` or ``weight: .nan`` would pass every bound and end as a NaN loss)."""
    if isinstance(data, float) and not math.isfinite(data):
        return path, data
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        found = non_finite(value, (*path, key))
        if found is not None:
            return found
    return None


def read_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """``(data, node graph)`` of a recipe's text, every limit checked before any data is built."""
    node = compose(text, source)
    check_nodes(node, source)
    return construct(node, source), node


__all__ = ["MAX_ALIAS_NODES", "MAX_BYTES", "MAX_DEPTH", "RecipeError", "check_nodes", "compose", "construct",
           "non_finite", "read_text", "read_yaml"]
