"""Rendering the matrix: ``matrix.md``, ``matrix.json``, ``pareto.png`` (:mod:`.plot`) and one
self-contained ``report.html`` (:mod:`.html`: styles and the plot inline, nothing fetched), and
``torchslim report DIR``, which re-renders them from a saved ``matrix.json``.

Both documents lead with the answer (a recommendation per scenario, failures, how to load the pick,
the plot), then a compact table with its legend, then everything else folded away."""

from __future__ import annotations

import json
from pathlib import Path

from torchslim.core.errors import TorchSlimError
from torchslim.core.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from torchslim.report.html import to_html
from torchslim.report.plot import pareto_png
from torchslim.report.view import (
    MARK,
    answer,
    cells,
    columns,
    context_line,
    failures,
    headline,
    picks,
    quality_line,
    record,
    row_id,
    rule_evidence,
    runtime_gain_line,
    skipped,
    status_text,
    table_cell,
    table_columns,
    timing_line,
    timing_notes,
    title,
)


def _md_answer(matrix: dict) -> list[str]:
    lines = ["## Recommendation", "", *([headline(matrix), ""] if headline(matrix) else [])]
    for item in answer(matrix):
        tie = f" Tied within noise with: {', '.join(item['tie_untold'])}." if item["tie_untold"] else ""
        lines.append(f"- {item['text']}{tie}")
        if item["repeat"] or not (item["artifact"] or item["load"]):
            continue
        if item["artifact_untold"]:
            lines.append(f"  Artifact: `{item['artifact']}`")
        if item["load"]:
            lines += ["", "  ```python", *[f"  {line}" for line in item["load"]], "  ```"]
    if failures(matrix):
        lines += ["", "**Failed:** " + "; ".join(failures(matrix)) + "."]
    if skipped(matrix):
        lines += ["", "**Not measured:** " + "; ".join(skipped(matrix)) + "."]
    lines += [x for line in (timing_line(matrix), runtime_gain_line(matrix)) if line for x in ("", line)]
    return lines


def _md_table(matrix: dict) -> list[str]:
    cols, chosen = table_columns(matrix), picks(matrix)
    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in matrix["rows"]:
        if row["status"] != "ok":
            lines.append(f"| {row['strategy']} | {status_text(row)} |"
                         + " |" * (len(cols) - 2))
            continue
        texts = [" ".join(p for p in table_cell(row, k, matrix) if p) for k, _, _ in cols]
        if row_id(row) in chosen or row["strategy"] in chosen:
            texts[0] = f"{MARK} **{texts[0]}**"
        lines.append("| " + " | ".join(texts) + " |")
    return lines + ["", *[f"- **{h}**: {d}" for _, h, d in cols]]


def to_markdown(matrix: dict) -> str:
    """``matrix.md``: the answer first (recommendations, failures, the plot), then the compact
    table with its legend, the rule of thumb, and every row's full record folded."""
    lines = [f"# {title(matrix)}", "", *_md_answer(matrix), "", "![accuracy vs latency](pareto.png)", "",
             "## Measurements", "", context_line(matrix), "",
             *([quality_line(matrix), ""] if quality_line(matrix) else []), *_md_table(matrix),
             "", "## The rule of thumb, checked against these measurements", "",
             "| aspect | rule of thumb | verdict | evidence |", "|---|---|---|---|"]
    for cell in matrix["rule_of_thumb"]:
        lines.append(f"| {cell['aspect']} | {cell['claim']} | {cell['status']} | {rule_evidence(cell)} |")
    if timing_notes(matrix):
        lines += ["", "<details><summary>Timing notes</summary>", "", *[f"- {n}" for n in timing_notes(matrix)],
                  "", "</details>"]
    lines += ["", "## Full record per row", ""]
    for row in matrix["rows"]:
        lines += [f"<details><summary>{row_id(row)}</summary>", ""]
        for h, v, d in record(row, matrix):
            if h == "load":
                lines += [f"- **{h}** ({d}):", "", "  ```python", *[f"  {x}" for x in v.splitlines()], "  ```", ""]
            else:
                lines.append(f"- **{h}**: {v}" + (f" — {d}" if d else ""))
        lines += ["", "</details>", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_report(matrix: dict, out: str | Path) -> None:
    """Write matrix.json, matrix.md, pareto.png and report.html into ``out`` (atomically each).

    Everything is rendered before the first file is written, so a matrix that does not render
    leaves the previous report files as they were."""
    out = Path(out)
    png = pareto_png(matrix)
    markdown, page = to_markdown(matrix), to_html(matrix, png)
    atomic_write_json(out / "matrix.json", matrix)
    atomic_write_text(out / "matrix.md", markdown)
    atomic_write_bytes(out / "pareto.png", png)
    atomic_write_text(out / "report.html", page)


# What a matrix must hold to be rendered: key -> (type, what it is), checked before rendering.
_SHAPE = {"rows": (list, "a list of rows"), "settings": (list, "a list of latency settings such as b64_t1"),
          "primary": (str, "the latency setting ranked on, such as b64_t1"),
          "recommendations": (dict, "a mapping of scenario to recommendation"),
          "rule_of_thumb": (list, "a list of rule-of-thumb cells")}
_ROW = {"strategy": str, "status": str}


def _read_matrix(path: Path) -> dict:
    try:
        matrix = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TorchSlimError(f"{path} is not valid JSON ({exc}); run the comparison again.") from None
    if not isinstance(matrix, dict):
        raise TorchSlimError(f"{path} holds a JSON {type(matrix).__name__}, not a torchslim matrix (an object with "
                             f"{', '.join(_SHAPE)}); run the comparison again.")
    missing = [k for k in _SHAPE if k not in matrix]
    if missing:
        raise TorchSlimError(f"{path} is not a torchslim matrix (missing {', '.join(missing)}); run the comparison "
                             "again.")
    for key, (kind, what) in _SHAPE.items():
        if not isinstance(matrix[key], kind):
            raise TorchSlimError(f"{path}: {key} = {json.dumps(matrix[key])[:80]} is not {what}.")
    for i, row in enumerate(matrix["rows"]):
        bad = [k for k, kind in _ROW.items() if not isinstance(row, dict) or not isinstance(row.get(k), kind)]
        if bad:
            raise TorchSlimError(f"{path}: rows[{i}] = {json.dumps(row)[:80]} is not a matrix row (it needs "
                                 f"{', '.join(_ROW)} as strings).")
    return matrix


def rerender(out: str | Path) -> dict:
    """``torchslim report DIR``: rebuild every report file from ``DIR/matrix.json``.

    Raises:
        TorchSlimError: no ``DIR/matrix.json``, or one that is not a matrix this torchslim renders
            (the message names the file and the key); no report file is touched then.
    """
    path = Path(out) / "matrix.json"
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise TorchSlimError(f"No matrix at {path} ({what}): give the --out directory of `torchslim compare "
                             f"RECIPE --out {out}`.")
    matrix = _read_matrix(path)
    try:
        write_report(matrix, out)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        if isinstance(exc, TorchSlimError):
            raise
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise TorchSlimError(f"{path} does not render as a torchslim matrix ({detail}); it was written by another "
                             "version or edited. Run the comparison again.") from None
    return matrix


__all__ = ["cells", "columns", "pareto_png", "rerender", "to_html", "to_markdown", "write_report"]
