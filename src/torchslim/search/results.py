"""What a search leaves: the front, the final re-measurement on the test set, the picks exported
as recipes, and the search report (``search.json``, ``search.md``, ``search.png``, ``search.html``).

The best so far is on disk after every trial (:func:`write_progress`), so a search stopped at any
moment, or one whose final phase fails, still says what it found.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchslim.core.io import atomic_write, atomic_write_json, atomic_write_text
from torchslim.options.search import OBJECTIVES, SearchConfig, human_seconds
from torchslim.search.study import trial_rows
from torchslim.search.trial import recipe_data

KEYS = {"accuracy": "val_accuracy", "latency": "latency_ratio", "bytes": "bytes_ratio"}
SCENARIOS = ("resource_limited", "accuracy_sensitive", "balanced")


def tally(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Trials by outcome: measured, not trained (over the latency budget before training), stopped
    early, failed, running."""
    out = {"measured": 0, "not trained": 0, "stopped early": 0, "failed": 0, "running": 0}
    for r in rows:
        key = {"complete": "not trained" if r.get("untrained") else "measured", "pruned": "stopped early",
               "fail": "failed", "running": "running"}.get(r["state"])
        if key is not None:
            out[key] += 1
    return out


def feasible(row: dict[str, Any]) -> bool:
    return row["state"] == "complete" and not row.get("untrained") and max((row.get("constraints") or {}).values(), default=0.0) <= 0


def front_numbers(rows: list[dict[str, Any]], cfg: SearchConfig) -> list[int]:
    """Trial numbers on the Pareto front of the feasible measured trials (of all measured ones when
    none is feasible), fastest first."""
    measured = [r for r in rows if r["state"] == "complete" and not r.get("untrained")]
    pool = [r for r in measured if feasible(r)] or measured

    def better(a: dict, b: dict) -> bool:  # a dominates b
        signs = [1 if OBJECTIVES[o] == "maximize" else -1 for o in cfg.objectives]
        va = [s * a[KEYS[o]] for s, o in zip(signs, cfg.objectives, strict=True)]
        vb = [s * b[KEYS[o]] for s, o in zip(signs, cfg.objectives, strict=True)]
        return all(x >= y for x, y in zip(va, vb, strict=True)) and any(x > y for x, y in zip(va, vb, strict=True))

    front = [r for r in pool if not any(better(o, r) for o in pool if o is not r)]
    return [r["number"] for r in sorted(front, key=lambda r: (r.get("latency_ratio", 0.0), -r["val_accuracy"]))]


def spread(numbers: list[int], k: int) -> list[int]:
    """At most ``k`` of ``numbers`` (a front, fastest first), evenly spaced, both ends kept."""
    if len(numbers) <= k:
        return list(numbers)
    if k == 1:
        return [numbers[-1]]
    picks = sorted({round(i * (len(numbers) - 1) / (k - 1)) for i in range(k)})
    return [numbers[i] for i in picks]


def _name(number: int) -> str:
    return f"trial-{number:04d}"


def write_progress(out: Path, rows: list[dict[str, Any]], front: list[int], cfg: SearchConfig,
                   state: dict[str, Any], final: dict[str, Any] | None = None) -> dict[str, Any]:
    """``search.json`` and ``search.md`` (and the plot): every trial and the front so far."""
    path = out / "search.json"
    try:
        current = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError:
        current = {}
    summary = {**current, **state, "objectives": cfg.objectives, "constraints": cfg.constraints.model_dump(),
               "target": cfg.target.model_dump(), "sampler": cfg.sampler, "trials": rows, "front": front,
               **({"final": final} if final is not None else {})}
    for key in ("spent_seconds", "sessions"):  # the ledger's own record wins
        if key in current:
            summary[key] = current[key]
    atomic_write_json(path, summary)
    atomic_write_text(out / "search.md", markdown(summary))
    _plot(summary, out / "search.png")
    return summary


