"""Benchmark: the default comparison (`make run`) run three times, and how stable its headline is.

Runs ``torchslim compare RECIPE --out WORK/run-K`` (what ``make run`` does, each into an empty
folder of its own, each in a fresh process: nothing is shared between runs but the shipped teacher)
``--runs`` times one after the other, and reads each run's ``matrix.json``. Reported for the rows
on ONNX Runtime (the deployment rows) at the recipe's primary setting (batch 64, 1 thread):

- each run's test accuracy and speed-up, against the teacher on the same runtime and against the
  teacher on torch eager, with its 95% interval;
- the spread across runs (``max / min - 1``) and whether every run's value lies inside every other
  run's interval (the intervals agree, so a reader can take one run's interval at its word);
- each scenario's pick in each run, and the recipe's two targets in each run.

Run 1's matrix, report and plot are copied to ``--publish`` (the committed
``benchmarks/results/compare-fashion-mnist/``) and its headline opens the section.

    python benchmarks/default_comparison.py            # about 55 minutes on 2 quiet cores
    python benchmarks/default_comparison.py --quick    # the recipe's `quick:` twice, a smoke check

A run whose folder already holds a finished ``matrix.json`` is read, not run again (``--restart``
runs every one afresh). Writes ``benchmarks/results/default_comparison.json`` and the
``compare_fashion_mnist`` section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    RESULTS_DIR,
    display_path,
    given,
    machine_line,
    new_parser,
    parse,
    quick_outputs,
    record_header,
    write_section,
)

from torchslim.core.errors import TorchSlimError
from torchslim.core.io import atomic_write_bytes, atomic_write_json

NAME = "default_comparison"
SECTION = "compare_fashion_mnist"
RECIPE = REPO / "recipes" / "fashion-mnist.yaml"
PUBLISH = RESULTS_DIR / "compare-fashion-mnist"
PUBLISHED = ("matrix.json", "matrix.md", "report.html", "pareto.png")
CASCADE = "teacher-pruned-distilled-int8"  # the prune -> distill -> INT8 strategy of the default recipe
CASCADE_GAP = 0.5  # target: within this many points of the teacher
RETENTION, SPEEDUP = 0.99, 2.0  # target: a row at >= 99% of the teacher's accuracy and >= 2x on ORT FP32


def compare_command(recipe: Path, out: Path, quick: bool) -> list[str]:
    exe = Path(sys.executable).with_name("torchslim")
    head = [str(exe)] if exe.exists() else [sys.executable, "-m", "torchslim.cli"]
    return head + ["compare", str(recipe), "--out", str(out)] + (["--quick"] if quick else [])


def finished(folder: Path) -> dict[str, Any] | None:
    """The matrix of a finished run in ``folder``, or None."""
    path = folder / "matrix.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def run_once(recipe: Path, folder: Path, quick: bool, log: Path) -> dict[str, Any]:
    """One comparison in a fresh process; its matrix (exit 1, a failed strategy, still has one)."""
    command = compare_command(recipe, folder, quick)
    began = time.perf_counter()
    with log.open("w", encoding="utf-8") as sink:
        code = subprocess.call(command, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
    matrix = finished(folder)
    if code not in (0, 1) or matrix is None:
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise TorchSlimError(f"`{' '.join(command)}` exited {code} without a matrix; its log "
                             f"{display_path(log)} ends:\n{tail}")
    print(f"  {display_path(folder)}: exit {code}, {time.perf_counter() - began:.0f} s", flush=True)
    return matrix


def _ci(row: dict[str, Any], key: str, setting: str) -> dict[str, Any] | None:
    """The speed-up ``key`` at ``setting`` with its interval; None for the row that is its own
    baseline (the teacher on each runtime, against itself)."""
    ci = row.get(f"{key}_ci", {}).get(setting)
    value = row[key][setting]
    if ci is None:
        return None
    return {"ratio": value, "low": ci["low"], "high": ci["high"], "converged": ci["converged"]}


def headline(matrix: dict[str, Any]) -> dict[str, Any]:
    """What one run says: the ONNX Runtime rows at the primary setting, the picks, the targets."""
    setting, rows = matrix["primary"], [r for r in matrix["rows"] if r["status"] == "ok"]
    by_id = {r["id"]: r for r in rows}
    teacher = by_id[matrix["user_baseline"]]
    ort_teacher = next((r for r in rows if r["strategy"] == matrix["baseline"] and r["target"] == "ort-fp32"), None)
    out_rows = {}
    for r in rows:
        if r["runtime"] == "torch-eager":
            continue
        out_rows[r["id"]] = {"accuracy": r["accuracy"], "accuracy_se": r["accuracy_se"],
                             "same_runtime": _ci(r, "speedup", setting), "vs_user": _ci(r, "speedup_user", setting),
                             "peak_memory_mb": r.get("peak_memory_mb")}
    targets = {}
    cascade = next((r for r in rows if r["strategy"] == CASCADE and r["int8"]), None)
    if cascade is not None:
        gap = cascade["accuracy"] - teacher["accuracy"]
        targets["cascade"] = {"row": cascade["id"], "gap": gap, "met": gap >= -CASCADE_GAP}
    if ort_teacher is not None:
        base = ort_teacher["latency"][setting]
        # the same-runtime speed-up (from the interleaved rounds) where that runtime is ORT FP32
        fast = [(r["speedup"][setting] if r.get("same_runtime_baseline") == ort_teacher["id"]
                 else base / r["latency"][setting], r) for r in rows
                if r["accuracy"] >= RETENTION * teacher["accuracy"] and r["id"] != ort_teacher["id"]]
        best = max(fast, key=lambda pair: pair[0], default=None)
        targets["fast"] = ({"row": best[1]["id"], "accuracy": best[1]["accuracy"], "speedup": best[0],
                            "met": best[0] >= SPEEDUP} if best else {"row": None, "met": False})
    picks = {name: {"row": rec.get("row"), "tie": rec.get("tie") or []}
             for name, rec in matrix.get("recommendations", {}).items()}
    return {"date": matrix.get("date"), "wall_seconds": matrix.get("wall_seconds"), "setting": setting,
            "timing": matrix["timing"].get("verdict"), "failed": matrix.get("failed", []),
            "teacher_accuracy": teacher["accuracy"], "rows": out_rows, "picks": picks, "targets": targets}


def _spread(values: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    if any(v is None for v in values):
        return None
    ratios = [v["ratio"] for v in values]
    agree = max(v["low"] for v in values) <= min(v["high"] for v in values) or all(
        v["low"] <= r <= v["high"] for v in values for r in ratios)
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
            "spread": max(ratios) / min(ratios) - 1, "intervals_agree": agree,
            "widest_interval": max(max(v["high"] / v["ratio"] - 1, 1 - v["low"] / v["ratio"]) for v in values)}


def stability(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Across runs: each row's accuracy range and the spread of its two speed-ups; the picks."""
    common = [i for i in runs[0]["rows"] if all(i in r["rows"] for r in runs)]
    rows = {}
    for i in common:
        accs = [r["rows"][i]["accuracy"] for r in runs]
        rows[i] = {"accuracy_range": max(accs) - min(accs),
                   "accuracy_se": max(r["rows"][i]["accuracy_se"] for r in runs),
                   **{k: _spread([r["rows"][i][k] for r in runs]) for k in ("same_runtime", "vs_user")}}
    scenarios = sorted({s for r in runs for s in r["picks"]})
    picks = {}
    for s in scenarios:
        chosen = [r["picks"].get(s, {}).get("row") for r in runs]
        # stable when each run's pick is every other run's pick or named there as tied with it
        tied = all(a == b or a in r["picks"].get(s, {}).get("tie", []) for a in chosen
                   for b, r in zip(chosen, runs, strict=True))
        picks[s] = {"rows": chosen, "same": len(set(chosen)) == 1, "within_ties": tied}
    spreads = [v[k]["spread"] for v in rows.values() for k in ("same_runtime", "vs_user") if v[k]]
    return {"rows": rows, "picks": picks, "max_spread": max(spreads, default=0.0),
            "median_spread": statistics.median(spreads) if spreads else 0.0,
            "all_intervals_agree": all(v[k]["intervals_agree"] for v in rows.values() for k in ("same_runtime", "vs_user")
                                       if v[k]),
            "targets_met": {t: [r["targets"].get(t, {}).get("met") for r in runs] for t in ("cascade", "fast")}}


