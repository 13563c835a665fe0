"""The measured selection matrix: one row per (strategy, deployment target), every figure with its
uncertainty; recommendations per scenario (:mod:`torchslim.report.scenarios`).

Everything here is a pure function of the saved ``matrix.json`` content (``torchslim report DIR``
re-renders from it), except :func:`build_matrix`, which assembles it from a run.

A *target* is where a final model runs: ``torch-fp32`` (torch eager, FP32), ``ort-fp32`` (ONNX
Runtime, FP32: the same model exported), ``ort-int8`` (ONNX Runtime, an INT8 ONNX model a quantize
step made). Every final model is measured on each target of ``measure.targets`` that applies to it
(a torch model: torch-fp32 and ort-fp32; an INT8 ONNX model: ort-int8 only). The baseline strategy
("the teacher") on torch-fp32 is the *user baseline*: the model as the user runs it today. The
teacher on ort-fp32 is its own row (the conversion alone) and the *same-runtime* baseline of every
ONNX Runtime row; torch-fp32 rows' same-runtime baseline is the user baseline.

Speed-ups: ``speedup`` (same runtime) is what compression bought; ``speedup_user`` is what the
user gets against today (runtime x compression); the teacher's ort-fp32 row's ``speedup_user`` is
what the runtime alone bought (also ``matrix["runtime_gain"]``).

``matrix.json`` (format 2); types are JSON's; ``S`` is a setting key ``b{batch}_t{threads}``;
``RID`` a row id ``strategy@target``; a ratio interval is ``{"ratio", "low", "high", "converged",
"rounds", "baseline": RID}`` (95% bootstrap interval of the median of per-round ratios, converged:
within +-5% before the time cap).

Top level:
    format            int      2
    recipe, source, quick, task, quality, date, wall_seconds, data, machine, columns: as before
    baseline          str      the baseline strategy's name (the teacher)
    user_baseline     RID      the baseline strategy on torch-fp32: "the teacher as run today"
    targets           list     ``{"name", "runtime", "description"}`` of each target measured
    settings          list[S]  every timed setting; ``primary`` S: the one scenarios rank on
    scenarios         dict     the recipe's ``scenarios:`` (floors in points, budgets as fractions)
    rows              list     one per (strategy, target), below
    failed            list[str] strategies that failed or were not measured (the exit code's reason)
    failures          list     ``{"strategy", "target" (None: the whole strategy), "error"}`` (one line):
                               also a target alone that failed (an export), its strategy's other rows kept
    timing            dict     the noise, once per run: ``verdict`` str, ``quiet`` bool, ``notes``
                               list[str], ``options`` (min_rounds, max_seconds, target_width,
                               confidence), ``settings`` [{``setting`` S, ``rounds``, ``seconds``,
                               ``converged`` bool}]; None when nothing was timed (text task)
    runtime_gain      dict     target -> S -> ratio interval: the teacher on that target vs the user
                               baseline (the runtime's gain alone)
    recommendations   dict     scenario -> recommendation, below
    rule_of_thumb     list     ``{"aspect", "claim", "status" ("confirmed" | "partly" |
                               "contradicted" | "not measured"), "evidence", "basis"}``; ``basis``
                               says which ratios it read ("same-runtime speed-ups", ...)

A row:
    id                RID      ``strategy@target``
    strategy, target  str
    runtime, kernel   str      "torch-eager" / "onnxruntime"; the arithmetic path
    status            str      "ok" | "failed" | "skipped" (no listed target runs its kind of model);
                               ``error`` str | None: why, one line
    steps, families   list[str]   the step names; the routes they took (from each step's declared family)
    int8              bool     the final model is INT8 (a step that makes INT8 ran)
    artifact          str      the model's path relative to the run directory
                               (``steps/.../model`` or ``.../model.onnx``)
    load              list[str] two Python lines that load and run it on a tensor ``x``
    input_name        str|None the ONNX input name (ONNX Runtime rows)
    parameters, macs, bytes (int) and parameters_ratio, macs_ratio, bytes_ratio (float):
                               ratios are the user baseline's / this row's
    accuracy          float    top-1 % on the test set; ``test_samples`` int
    accuracy_se       float    its standard error in points (binomial, for test_samples; not for text)
    accuracy_delta    float    accuracy - the user baseline's, in points; ``accuracy_delta_se``
    accuracy_within_noise bool the delta is within 2 standard errors (not a real difference)
    retention         float    accuracy / the user baseline's, %
    latency           S -> float   median ms per batch
    speedup           S -> float   same-runtime speed-up (the same-runtime baseline's time / this)
    speedup_ci        S -> ratio interval of ``speedup``
    speedup_user      S -> float   speed-up against the user baseline
    speedup_user_ci   S -> ratio interval of ``speedup_user``
    same_runtime_baseline RID  the teacher on this runtime; the user baseline when there is none
                               (the teacher's export failed; text rows, one runtime per model)
    train_seconds, epochs, needs_teacher, peak_memory_mb, reused_steps: what producing it cost
    notes             list[str] what its steps reported (timing noise is in ``timing``, not here)

A recommendation (keys ``resource_limited``, ``accuracy_sensitive``, ``balanced``):
    row               RID|None the pick; ``strategy``, ``target`` its parts
    criterion         str      the rule, with the floor and budget in numbers
    ranked_by         str      what it ranks on (e.g. "speed-up vs the user baseline at b64_t1")
    tie               list[RID] rows within noise of the pick on what it ranks by (empty: clear)
    artifact, load    str, list[str]  as in the pick's row
    text              str      one paragraph with the numbers and their uncertainty
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from torchslim.measure import confidence as conf
from torchslim.options.measure import TARGETS
from torchslim.report.rows import (
    QUALITY,
    first_line,
    human_bytes,
    measured_row,
    quality,
    row_id,
    setting_key,
)
from torchslim.report.scenarios import knee, pareto_front, recommend, rule_of_thumb

TARGET_ORDER = {name: i for i, name in enumerate(TARGETS)}

# (key, heading, description) of every matrix column, in order; matrix.md and report.html use it.
COLUMNS = [
    ("strategy", "strategy", "the recipe's name for it"),
    ("target", "target", "where it runs: torch-fp32 (torch eager), ort-fp32 / ort-int8 (ONNX Runtime)"),
    ("steps", "steps", "what produced it, in order"),
    ("parameters", "params", "parameters (FP32 model, or the initialisers of an ONNX file)"),
    ("parameters_ratio", "params ×", "the teacher's parameters / this one's"),
    ("macs", "MACs", "multiply-accumulates per sample"),
    ("macs_ratio", "MACs ×", "the teacher's MACs / this one's"),
    ("bytes", "bytes", "size of the saved artifact"),
    ("bytes_ratio", "bytes ×", "the teacher's bytes / this one's"),
    ("accuracy", "test acc %", "top-1 on the test set"),
    ("accuracy_se", "± pts", "standard error of the accuracy for the test-set size, in points"),
    ("accuracy_delta", "Δ pts", "accuracy − the teacher's (as run today), in points"),
    ("retention", "retention %", "accuracy / the teacher's"),
    ("latency", "latency ms", "median per batch on this target"),
    ("speedup", "speed-up ×", "the teacher's latency on the same runtime / this one's: what compression bought"),
    ("speedup_user", "vs today ×", "the teacher's latency on torch eager / this one's: runtime and compression "
                                   "together"),
    ("runtime", "runtime", "what runs it"),
    ("kernel", "kernel path", "the kernels that run it"),
    ("train_seconds", "train s", "wall-clock seconds to produce it (the teacher's training excluded)"),
    ("epochs", "epochs", "training epochs it took"),
    ("needs_teacher", "teacher?", "whether producing it ran the teacher"),
    ("peak_memory_mb", "peak MB", "peak resident memory while producing it"),
]


# What the quality column ("accuracy" in rows) measures, per task. A text model has no labels to be
# accurate on: its quality is agreement with the teacher's embeddings, pairwise Spearman ×100 (the
# order of the similarities, which search and ranking read); mean cosine and k-NN overlap are kept
# beside it in every row.
TEXT_COLUMNS = [
    ("mean_cosine", "cosine", "mean cosine between this model's and the teacher's embedding of each held-out "
                              "sentence"),
    ("knn_overlap", "k-NN overlap", "fraction of each sentence's k nearest neighbours (cosine) shared with the "
                                    "teacher's, averaged"),
    ("sentences_per_second", "sent/s", "sentences per second at each setting (a batch of real test sentences "
                                       "padded to its longest)"),
]


def columns_for(task: str) -> list[tuple[str, str, str]]:
    """The matrix columns of ``task``: the text task names its quality column for what it is and
    adds the other two agreement metrics and the throughput."""
    if task != "text":
        return list(COLUMNS)
    q, out = QUALITY["text"], []
    for key, heading, description in COLUMNS:
        if key == "accuracy_se":  # a Spearman has no binomial standard error
            continue
        if key == "accuracy":
            out.append((key, q["heading"], q["description"]))
        elif key in ("accuracy_delta", "retention"):
            out.append((key, heading, description.replace("accuracy", "Spearman ×100")))
        elif key == "macs":
            out.append((key, heading, "multiply-accumulates per sentence as long as the largest timing batch's "
                                      "longest (attention grows with its square)"))
        else:
            out.append((key, heading, description))
        if key == "retention":
            out += TEXT_COLUMNS
    return out


def _opts(timing: dict | None) -> dict:
    """The bootstrap's settings the timing ran with (the defaults when nothing was timed)."""
    o = (timing or {}).get("options") or {}
    return {"confidence": o.get("confidence", conf.CONFIDENCE), "resamples": o.get("resamples", conf.RESAMPLES),
            "seed": o.get("seed", 0), "target_width": o.get("target_width", conf.TARGET_WIDTH)}


