"""What the report shows, read from a saved matrix: the answer (one recommendation per scenario,
with its ties, the failed strategies and how to load the pick), the compact table (a column per
timed setting, the picks marked) and the full record of every row.

Matrices of format 1 (one row per strategy, no targets, no intervals, no artifacts) and format 2
(one row per strategy and deployment target; see :mod:`torchslim.report.matrix`) both render:
every reader here returns None or an empty list for a field the matrix does not hold, and the
renderers leave that part out rather than guess it.
"""

from __future__ import annotations

import math
from typing import Any

from torchslim.report.matrix import COLUMNS
from torchslim.report.rows import human_bytes, quality

SCENARIOS = {"resource_limited": "Resource-limited", "accuracy_sensitive": "Accuracy-sensitive",
             "balanced": "Balanced"}
MARK = "★"  # marks a recommended row in the table (Markdown and HTML alike)


def number(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, not a number, NaN or infinite)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def fmt(value: Any, spec: str) -> str:
    """``value`` formatted with ``spec``, or an em dash when it is not a finite number."""
    v = number(value)
    return "—" if v is None else format(v, spec)


def human(n: Any) -> str:
    """A count with a k/M/G suffix (parameters, MACs)."""
    v = number(n)
    if v is None:
        return "—"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.2f}{unit}"
    return f"{v:.0f}"


def row_id(row: dict) -> str:
    """``strategy@target`` (format 2), or the strategy's name (format 1 rows have no target)."""
    return row.get("id") or (f"{row['strategy']}@{row['target']}" if row.get("target") else row["strategy"])


def picks(matrix: dict) -> set[str]:
    """The row ids some scenario recommends."""
    out = set()
    for rec in matrix["recommendations"].values():
        if isinstance(rec, dict) and (rec.get("row") or rec.get("strategy")):
            out.add(rec.get("row") or rec["strategy"])
    return out


def setting_label(key: str, matrix: dict) -> str:
    """``b64`` for ``b64_t1`` when every setting uses one thread count, else ``b64/2t``."""
    batch, threads = key.split("_")
    counts = {k.split("_")[1] for k in matrix["settings"]}
    return batch if len(counts) == 1 else f"{batch}/{threads[1:]}t"


def accuracy_se(row: dict, matrix: dict) -> float | None:
    """The accuracy's standard error in points: the matrix's own (format 2) or, for an older image
    matrix, the binomial one from the accuracy and the number of test samples (a text task's
    agreement is not a proportion of samples: no error unless the matrix gives one)."""
    se = number(row.get("accuracy_se"))
    if se is not None or matrix.get("format", 1) >= 2 or matrix.get("task", "image") != "image":
        return se
    acc, n = number(row.get("accuracy")), number(row.get("test_samples"))
    if acc is None or not n or not 0 <= acc <= 100:
        return None
    p = acc / 100
    return 100 * math.sqrt(p * (1 - p) / n)


def latency_band(row: dict, key: str) -> tuple[float, float] | None:
    """The p10 and p90 latency (ms) of ``row`` at setting ``key``, where the matrix saved them."""
    low, high = (number((row.get(f) or {}).get(key)) for f in ("latency_p10", "latency_p90"))
    return (low, high) if low is not None and high is not None else None


def interval_text(ci: Any) -> str:
    """`` [low–high]`` of a ratio interval, or nothing."""
    if not isinstance(ci, dict):
        return ""
    low, high = number(ci.get("low")), number(ci.get("high"))
    return "" if low is None or high is None else f" [{low:.2f}–{high:.2f}]"


def failures(matrix: dict) -> list[str]:
    """One line per failed strategy (or target): its name and why."""
    if matrix.get("failures"):
        return [f"{f['strategy']}" + (f" on {f['target']}" if f.get("target") else "")
                + f": {(f.get('error') or 'unknown error').rstrip('.')}" for f in matrix["failures"]]
    errors = {row_id(r): r.get("error") for r in matrix["rows"] if r["status"] == "failed"}
    names = matrix.get("failed") or list(errors)
    return [f"{name}: {(errors.get(name) or 'unknown error').rstrip('.')}" for name in names]