def _f(x: float) -> str:
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def _x(v: dict[str, Any] | None) -> str:
    if v is None:
        return "1 (the baseline)"
    return f"{_f(v['ratio'])} [{_f(v['low'])}–{_f(v['high'])}]" + ("" if v["converged"] else " (wide)")


def _runs(runs: list[dict[str, Any]], row: str, key: str) -> tuple[str, str]:
    """The runs' ratios, and their spread, for one table cell pair."""
    values = [r["rows"][row][key] for r in runs]
    if any(v is None for v in values):
        return "1 (the baseline)", "–"
    spread = max(v["ratio"] for v in values) / min(v["ratio"] for v in values) - 1
    return " / ".join(_f(v["ratio"]) for v in values), f"{spread:.1%}"


def _met(flags: list[bool | None]) -> str:
    return f"met in {sum(bool(f) for f in flags)} of {len(flags)} runs"


def _targets(t: dict[str, Any]) -> str:
    parts = []
    if "cascade" in t:
        c = t["cascade"]
        parts.append(f"the prune → distill → INT8 cascade within {CASCADE_GAP} points of the teacher ({c['row']}: "
                     f"{c['gap']:+.2f}, {'met' if c['met'] else 'missed'})")
    if "fast" in t:
        f = t["fast"]
        best = f"{f['row']}: {f['accuracy']:.2f}%, {f['speedup']:.2f}×" if f["row"] else "no such row"
        parts.append(f"a row at ≥ {RETENTION:.0%} of the teacher's accuracy with ≥ {SPEEDUP:g}× the teacher's speed "
                     f"on ONNX Runtime FP32 ({best}, {'met' if f['met'] else 'missed'})")
    return ("Targets: " + "; ".join(parts) + ".") if parts else "The recipe has neither target's rows."


