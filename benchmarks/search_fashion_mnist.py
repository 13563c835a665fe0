"""Benchmark: `torchslim search` on Fashion-MNIST from the shipped teacher, against random sampling.

The default recipe's ``search:`` section (``recipes/fashion-mnist.yaml``) is searched with its own
sampler (multi-objective TPE) and then, with the same budget on the same machine, with random
sampling. For each: what the trials did (measured, not trained because their measured latency was
over the budget, stopped early at low fidelity, failed), the front on the validation split, the
front re-measured on the test set with the teacher (``speed-up`` against the teacher on ONNX Runtime
FP32, on torch eager and, from the same run, on ONNX Runtime INT8; each with its interval), the
target (at least 99% of the teacher's test accuracy at 3x its batch-64, 1-thread speed on ONNX
Runtime FP32), the hypervolume of each front, and whether the front dominates every strategy of the
committed default comparison (``benchmarks/results/compare-fashion-mnist/matrix.json``, same machine
class; ratios are to the teacher timed in each run).

    python benchmarks/search_fashion_mnist.py                     # 2 x the budget (default 50 min)
    python benchmarks/search_fashion_mnist.py --samplers tpe      # one sampler
    python benchmarks/search_fashion_mnist.py --quick             # a smoke run: --quick data, 8 min each

Each search lives in ``runs/search-fashion-mnist-<sampler>`` and resumes when run again. Writes
``benchmarks/results/search_fashion_mnist.json`` and its section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    display_path,
    machine_line,
    new_parser,
    parse,
    record_header,
    report_written,
    write_section,
)

from torchslim.core.io import atomic_write_json

NAME = "search_fashion_mnist"
RECIPE = REPO / "recipes" / "fashion-mnist.yaml"
DEFAULT_MATRIX = REPO / "benchmarks" / "results" / "compare-fashion-mnist" / "matrix.json"
SETTING = "b64_t1"
RETENTION, SPEEDUP = 0.99, 3.0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = new_parser(__doc__, "every trial on the recipe's quick subset and epochs, 8 minutes per sampler")
    parser.add_argument("--samplers", default="tpe,random", help="comma-separated samplers (default: %(default)s)")
    parser.add_argument("--budget", default=None, help="budget per sampler (default: 50m; --quick: 8m)")
    parser.add_argument("--work", type=Path, default=None, help="where the searches live (default: runs/)")
    args = parse(parser, NAME, argv)
    from torchslim.measure import machine_info
    from torchslim.pipeline import load_recipe
    from torchslim.search import search

    budget = args.budget or ("8m" if args.quick else "50m")
    work = args.work or REPO / "runs"
    recipe = load_recipe(RECIPE)
    record = {**record_header(NAME, args), "machine": machine_info(), "recipe": display_path(RECIPE),
              "budget": budget, "seed": recipe.seed, "threads": recipe.threads, "searches": {}}
    if args.out.is_file():
        previous = json.loads(args.out.read_text(encoding="utf-8"))
        if previous.get("budget") == budget and previous.get("quick") == args.quick:
            record["searches"] = previous.get("searches", {})
    for name in [s for s in args.samplers.split(",") if s]:
        out = work / f"search-fashion-mnist-{name}{'-quick' if args.quick else ''}"
        began = time.time()
        summary = search(recipe, out, budget=budget, sampler=name, quick=args.quick,
                         log=lambda m: print(m, flush=True))
        record["searches"][name] = {**analyse(summary, out, time.time() - began), "command": record["command"]}
        atomic_write_json(args.out, record)
    record["comparison"] = compare_samplers(record["searches"])
    atomic_write_json(args.out, record)
    write_section(args.results_md, NAME, markdown(record))
    report_written(NAME, args.out, args.results_md)
    return record


def _rows(matrix: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in matrix["rows"] if r.get("status") == "ok"}


def analyse(summary: dict[str, Any], out: Path, wall: float) -> dict[str, Any]:
    """The record of one search: its trials, its front and the final re-measurement of the front."""
    from torchslim.search.results import tally

    rows = summary["trials"]
    matrix = json.loads((out / "matrix.json").read_text(encoding="utf-8"))
    by_id = _rows(matrix)
    teacher_torch = by_id["teacher-fp32@torch-fp32"]
    teacher_ort = by_id.get("teacher-fp32@ort-fp32")
    teacher_int8 = by_id.get("teacher-int8@ort-int8")
    measured = []
    for rid, row in by_id.items():
        if not row["strategy"].startswith("trial-"):
            continue
        latency = row["latency"][SETTING]
        entry = {"row": rid, "accuracy": row["accuracy"], "accuracy_se": row.get("accuracy_se"),
                 "bytes": row["bytes"], "latency_ms": latency,
                 "speedup_ort_fp32": _ratio(teacher_ort, row), "speedup_torch": _ratio(teacher_torch, row),
                 "speedup_ort_int8": _ratio(teacher_int8, row), "int8": row.get("int8"),
                 "speedup_ci": (row.get("speedup_ci") or {}).get(SETTING),
                 "speedup_user_ci": (row.get("speedup_user_ci") or {}).get(SETTING)}
        number = int(row["strategy"].split("-")[1])
        trial = next(t for t in rows if t["number"] == number)
        entry.update(trial=number, values=trial.get("values"), val_accuracy=trial.get("val_accuracy"))
        entry["meets_target"] = (entry["accuracy"] >= RETENTION * teacher_torch["accuracy"]
                                 and (entry["speedup_ort_fp32"] or 0) >= SPEEDUP)
        measured.append(entry)
    stopped = [t for t in rows if t["state"] == "pruned"]
    untrained = [t for t in rows if t.get("untrained")]
    return {"dir": display_path(out), "wall_seconds": wall, "spent_seconds": summary.get("spent_seconds"),
            "budget_seconds": summary.get("budget_seconds"), "trials": len(rows), "tally": tally(rows),
            "trial_seconds": sum(t.get("seconds") or 0 for t in rows),
            "stopped_low_fidelity": sum(1 for t in stopped if (t.get("stopped") or "").startswith("low fidelity")),
            "stopped_budget": sum(1 for t in stopped if (t.get("stopped") or "").startswith("budget")),
            "not_trained_seconds": sum(t.get("seconds") or 0 for t in untrained),
            "teacher": {"test_accuracy": teacher_torch["accuracy"], "val_accuracy": (summary.get("teacher") or {}).get(
                "val_accuracy"), "latency_ms_torch": teacher_torch["latency"][SETTING],
                "latency_ms_ort_fp32": teacher_ort["latency"][SETTING] if teacher_ort else None,
                "latency_ms_ort_int8": teacher_int8["latency"][SETTING] if teacher_int8 else None},
            "front_val": [{"trial": n, **{k: next(t for t in rows if t["number"] == n).get(k) for k in (
                "val_accuracy", "latency_ratio", "speedup", "bytes", "values")}} for n in summary["front"]],
            "hypervolume_val": hypervolume(rows, summary),
            "front_test": sorted(measured, key=lambda e: -(e["speedup_ort_fp32"] or 0)),
            "target_met": any(e["meets_target"] for e in measured),
            "dominance": dominance(measured), "picks": (summary.get("final") or {}).get("picks", {}),
            "recommendations": (summary.get("final") or {}).get("recommendations", {}),
            "timing": matrix.get("timing", {}).get("verdict")}


def _ratio(base: dict[str, Any] | None, row: dict[str, Any]) -> float | None:
    if base is None:
        return None
    return base["latency"][SETTING] / row["latency"][SETTING]


def hypervolume(rows: list[dict[str, Any]], summary: dict[str, Any]) -> float:
    """The area the feasible measured trials dominate in (validation accuracy above the floor, speed-up
    over 1/latency budget... from 1x): a sampler-independent score of a front (larger is better)."""
    from torchslim.search.results import feasible

    floor = (summary.get("teacher") or {}).get("floor") or 0.0
    points = sorted(((t["speedup"], t["val_accuracy"]) for t in rows if feasible(t)), reverse=True)
    area, best = 0.0, floor
    for speed, accuracy in points:  # fastest first; each adds the strip it raises above the best so far
        if accuracy > best:
            area += (speed - 1.0) * (accuracy - best) if speed > 1.0 else 0.0
            best = accuracy
    return area


def dominance(measured: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For every strategy of the committed default comparison (its best ONNX Runtime row), the front
    member that dominates it in test accuracy and speed-up against the teacher on ONNX Runtime FP32, if
    any (a difference within two standard errors of accuracy counts as no worse)."""
    if not DEFAULT_MATRIX.is_file():
        return []
    default = json.loads(DEFAULT_MATRIX.read_text(encoding="utf-8"))
    teacher_ort = _rows(default).get("teacher-fp32@ort-fp32")
    best: dict[str, dict[str, Any]] = {}
    for rid, row in _rows(default).items():
        if row["target"] == "torch-fp32" and row["strategy"] != "teacher-fp32":
            continue
        speed = _ratio(teacher_ort, row)
        if speed is not None and (row["strategy"] not in best or speed > best[row["strategy"]]["speedup"]):
            best[row["strategy"]] = {"row": rid, "accuracy": row["accuracy"], "speedup": speed,
                                     "se": row.get("accuracy_se") or 0.0}
    out = []
    for strategy, s in best.items():
        by = [e for e in measured if e["accuracy"] >= s["accuracy"] - 2 * max(s["se"], e.get("accuracy_se") or 0.0)
              and (e["speedup_ort_fp32"] or 0) >= s["speedup"]]
        out.append({"strategy": strategy, "row": s["row"], "accuracy": s["accuracy"], "speedup_ort_fp32": s["speedup"],
                    "dominated_by": [e["row"] for e in by]})
    return out