def _losses(recipe: Any, strategy: str) -> list[str]:
    """The distillation loss names of ``strategy``'s steps (the rule of thumb asks which)."""
    out = []
    for spec in recipe.strategies.get(strategy, []):
        for loss in getattr(spec.params, "losses", None) or []:
            name = loss.get("name") if isinstance(loss, dict) else getattr(loss, "name", None)
            if name:
                out.append(str(name))
    return out


def _cost(r: Any) -> dict[str, Any]:
    cost = r.cost()
    notes = [f"{s['step']}: {n}" for s in r.steps for n in ((s.get("metrics") or {}).get("notes") or [])
             if isinstance((s.get("metrics") or {}).get("notes"), list)]
    return {"train_seconds": cost["seconds"], "epochs": cost["epochs"], "needs_teacher": cost["needs_teacher"],
            "peak_memory_mb": cost["peak_memory_bytes"] / 2**20 if cost["peak_memory_bytes"] else None,
            "reused_steps": cost["reused_steps"], "notes": notes}


def _rows_of(r: Any, recipe: Any, measured: dict, user_id: str, out: Path, opts: dict) -> list[dict]:
    """The rows of one strategy: one per target it was measured on, one per target that failed,
    or a single failed row when the strategy itself failed."""
    steps = [s["step"] for s in r.steps] if r.steps else [s.name for s in recipe.strategies[r.name]]
    common = {"strategy": r.name, "steps": steps, **r.route, "losses": _losses(recipe, r.name)}
    records = measured["records"]
    mine = [(rid, rec) for rid, rec in records.items() if (rec.get("extra") or {}).get("strategy") == r.name]
    failures = [f for f in measured.get("failures", []) if f["strategy"] == r.name]
    rows = []
    for rid, rec in sorted(mine, key=lambda item: TARGET_ORDER.get(item[1]["extra"].get("target"), 99)):
        row = {"id": rid, **common, "target": rec["extra"].get("target"), "status": "ok", "error": None}
        row.update(measured_row(rid, rec, common["int8"], records, user_id, recipe.baseline_name, out, opts))
        extra = rec.get("extra") or {}
        if extra.get("agreement") is not None:  # text: all three agreement metrics and the throughput
            agreement = extra["agreement"]
            row.update({"agreement": agreement, "mean_cosine": agreement["mean_cosine"],
                        "knn_overlap": agreement["knn_overlap"], "pairwise_spearman": agreement["pairwise_spearman"],
                        "sentences_per_second": {k: v["sentences_per_second"] for k, v in extra["speed"].items()}})
        rows.append({**row, **_cost(r)} if r.ok else row)
    for f in failures:
        rows.append({"id": row_id(r.name, f.get("target")), **common, "target": f.get("target"), "status": "failed",
                     "error": f["error"]})
    if not rows and r.ok and r.final is not None:  # finished, but no listed target runs its kind of model
        rows.append({"id": r.name, **common, "target": None, "status": "skipped",
                     "error": f"none of measure.targets ({', '.join(recipe.measure.targets)}) runs "
                              f"{'an ONNX' if r.final.kind == 'onnx' else 'a torch'} model"})
    elif not rows:
        rows.append({"id": r.name, **common, "target": None, "status": "failed",
                     "error": r.error or "not measured"})
    return rows