def render_section(record: dict[str, Any]) -> str:
    runs, st, first = record["runs"], record["stability"], record["runs"][0]
    n, quick = len(runs), record["quick"]
    title = f"## The default comparison (`make run`), {n} runs" + (" — `--quick` smoke run: not a result" if quick else "")
    walls = ", ".join(f"{r['wall_seconds'] / 60:.1f}" for r in runs)
    lines = [title, "", f"`{record['command']}`: {n} times `{record['compare']}` (K = 1..{n}), each from an "
             f"empty folder in a fresh process, one after the other; {record['date']}. Machine: "
             f"{machine_line(record['machine'])}; recipe `{record['recipe']}` (seed {record['seed']}, "
             f"{record['threads']} training threads; timing at {first['setting']}: batch "
             f"{first['setting'].split('_')[0][1:]}, {first['setting'].split('_t')[1]} thread). "
             f"Wall clock per run: {walls} min.", ""]
    where = f" (its files: `{record['published']}`)" if record.get("published") else ""
    lines += [f"### Run 1{where}", "", f"Timing: {first['timing']}.", "",
              "| strategy @ target | test acc % | vs the teacher on the same runtime | vs the teacher on torch eager |",
              "|---|---:|---:|---:|"]
    pick = first["picks"].get("accuracy_sensitive", {}).get("row")
    for i, r in first["rows"].items():
        cells = [i, f"{r['accuracy']:.2f} ± {r['accuracy_se']:.2f}", _x(r["same_runtime"]), _x(r["vs_user"])]
        lines.append("| " + " | ".join(f"**{c}**" if i == pick else c for c in cells) + " |")
    lines += ["", "In bold: the accuracy-sensitive pick. " + _targets(first["targets"])]
    if n > 1:
        lines += ["", f"### Across the {n} runs", "",
                  "Spread: `max / min − 1` over the runs' medians. Intervals agree: every run's ratio lies in "
                  "every other run's 95% interval, or all intervals share a point.", "",
                  "| strategy @ target | test acc % (runs) | same runtime (runs) | spread | vs torch eager (runs) "
                  "| spread | intervals agree |", "|---|---|---|---:|---|---:|---|"]
        for i, s in st["rows"].items():
            accs = " / ".join(f"{r['rows'][i]['accuracy']:.2f}" for r in runs)
            (same, same_spread), (user, user_spread) = _runs(runs, i, "same_runtime"), _runs(runs, i, "vs_user")
            agree = "yes" if all(s[k]["intervals_agree"] for k in ("same_runtime", "vs_user") if s[k]) else "**no**"
            lines.append(f"| {i} | {accs} | {same} | {same_spread} | {user} | {user_spread} | {agree} |")
        lines += ["", "| scenario | " + " | ".join(f"run {k + 1}" for k in range(n)) + " | across runs |",
                  "|---|" + "---|" * n + "---|"]
        for name, p in st["picks"].items():
            verdict = "the same" if p["same"] else ("tied within noise in every run" if p["within_ties"] else "**differs**")
            lines.append(f"| {name} | " + " | ".join(str(r) for r in p["rows"]) + f" | {verdict} |")
        tm = st["targets_met"]
        lines += ["", f"Speed-up spread across runs: median {st['median_spread']:.1%}, largest {st['max_spread']:.1%}; "
                  f"intervals agree {'for every row' if st['all_intervals_agree'] else 'not for every row (see the table)'}. "
                  f"Cascade target {_met(tm['cascade'])}; ≥ {SPEEDUP:g}× at ≥ {RETENTION:.0%} target {_met(tm['fast'])}."]
    lines += ["", f"Every run's figures: `{record['json']}`."]
    return "\n".join(lines)


