"""Rendering the matrix: ``matrix.md``, ``matrix.json``, ``pareto.png`` and one self-contained
``report.html`` (styles and the plot inline, nothing fetched)."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

from torchslim.core.errors import TorchSlimError
from torchslim.core.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from torchslim.report.matrix import COLUMNS, human_bytes, pareto_front, quality


def _num(value: Any, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _human(n: float | None) -> str:
    if n is None:
        return "—"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def columns(matrix: dict) -> list[tuple[str, str, str]]:
    """``(key, heading, description)`` of the matrix's columns (as saved; older files: the image ones)."""
    saved = matrix.get("columns")
    return [(c["key"], c["heading"], c["description"]) for c in saved] if saved else list(COLUMNS)


def _setting_label(key: str) -> str:
    b, t = key.split("_")
    return f"b{b[1:]}/{t[1:]}t"


def cells(row: dict, matrix: dict) -> dict[str, str]:
    """The display text of every column of ``row``."""
    if row["status"] != "ok":
        return {"strategy": row["strategy"], "steps": " → ".join(row.get("steps", [])),
                "parameters": f"FAILED: {row.get('error') or 'unknown error'}"}
    lat = " · ".join(f"{_setting_label(k)} {row['latency'][k]:.3g}" for k in matrix["settings"] if k in row["latency"])
    speed = " · ".join(f"{_setting_label(k)} {row['speedup'][k]:.2f}" for k in matrix["settings"]
                       if (row.get("speedup") or {}).get(k) is not None)
    return {
        "strategy": row["strategy"], "steps": " → ".join(row["steps"]),
        "parameters": _human(row["parameters"]), "parameters_ratio": _num(row.get("parameters_ratio"), ".2f"),
        "macs": _human(row["macs"]), "macs_ratio": _num(row.get("macs_ratio"), ".2f"),
        "bytes": human_bytes(row["bytes"]), "bytes_ratio": _num(row.get("bytes_ratio"), ".2f"),
        "accuracy": _num(row["accuracy"], ".2f"), "accuracy_delta": _num(row.get("accuracy_delta"), "+.2f"),
        "retention": _num(row.get("retention"), ".1f"), "latency": lat or "—", "speedup": speed or "—",
        "runtime": row["runtime"], "kernel": row["kernel"],
        "train_seconds": _num(row.get("train_seconds"), ".0f"), "epochs": str(row.get("epochs", "—")),
        "needs_teacher": "yes" if row.get("needs_teacher") else "no",
        "peak_memory_mb": _num(row.get("peak_memory_mb"), ".0f"),
        "mean_cosine": _num(row.get("mean_cosine"), ".4f"), "knn_overlap": _num(row.get("knn_overlap"), ".3f"),
        "sentences_per_second": " · ".join(
            f"{_setting_label(k)} {row['sentences_per_second'][k]:.0f}" for k in matrix["settings"]
            if k in (row.get("sentences_per_second") or {})) or "—",
    }


def _machine_line(matrix: dict) -> str:
    m = matrix.get("machine") or {}
    cpu = m.get("cpu") or "unknown CPU"
    flags = m.get("cpu_flags") or []
    versions = m.get("versions") or {}
    ver = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
    return (f"{cpu}; {m.get('usable_cores', '?')} usable cores; CPU features: "
            f"{', '.join(flags) or 'none detected'}; torch kernels: {m.get('torch_cpu_capability', '?')}; "
            f"Python {m.get('python', '?')}; {ver}")


def _quality_line(matrix: dict) -> str:
    """For a task whose quality is not accuracy, what the quality column holds."""
    if matrix.get("task", "image") == "image":
        return ""
    return f"Quality is not accuracy here: **{quality(matrix)['heading']}** is {quality(matrix)['description']}."


def to_markdown(matrix: dict) -> str:
    cols = columns(matrix)
    heads = [h for _, h, _ in cols]
    lines = [f"# Selection matrix — {matrix['recipe']}{' (quick)' if matrix['quick'] else ''}", "",
             f"Measured {matrix['date']} on: {_machine_line(matrix)}.", "",
             f"Data: {matrix['data']['name']}, {matrix['data']['train_samples']} training and "
             f"{matrix['data']['test_samples']} test samples. Ratios and speed-ups are against "
             f"`{matrix['baseline']}`, timed in the same run (interleaved rounds); latency is the median per "
             f"batch, `bN/Tt` = batch N on T thread(s). Whole run: {matrix['wall_seconds'] / 60:.1f} min.", "",
             *([_quality_line(matrix), ""] if _quality_line(matrix) else []),
             "| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"]
    for row in matrix["rows"]:
        c = cells(row, matrix)
        lines.append("| " + " | ".join(c.get(k, "") for k, _, _ in cols) + " |")
    lines += ["", "## Recommendations", ""]
    for rec in matrix["recommendations"].values():
        lines.append(f"- {rec['text']}")
    lines += ["", "## The rule of thumb, checked against these measurements", "",
              "| aspect | rule of thumb | verdict | evidence |", "|---|---|---|---|"]
    for cell in matrix["rule_of_thumb"]:
        lines.append(f"| {cell['aspect']} | {cell['claim']} | {cell['status']} | {cell['evidence']} |")
    notes = [f"{r['strategy']}: {n}" for r in matrix["rows"] for n in r.get("notes", [])]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    lines += ["", "## Columns", ""] + [f"- **{h}**: {d}" for _, h, d in cols]
    return "\n".join(lines) + "\n"