def status_text(row: dict) -> str:
    """``FAILED: why`` or ``SKIPPED: why`` for a row that was not measured."""
    return f"{row['status'].upper()}: {(row.get('error') or 'unknown error').rstrip('.')}"


def skipped(matrix: dict) -> list[str]:
    """One line per strategy measured on no target (none of the listed targets runs its model)."""
    return [f"{r['strategy']}: {(r.get('error') or 'no listed target runs it').rstrip('.')}"
            for r in matrix["rows"] if r["status"] == "skipped"]


def answer(matrix: dict) -> list[dict]:
    """The recommendations, in scenario order: ``title``, ``text`` (``**bold**`` marks the pick),
    ``pick`` (a row id or None), ``tie`` (row ids within noise; ``tie_untold`` those the text does
    not name), ``artifact`` and ``load`` (the pick's path and Python lines, where the matrix has
    them; ``repeat`` is true for a scenario whose pick an earlier one shows already)."""
    out, shown = [], set()
    recs = matrix["recommendations"]
    for key in [*[k for k in SCENARIOS if k in recs], *[k for k in recs if k not in SCENARIOS]]:
        rec = recs[key] if isinstance(recs[key], dict) else {"text": str(recs[key])}
        pick = rec.get("row") or rec.get("strategy")
        load = rec.get("load") or []
        text = rec.get("text") or ""
        tie = list(rec.get("tie") or [])
        item = {"key": key, "title": SCENARIOS.get(key, key.replace("_", " ").capitalize()), "text": text,
                "pick": pick, "tie": tie,
                # what the sentence already says is not repeated under it
                "tie_untold": [t for t in tie if t not in text],
                "artifact": rec.get("artifact"), "artifact_untold": bool(rec.get("artifact"))
                and rec["artifact"] not in text,
                "load": [load] if isinstance(load, str) else list(load), "repeat": pick in shown}
        shown.add(pick)
        out.append(item)
    return out


def timing_line(matrix: dict) -> str:
    """The run's timing verdict (format 2), or nothing."""
    timing = matrix.get("timing")
    if isinstance(timing, dict) and timing.get("verdict"):
        return f"Timing: {timing['verdict']}"
    return ""


def _machine_line(matrix: dict) -> str:
    m = matrix.get("machine") or {}
    cpu = m.get("cpu") or "unknown CPU"
    flags = m.get("cpu_flags") or []
    versions = m.get("versions") or {}
    ver = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
    return (f"{cpu}; {m.get('usable_cores', '?')} usable cores; CPU features: "
            f"{', '.join(flags) or 'none detected'}; torch kernels: {m.get('torch_cpu_capability', '?')}; "
            f"Python {m.get('python', '?')}; {ver}")


def quality_line(matrix: dict) -> str:
    """For a task whose quality is not accuracy, what the quality column holds."""
    if matrix.get("task", "image") == "image":
        return ""
    return f"Quality is not accuracy here: **{quality(matrix)['heading']}** is {quality(matrix)['description']}."


def title(matrix: dict) -> str:
    """The report's heading."""
    return f"Selection matrix — {matrix['recipe']}{' (quick)' if matrix.get('quick') else ''}"


def context_line(matrix: dict) -> str:
    """Where and on what it was measured, and what the ratios are against."""
    data = matrix.get("data") or {}
    minutes = f" Whole run: {matrix['wall_seconds'] / 60:.1f} min." if matrix.get("wall_seconds") else ""
    return (f"Measured {matrix.get('date', '?')} on: {_machine_line(matrix)}. Data: {data.get('name', '?')}, "
            f"{data.get('train_samples', '?')} training and {data.get('test_samples', '?')} test samples. "
            f"Ratios are against `{matrix.get('user_baseline') or matrix['baseline']}`, timed in the same run "
            f"(interleaved rounds); latency is the median per batch.{minutes}")


def runtime_gain_line(matrix: dict) -> str:
    """What the runtime alone bought at the primary setting (format 2: the teacher on each other
    target against the user baseline), or nothing."""
    p, parts = matrix["primary"], []
    for target, by_setting in (matrix.get("runtime_gain") or {}).items():
        ci = (by_setting or {}).get(p)
        if isinstance(ci, dict) and number(ci.get("ratio")) is not None:
            parts.append(f"{target} {ci['ratio']:.2f}×{interval_text(ci)}")
    if not parts:
        return ""
    return (f"The runtime alone (the baseline converted, not compressed), at {setting_label(p, matrix)}: "
            + "; ".join(parts) + ".")