def publish(folder: Path, target: Path) -> None:
    """Copy run ``folder``'s report files to ``target``, each written atomically."""
    for name in PUBLISHED:
        if (folder / name).is_file():
            atomic_write_bytes(target / name, (folder / name).read_bytes())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = new_parser(__doc__, "the recipe's `quick:` settings, twice: a smoke check, not a result")
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="the recipe (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=None, help="how many comparisons (default 3; 2 with --quick)")
    parser.add_argument("--work", type=Path, default=None,
                        help="the runs' folders go here (default runs/bench/default-comparison[-quick])")
    parser.add_argument("--publish", type=Path, default=None,
                        help=f"copy run 1's report files here (default {display_path(PUBLISH)}; none with --quick)")
    parser.add_argument("--restart", action="store_true", help="run every comparison afresh")
    args = parse(parser, NAME, argv)
    if args.runs is None:
        args.runs = 2 if args.quick else 3
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    if not args.recipe.is_file():
        parser.error(f"--recipe {args.recipe}: no such file")
    if args.work is None:
        args.work = REPO / "runs" / "bench" / ("default-comparison" + ("-quick" if args.quick else ""))
    quick_outputs(args, NAME, args.work)
    if not args.quick and "--publish" not in given(args):
        args.publish = PUBLISH
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import yaml

    from torchslim.measure import machine_info

    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    matrices = []
    for k in range(1, args.runs + 1):
        folder = args.work / f"run-{k}"
        if args.restart and folder.exists():
            shutil.rmtree(folder)
        matrix = finished(folder)
        if matrix is None:
            print(f"run {k} of {args.runs}: {' '.join(compare_command(args.recipe, folder, args.quick))}", flush=True)
            matrix = run_once(args.recipe, folder, args.quick, args.work / f"run-{k}.log")
        else:
            print(f"run {k} of {args.runs}: finished earlier in {display_path(folder)}; read", flush=True)
        matrices.append(matrix)
    runs = [headline(m) for m in matrices]
    spec = yaml.safe_load(args.recipe.read_text(encoding="utf-8"))
    record = {**record_header(NAME, args), "recipe": display_path(args.recipe), "seed": spec.get("seed", 0),
              "threads": spec.get("threads"), "machine": matrices[0].get("machine") or machine_info(),
              "compare": (f"torchslim compare {display_path(args.recipe)} --out {display_path(args.work)}/run-K"
                          + (" --quick" if args.quick else "")),
              "folders": [display_path(args.work / f"run-{k}") for k in range(1, args.runs + 1)],
              "published": display_path(args.publish) if args.publish else None,
              "runs": runs, "stability": stability(runs)}
    if args.publish:
        publish(args.work / "run-1", args.publish)
    atomic_write_json(args.out, record)
    if args.results_md is not None:
        write_section(args.results_md, SECTION, render_section(record))
    print(render_section(record))
    print(f"wrote {display_path(args.out)}" + (f" and section {SECTION!r} of {display_path(args.results_md)}"
                                              if args.results_md else ""))
    return record


if __name__ == "__main__":
    try:
        main()
    except TorchSlimError as exc:
        sys.exit(f"error: {exc}")