def finish(recipe: Any, cfg: SearchConfig, out: Path, study: Any, state: dict[str, Any], quick: bool,
           log: Callable[[str], None], ctx_kwargs: dict[str, Any], cap: float) -> dict[str, Any]:
    """The final phase: the front (up to ``front_size`` members) re-measured on the test set with the
    teacher in one comparison, the picks exported as recipes, the search report written."""
    from torchslim.pipeline.compare import compare
    from torchslim.pipeline.recipe import parse

    rows = trial_rows(study)
    front = front_numbers(rows, cfg)
    state["teacher"] = study.user_attrs.get("teacher")
    if not front:
        log("search: no trial was measured; nothing to re-measure (see search.md for what stopped or failed)")
        summary = write_progress(out, rows, front, cfg, state, {"measured": [], "recommendations": {}, "picks": {}})
        write_html(summary, out)
        return summary
    chosen = spread(front, cfg.front_size)
    by_number = {r["number"]: r for r in rows}
    from torchslim.search.trial import strategy_steps

    beside = {name: strategy_steps(recipe, name) for name in cfg.compare_with}
    data = recipe_data(recipe, {**beside, **{_name(n): by_number[n]["strategy"] for n in chosen}},
                       name=f"{recipe.name}-front")
    data["measure"] = {**data.get("measure", {}), "max_seconds": cap}
    final_recipe = parse(data, source=f"{recipe.source} (search front)")
    log(f"search: re-measuring {len(chosen)} front member(s) on the test set with the teacher: "
        f"{', '.join(_name(n) for n in chosen)}")
    matrix = compare(final_recipe, out, quick=quick, resume=True, log=log, progress=False,
                     models=ctx_kwargs.get("factories"), teacher=ctx_kwargs.get("teacher_override"),
                     data=ctx_kwargs.get("data_override"))
    picks = export_picks(recipe, matrix, by_number, out)
    final = {"measured": chosen, "recommendations": _recommendations(matrix), "picks": picks,
             "report": "report.html", "failures": matrix.get("failures", [])}
    summary = write_progress(out, rows, front, cfg, state, final)
    write_html(summary, out)
    log(f"search report: {out / 'search.html'}, {out / 'search.md'}; final comparison: {out / 'report.html'}; "
        f"picks: {', '.join(str(out / p) for p in picks.values()) or 'none'}")
    return summary


