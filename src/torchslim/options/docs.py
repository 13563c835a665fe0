"""Reference tables generated from the options classes (the documentation site renders them)."""

from __future__ import annotations

from torchslim.options.base import Options
from torchslim.options.cli import bounds, default_text, describe_type, flag


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def options_table(options: type[Options], *, cli: bool = True) -> str:
    """A Markdown table of every field of ``options``: recipe key, CLI flag, type, valid values,
    default and description."""
    head = ["key"] + (["flag"] if cli else []) + ["type", "valid", "default", "description"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, info in options.model_fields.items():
        row = [f"`{name}`"] + ([f"`{flag(name)}`"] if cli else [])
        row += [_cell(describe_type(info.annotation)), _cell(bounds(info)), _cell(f"`{default_text(info)}`"),
                _cell((info.description or "").strip())]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["options_table"]