def compare_samplers(searches: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if "tpe" not in searches or "random" not in searches:
        return {}
    tpe, rnd = searches["tpe"], searches["random"]
    best = {k: max((e["speedup_ort_fp32"] or 0 for e in v["front_test"] if e["meets_target"] or e["accuracy"] >= 0),
                   default=0.0) for k, v in searches.items()}
    return {"hypervolume_val": {"tpe": tpe["hypervolume_val"], "random": rnd["hypervolume_val"]},
            "target_met": {"tpe": tpe["target_met"], "random": rnd["target_met"]},
            "measured_trials": {"tpe": tpe["tally"]["measured"], "random": rnd["tally"]["measured"]},
            "fastest_on_front": best,
            "tpe_beat_random": tpe["hypervolume_val"] > rnd["hypervolume_val"]}


def markdown(record: dict[str, Any]) -> str:
    lines = [f"## Strategy search on Fashion-MNIST (`python benchmarks/search_fashion_mnist.py --budget {record['budget']}"
             f"{' --quick' if record['quick'] else ''}`)", "",
             f"Machine: {machine_line(record['machine'])}. Recipe `{record['recipe']}` (seed {record['seed']}, "
             f"{record['threads']} training threads); budget {record['budget']} per sampler, run one after the other "
             f"on this machine; {record['date']}.{' A --quick smoke run: not a result.' if record['quick'] else ''}", ""]
    for name in sorted(record["searches"], key=lambda n: n != "tpe"):  # the recipe's sampler first
        s = record["searches"][name]
        t = s["teacher"]
        lines += [f"### Sampler {name}", "", f"Run as `{s.get('command', record['command'])}`; its study: `{s['dir']}`.", "",
                  f"{s['trials']} trials in {s['wall_seconds'] / 60:.1f} min wall (budget {s['budget_seconds'] / 60:.0f} min; "
                  f"spent {s['spent_seconds'] / 60:.1f} min): {', '.join(f'{n} {k}' for k, n in s['tally'].items() if n)}; "
                  f"{s['stopped_low_fidelity']} stopped at low fidelity, {s['stopped_budget']} by the budget. "
                  f"Teacher: {t['test_accuracy']:.2f}% test, {t['latency_ms_torch']:.1f} ms torch eager, "
                  f"{t['latency_ms_ort_fp32']:.1f} ms ONNX Runtime FP32"
                  + (f", {t['latency_ms_ort_int8']:.1f} ms ONNX Runtime INT8" if t['latency_ms_ort_int8'] else "")
                  + f" (batch 64, 1 thread). Validation-front hypervolume: {s['hypervolume_val']:.1f}.", "",
                  "| front member (test set) | test accuracy | speed-up vs teacher ORT FP32 [95%] | vs torch eager | "
                  "vs teacher ORT INT8 | bytes | meets target | configuration |", "|---|---|---|---|---|---|---|---|"]
        for e in s["front_test"]:
            ci = e.get("speedup_ci") or {}
            interval = f" [{ci['low']:.2f}–{ci['high']:.2f}]" if ci and ci.get("baseline", "").endswith("ort-fp32") else ""
            values = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in (e["values"] or {}).items())
            lines.append(f"| {e['row']} | {e['accuracy']:.2f}% ± {e['accuracy_se'] or 0:.2f} | "
                         f"{e['speedup_ort_fp32']:.2f}×{interval} | {e['speedup_torch']:.2f}× | "
                         f"{e['speedup_ort_int8']:.2f}× | {e['bytes']:,} | {'yes' if e['meets_target'] else 'no'} | "
                         f"{values} |" if e["speedup_ort_int8"] else
                         f"| {e['row']} | {e['accuracy']:.2f}% | {e['speedup_ort_fp32']:.2f}× | {e['speedup_torch']:.2f}× | "
                         f"— | {e['bytes']:,} | {'yes' if e['meets_target'] else 'no'} | {values} |")
        dominated = [d for d in s["dominance"] if d["dominated_by"]]
        lines += ["", f"Target (≥ {100 * RETENTION:.0f}% of the teacher's test accuracy at ≥ {SPEEDUP:g}× its ONNX "
                      f"Runtime FP32 speed): {'met' if s['target_met'] else 'not met'}. The front dominates "
                      f"{len(dominated)} of {len(s['dominance'])} strategies of the committed default comparison"
                  + (": not " + ", ".join(d['strategy'] for d in s['dominance'] if not d['dominated_by']) + "."
                     if len(dominated) < len(s['dominance']) else "."), ""]
    c = record.get("comparison") or {}
    if c:
        lines += [f"TPE against random sampling, same budget: hypervolume {c['hypervolume_val']['tpe']:.1f} vs "
                  f"{c['hypervolume_val']['random']:.1f} (validation front; larger is better), measured trials "
                  f"{c['measured_trials']['tpe']} vs {c['measured_trials']['random']}, target met "
                  f"{c['target_met']['tpe']} vs {c['target_met']['random']}: "
                  f"{'TPE beat random sampling' if c['tpe_beat_random'] else 'TPE did not beat random sampling'}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