def _recommendations(matrix: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for scenario, rec in (matrix.get("recommendations") or {}).items():
        row = next((r for r in matrix.get("rows", []) if r.get("id") == rec.get("row")), None)
        primary = matrix.get("primary")
        out[scenario] = {"strategy": rec.get("strategy"), "target": rec.get("target"), "row": rec.get("row"),
                         "text": rec.get("text"), "artifact": rec.get("artifact"), "load": rec.get("load", []),
                         "tie": rec.get("tie", []), "accuracy": (row or {}).get("accuracy"),
                         "accuracy_se": (row or {}).get("accuracy_se"), "setting": primary,
                         "speedup": ((row or {}).get("speedup") or {}).get(primary),
                         "speedup_ci": ((row or {}).get("speedup_ci") or {}).get(primary),
                         "speedup_user": ((row or {}).get("speedup_user") or {}).get(primary)}
    return json.loads(json.dumps(out, default=str))


def export_picks(recipe: Any, matrix: dict[str, Any], by_number: dict[int, dict], out: Path) -> dict[str, str]:
    """Each scenario's pick as a standalone recipe ``OUT/picks/<scenario>.yaml`` (the teacher and
    the pick's strategy) that ``torchslim compare`` reproduces."""
    import yaml

    picks = {}
    for scenario, rec in (matrix.get("recommendations") or {}).items():
        strategy = rec.get("strategy")
        if not strategy or not strategy.startswith("trial-"):
            continue
        number = int(strategy.split("-")[1])
        data = recipe_data(recipe, {strategy: by_number[number]["strategy"]}, name=f"{recipe.name}-{scenario.replace('_', '-')}")
        data["description"] = (f"The {scenario.replace('_', '-')} pick of a search of {recipe.name!r} (trial {number}), "
                               "with the teacher it was measured against.")
        text = (f"# {scenario.replace('_', '-')} pick of `torchslim search` on {recipe.name} (trial {number}).\n"
                f"# Reproduce: torchslim compare {Path('picks') / (scenario + '.yaml')} --out runs/{strategy}\n"
                + yaml.safe_dump(data, sort_keys=False))
        path = out / "picks" / f"{scenario}.yaml"
        atomic_write_text(path, text)
        picks[scenario] = str(path.relative_to(out))
    return picks


# -- the report ------------------------------------------------------------------------------------


def _values(row: dict[str, Any]) -> str:
    values = row.get("values") or row.get("params") or {}
    return ", ".join(f"{k}={_short(v)}" for k, v in values.items())


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _note(row: dict[str, Any]) -> str:
    if row.get("untrained"):
        return "not trained: " + row["stopped"]
    if row.get("stopped"):
        return "stopped: " + row["stopped"]
    if row.get("error"):
        return "failed: " + row["error"]
    if row["state"] == "complete" and not feasible(row):
        return "infeasible (a constraint is not met)"
    return ""


def markdown(summary: dict[str, Any]) -> str:
    """The search report as Markdown: the picks, the front, then every trial's configuration."""
    rows, front = summary.get("trials", []), summary.get("front", [])
    teacher = summary.get("teacher") or {}
    counts = tally(rows)
    lines = [f"# Search: {summary.get('recipe')}", "",
             f"Study `{summary.get('study')}` ({summary.get('storage')}), sampler {summary.get('sampler')}, objectives "
             f"{', '.join(summary.get('objectives', []))}; budget {human_seconds(summary.get('budget_seconds') or 0)}, "
             f"spent {human_seconds(summary.get('spent_seconds') or 0)}.",
             f"Trials: {len(rows)} ({', '.join(f'{n} {k}' for k, n in counts.items() if n)}).",
             f"Teacher: {teacher.get('val_accuracy', float('nan')):.2f}% validation accuracy; accuracy floor "
             f"{teacher.get('floor') if teacher.get('floor') is None else format(teacher['floor'], '.2f') + '%'}; "
             f"latency is each candidate's over the teacher's on the target "
             f"({summary.get('target', {}).get('runtime')}), timed interleaved.", ""]
    final = summary.get("final") or {}
    if final.get("recommendations"):
        lines += ["## Picks (re-measured on the test set, timed against the teacher)", "",
                  "| scenario | pick | test accuracy | speed-up (same runtime) | recipe |", "|---|---|---|---|---|"]
        for scenario, rec in final["recommendations"].items():
            recipe = (final.get("picks") or {}).get(scenario, "")
            lines.append(f"| {scenario.replace('_', '-')} | {rec.get('row') or 'none within the floor and budget'} | "
                         f"{_fmt(rec.get('accuracy'), '.2f', '%')} | {_fmt(rec.get('speedup'), '.2f', 'x')} | {recipe} |")
        lines += ["", "The full comparison of the front is in `report.html` / `matrix.md`.", ""]
    by_number = {r["number"]: r for r in rows}
    lines += ["## Front (validation split)", "", "| trial | route | quantize | validation accuracy | latency / teacher | "
              "speed-up | bytes | configuration |", "|---|---|---|---|---|---|---|---|"]
    for n in front:
        r = by_number[n]
        lines.append(f"| {n} | {r.get('route')} | {(r.get('shape') or {}).get('quantize')} | {r['val_accuracy']:.2f}% | "
                     f"{r['latency_ratio']:.3f} [{r['latency_ratio_low']:.3f}-{r['latency_ratio_high']:.3f}] | "
                     f"{r['speedup']:.2f}x | {r['bytes']:,} | {_values(r)} |")
    lines += ["", "## Every trial", "", "| trial | state | validation accuracy | speed-up | bytes | seconds | "
              "configuration | note |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['number']} | {r['state']} | {_fmt(r.get('val_accuracy'), '.2f', '%')} | "
                     f"{_fmt(r.get('speedup'), '.2f', 'x')} | {_fmt(r.get('bytes'), ',', '')} | "
                     f"{_fmt(r.get('seconds'), '.0f', '')} | {_values(r)} | {_note(r).replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def _fmt(value: Any, spec: str, unit: str) -> str:
    return "—" if value is None else f"{format(value, spec)}{unit}"


def _plot(summary: dict[str, Any], path: Path) -> None:
    """Every measured trial (marker: route; colour: quantization), the front, the constraints."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary.get("trials", []) if r["state"] == "complete" and not r.get("untrained")]
    front = set(summary.get("front", []))
    teacher = summary.get("teacher") or {}
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    colours = {"none": "tab:blue", "static": "tab:orange", "qat": "tab:green"}
    markers = {"pruned": "o", "student": "s"}
    for r in rows:
        q, route = (r.get("shape") or {}).get("quantize", "none"), r.get("route", "pruned")
        ax.scatter(r["latency_ratio"], r["val_accuracy"], c=colours.get(q, "grey"), marker=markers.get(route, "o"),
                   s=46 if r["number"] in front else 22, alpha=1.0 if feasible(r) else 0.35,
                   edgecolors="black" if r["number"] in front else "none", zorder=3)
    on_front = sorted((r for r in rows if r["number"] in front), key=lambda r: r["latency_ratio"])
    if on_front:
        ax.plot([r["latency_ratio"] for r in on_front], [r["val_accuracy"] for r in on_front], "-", c="black",
                lw=1, zorder=2, label="front")
    picks = (summary.get("final") or {}).get("recommendations") or {}
    for scenario, rec in picks.items():
        strategy = rec.get("strategy") or ""
        r = next((x for x in rows if strategy == _name(x["number"])), None)
        if r is not None:
            ax.annotate(scenario.replace("_", "-"), (r["latency_ratio"], r["val_accuracy"]), textcoords="offset points",
                        xytext=(6, 6 + 10 * list(picks).index(scenario)), fontsize=8)
    if teacher.get("val_accuracy") is not None:
        ax.scatter([1.0], [teacher["val_accuracy"]], marker="*", s=140, c="black", label="teacher", zorder=4)
    if teacher.get("floor") is not None:
        ax.axhline(teacher["floor"], ls="--", c="grey", lw=0.8, label="accuracy floor")
    budget = (summary.get("constraints") or {}).get("latency_budget")
    if budget:
        ax.axvline(budget, ls=":", c="grey", lw=0.8, label="latency budget")
    for q, c in colours.items():
        ax.scatter([], [], c=c, marker="o", label=f"quantize {q}")
    for route, m in markers.items():
        ax.scatter([], [], c="white", edgecolors="black", marker=m, label=f"route {route}")
    if rows or teacher.get("val_accuracy") is not None:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")  # 0.25, 0.5, 1: not 10^-1
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(plain)
    else:
        ax.text(0.5, 0.5, "no trial measured yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(f"latency / teacher's on {summary.get('target', {}).get('runtime')} (lower is faster)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"Search {summary.get('recipe')}: {len(rows)} measured trials, the front outlined")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    if rows:
        ys = [r["val_accuracy"] for r in rows] + ([teacher["val_accuracy"]] if teacher.get("val_accuracy") else [])
        top = max(ys)
        ax.set_ylim(max(min(ys), top - 15) - 0.5, top + 0.8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def write_html(summary: dict[str, Any], out: Path) -> None:
    """``search.html``: the picks first, then the plot, the front and every trial (folded)."""
    text = markdown(summary)
    png = out / "search.png"
    image = base64.b64encode(png.read_bytes()).decode() if png.is_file() else ""
    body = []
    table: list[str] = []

    def flush() -> None:
        if table:
            head, *rest = [r.strip("|").split(" | ") for r in table if not set(r) <= set("|-")]
            body.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" + "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rest) + "</table>")
            table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            if "Front" in line and image:
                body.append(f'<img alt="every trial, the front and the picks" src="data:image/png;base64,{image}">')
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    flush()
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>torchslim search</title><style>"
            "body{font-family:sans-serif;max-width:1000px;margin:1em auto;padding:0 1em}"
            "table{border-collapse:collapse;font-size:12px;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;"
            "vertical-align:top}img{max-width:100%}</style></head><body>" + "\n".join(body) +
            "<p><a href='report.html'>The final comparison of the front</a></p></body></html>")
    atomic_write_text(out / "search.html", page)


__all__ = ["export_picks", "feasible", "tally", "finish", "front_numbers", "markdown", "spread", "write_html", "write_progress"]