def build_matrix(recipe: Any, results: list[Any], measured: dict[str, Any], *, out: str | Path,
                 data: dict[str, Any], quick: bool, wall_seconds: float) -> dict[str, Any]:
    """Assemble ``matrix.json`` (the schema is this module's docstring).

    Args:
        recipe: the :class:`~torchslim.pipeline.recipe.Recipe` that ran.
        results: every strategy's :class:`~torchslim.pipeline.runner.StrategyResult`, in order.
        measured: ``{"records": {row id: MeasureRecord dict with extra strategy/target/artifact},
            "timing": TimingRun summary or None, "failures": [{"strategy", "target", "error"}]}``.
        out: the run directory (artifact paths are given relative to it).
        data: ``{"name", "train_samples", "test_samples"}``.
    """
    from torchslim.measure import machine_info
    from torchslim.report.scenarios import recommend, rule_of_thumb

    cfg, out = recipe.measure, Path(out)
    timing = measured.get("timing")
    opts = _opts(timing)
    baseline = recipe.baseline_name
    records = measured["records"]
    user_id = next((rid for rid, rec in records.items() if rec["extra"].get("strategy") == baseline
                    and rec["extra"].get("target") == "torch-fp32"),
                   next((rid for rid, rec in records.items() if rec["extra"].get("strategy") == baseline), None))
    rows = [row for r in results for row in _rows_of(r, recipe, measured, user_id, out, opts)]
    failures = [{"strategy": r["strategy"], "target": r["target"], "error": first_line(r["error"])}
                for r in rows if r["status"] == "failed"]
    task = getattr(recipe, "task", "image")
    primary = setting_key(max(cfg.batch_sizes), min(cfg.thread_counts))
    gain = {r["target"]: r.get("speedup_user_ci") or {} for r in rows
            if r["strategy"] == baseline and r["status"] == "ok" and r["id"] != user_id}
    matrix: dict[str, Any] = {
        "format": 2, "recipe": recipe.name, "source": recipe.source, "quick": quick,
        "task": task, "quality": QUALITY[task],
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_seconds": wall_seconds,
        "baseline": baseline, "user_baseline": user_id,
        "targets": [{"name": t, "runtime": TARGETS[t][0], "description": TARGETS[t][1]}
                    for t in TARGETS if any(r.get("target") == t for r in rows)],
        "settings": [setting_key(b, t) for t in cfg.thread_counts for b in cfg.batch_sizes], "primary": primary,
        "data": dict(data), "scenarios": recipe.scenarios.model_dump(mode="json"), "machine": machine_info(),
        "columns": [{"key": k, "heading": h, "description": d} for k, h, d in columns_for(task)],
        "rows": rows, "failed": [r["strategy"] for r in rows if r["status"] == "failed" and r["target"] is None],
        "failures": failures, "timing": timing, "runtime_gain": gain,
    }
    matrix["recommendations"] = recommend(matrix)
    matrix["rule_of_thumb"] = rule_of_thumb(matrix)
    return matrix


__all__ = ["COLUMNS", "QUALITY", "build_matrix", "columns_for", "first_line", "human_bytes", "knee",
           "pareto_front", "quality", "recommend", "row_id", "rule_of_thumb", "setting_key"]