def pareto_png(matrix: dict) -> bytes:
    """Accuracy against primary-setting latency (log scale), marker area ~ bytes, front drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in matrix["rows"] if r["status"] == "ok" and r.get("accuracy") is not None
            and matrix["primary"] in r["latency"]]
    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=110)
    if rows:
        biggest = max(r["bytes"] for r in rows) or 1
        for r in rows:
            x, y = r["latency"][matrix["primary"]], r["accuracy"]
            size = 40 + 900 * math.sqrt(r["bytes"] / biggest)
            colour = ("tab:purple" if len(r["families"]) == 2 else "tab:blue" if r["families"] == ["structural"]
                      else "tab:green" if r["families"] == ["distillation"] else "tab:gray")
            ax.scatter([x], [y], s=size, alpha=0.55, color=colour, edgecolors="black", linewidths=0.6)
            ax.annotate(r["strategy"], (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
        front = pareto_front(rows, matrix)
        ax.plot([r["latency"][matrix["primary"]] for r in front], [r["accuracy"] for r in front],
                "--", color="black", linewidth=1, label="Pareto front")
        ax.set_xscale("log")
        ax.legend(loc="lower right", fontsize=8)
    batch, threads = matrix["primary"].split("_")
    ax.set_xlabel(f"latency per batch of {batch[1:]}, {threads[1:]} thread(s) (ms, log scale)")
    ax.set_ylabel(quality(matrix)["axis"])
    ax.set_title(f"{matrix['recipe']}: {quality(matrix)['short']} vs latency (marker area ~ bytes; blue structural, green "
                 "distilled, purple both)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;
font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 7px;text-align:right}
th{background:#f2f2f2}td:first-child,td:nth-child(2){text-align:left}.failed td{background:#fde8e8}
.confirmed{color:#176b2c;font-weight:600}.contradicted{color:#a11;font-weight:600}
.small{color:#555;font-size:12px}"""


def to_html(matrix: dict, png: bytes) -> str:
    e = html.escape
    cols = columns(matrix)
    head = "".join(f"<th title='{e(d)}'>{e(h)}</th>" for _, h, d in cols)
    body = []
    for row in matrix["rows"]:
        c = cells(row, matrix)
        cls = " class='failed'" if row["status"] != "ok" else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{e(c.get(k, ''))}</td>" for k, _, _ in cols) + "</tr>")

    def bold(text: str) -> str:
        parts = e(text).split("**")
        return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))

    recs = "".join(f"<li>{bold(r['text'])}</li>" for r in matrix["recommendations"].values())
    rules = "".join(f"<tr><td>{e(c['aspect'])}</td><td>{e(c['claim'])}</td><td class='{e(c['status'])}'>"
                    f"{e(c['status'])}</td><td>{e(c['evidence'])}</td></tr>" for c in matrix["rule_of_thumb"])
    notes = "".join(f"<li>{e(r['strategy'])}: {e(n)}</li>" for r in matrix["rows"] for n in r.get("notes", []))
    image = base64.b64encode(png).decode()
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>torchslim — {e(matrix['recipe'])}</title>
<style>{CSS}</style></head><body>
<h1>Selection matrix — {e(matrix['recipe'])}{' (quick)' if matrix['quick'] else ''}</h1>
<p class="small">Measured {e(matrix['date'])} on {e(_machine_line(matrix))}. Data: {e(matrix['data']['name'])},
{matrix['data']['train_samples']} training / {matrix['data']['test_samples']} test samples. Ratios and speed-ups
against <b>{e(matrix['baseline'])}</b>, timed in the same run; latency = median per batch (bN/Tt: batch N,
T threads). Whole run {matrix['wall_seconds'] / 60:.1f} min.</p>
{f"<p>{bold(_quality_line(matrix))}</p>" if _quality_line(matrix) else ""}
<table><tr>{head}</tr>{''.join(body)}</table>
<h2>Recommendations</h2><ul>{recs}</ul>
<img alt="accuracy vs latency" src="data:image/png;base64,{image}">
<h2>The rule of thumb, checked against these measurements</h2>
<table><tr><th>aspect</th><th>rule of thumb</th><th>verdict</th><th>evidence</th></tr>{rules}</table>
{'<h2>Notes</h2><ul>' + notes + '</ul>' if notes else ''}
<p class="small">Hover a column heading for its definition. Source data: matrix.json.</p>
</body></html>
"""


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