def timing_notes(matrix: dict) -> list[str]:
    """The run's timing notes (format 2; older matrices keep them in each row's notes)."""
    timing = matrix.get("timing")
    return [str(n) for n in timing.get("notes") or []] if isinstance(timing, dict) else []


def rule_evidence(cell: dict) -> str:
    """A rule-of-thumb cell's evidence, with the quantity it read where the matrix says."""
    return cell["evidence"] + (f" (basis: {cell['basis']})" if cell.get("basis") else "")


def _speed_columns(matrix: dict) -> list[tuple[str, str, str]]:
    p = matrix["primary"]
    label = setting_label(p, matrix)
    has_user = any(r.get("speedup_user") for r in matrix["rows"])
    if not has_user:  # format 1: one speed-up, against the baseline
        return [(f"speedup:{p}", f"speed-up {label} ×",
                 f"{matrix['baseline']}'s latency / this one's at {label}, timed in the same run")]
    return [(f"speedup:{p}", f"speed-up {label} (same runtime) ×",
             "what compression bought: the same-runtime baseline's latency / this one's, [95% interval]"),
            (f"speedup_user:{p}", f"speed-up {label} (vs today) ×",
             f"what you get against {matrix.get('user_baseline') or matrix['baseline']} as run today, "
             "[95% interval]")]


def table_columns(matrix: dict) -> list[tuple[str, str, str]]:
    """``(key, heading, meaning)`` of the compact table: a column per timed setting, speed-ups at
    the primary setting only (the rest are in each row's full record)."""
    q = quality(matrix)
    where = ("target", "target", "where it runs") if any(r.get("target") for r in matrix["rows"]) else \
        ("runtime", "runtime", "what runs it")
    cols = [("strategy", "strategy", f"the recipe's name for it; {MARK} = recommended above"), where,
            ("accuracy", q["heading"], q["description"] + (" ± its standard error" if any(
                accuracy_se(r, matrix) is not None for r in matrix["rows"]) else "")),
            ("accuracy_delta", "Δ pts", f"{q['short']} − {matrix['baseline']}'s, in points"),
            ("bytes", "size", "bytes of the saved artifact"),
            ("bytes_ratio", "smaller ×", f"{matrix['baseline']}'s bytes / this one's")]
    for key in matrix["settings"]:
        batch, threads = key.split("_")
        cols.append((f"latency:{key}", f"{setting_label(key, matrix)} ms",
                     f"median ms per batch of {batch[1:]} on {threads[1:]} thread(s)"))
    return cols + _speed_columns(matrix) + [("train_seconds", "train s", "seconds to produce it")]


def table_cell(row: dict, key: str, matrix: dict) -> tuple[str, str]:
    """The compact table's text for ``row`` in column ``key``: the value and its uncertainty (a
    standard error or a 95% interval; empty where there is none), which HTML sets on a second line."""
    if ":" in key:
        field, setting = key.split(":")
        value = (row.get(field) or {}).get(setting)
        if field == "latency":
            return fmt(value, ".3g"), ""
        return fmt(value, ".2f"), interval_text((row.get(f"{field}_ci") or {}).get(setting)).strip()
    if key == "accuracy":
        se = accuracy_se(row, matrix)
        return fmt(row.get("accuracy"), ".2f"), f"± {se:.2f}" if se is not None else ""
    if key == "accuracy_delta":
        return fmt(row.get("accuracy_delta"), "+.2f"), "within noise" if row.get("accuracy_within_noise") else ""
    text = {"strategy": lambda: row["strategy"], "bytes": lambda: human_bytes(row.get("bytes")),
            "bytes_ratio": lambda: fmt(row.get("bytes_ratio"), ".1f"),
            "train_seconds": lambda: fmt(row.get("train_seconds"), ".0f")}.get(key)
    return (text() if text else str(row.get(key) or "—")), ""


def headline(matrix: dict) -> str:
    """One line before the scenarios: the pick when every scenario agrees, else each scenario's."""
    items = [i for i in answer(matrix) if i["pick"]]
    if not items:
        return ""
    if len({i["pick"] for i in items}) == 1 and len(items) > 1:
        return f"Pick **{items[0]['pick']}** for every scenario measured here."
    return "Picks: " + "; ".join(f"{i['title'].lower()} → **{i['pick']}**" for i in items) + "."


def columns(matrix: dict) -> list[tuple[str, str, str]]:
    """``(key, heading, description)`` of the matrix's full columns (as saved; older files: the image ones)."""
    saved = matrix.get("columns")
    return [(c["key"], c["heading"], c["description"]) for c in saved] if saved else list(COLUMNS)


def _per_setting(row: dict, field: str, matrix: dict, spec: str) -> str:
    values = row.get(field) or {}
    return " · ".join(f"{setting_label(k, matrix)} {format(values[k], spec)}" for k in matrix["settings"]
                      if number(values.get(k)) is not None) or "—"


def cells(row: dict, matrix: dict) -> dict[str, str]:
    """The display text of every full column of ``row`` (its record; the CLI's table reads it too)."""
    if row["status"] != "ok":
        return {"strategy": row["strategy"], "steps": " → ".join(row.get("steps", [])),
                "parameters": status_text(row)}
    return {
        "strategy": row["strategy"], "steps": " → ".join(row.get("steps", [])),
        "parameters": human(row.get("parameters")), "parameters_ratio": fmt(row.get("parameters_ratio"), ".2f"),
        "macs": human(row.get("macs")), "macs_ratio": fmt(row.get("macs_ratio"), ".2f"),
        "bytes": human_bytes(row.get("bytes")), "bytes_ratio": fmt(row.get("bytes_ratio"), ".2f"),
        "accuracy": fmt(row.get("accuracy"), ".2f"), "accuracy_delta": fmt(row.get("accuracy_delta"), "+.2f"),
        "retention": fmt(row.get("retention"), ".1f"), "latency": _per_setting(row, "latency", matrix, ".3g"),
        "speedup": _per_setting(row, "speedup", matrix, ".2f"),
        "runtime": str(row.get("runtime", "—")), "kernel": str(row.get("kernel", "—")),
        "train_seconds": fmt(row.get("train_seconds"), ".0f"), "epochs": str(row.get("epochs", "—")),
        "needs_teacher": "yes" if row.get("needs_teacher") else "no",
        "peak_memory_mb": fmt(row.get("peak_memory_mb"), ".0f"),
        "mean_cosine": fmt(row.get("mean_cosine"), ".4f"), "knn_overlap": fmt(row.get("knn_overlap"), ".3f"),
        "sentences_per_second": _per_setting(row, "sentences_per_second", matrix, ".0f"),
    }


def record(row: dict, matrix: dict) -> list[tuple[str, str, str]]:
    """``(heading, value, meaning)`` of every full column of ``row``, plus its target, artifact,
    speed-ups against today and notes where the matrix holds them: the folded per-row details."""
    c = cells(row, matrix)
    out = [(h, c[k], d) for k, h, d in columns(matrix) if k in c]
    if row.get("target"):
        out.insert(1, ("target", row["target"], "where it runs"))
    if row.get("speedup_user"):
        out.append(("speed-up vs today ×", _per_setting(row, "speedup_user", matrix, ".2f"),
                    f"against {matrix.get('user_baseline') or matrix['baseline']} as run today"))
    if row.get("artifact"):
        out.append(("artifact", row["artifact"], "path relative to the run directory"))
    if row.get("load"):
        out.append(("load", "\n".join(row["load"]), "Python that loads it and runs it on a tensor x"))
    out += [("note", n, "") for n in row.get("notes", [])]
    return out


__all__ = ["MARK", "SCENARIOS", "accuracy_se", "answer", "cells", "columns", "context_line", "failures", "headline",
           "latency_band", "picks",
           "quality_line", "record", "row_id", "rule_evidence", "runtime_gain_line", "skipped", "status_text", "table_cell", "table_columns",
           "timing_line", "timing_notes", "title"]
