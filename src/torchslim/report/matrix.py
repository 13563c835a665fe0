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
    failed            list[str] strategies (or ``RID`` for one target) that failed or were not measured
    failures          list     ``{"strategy", "target" (None: the whole strategy), "error"}`` (one line)
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
    status            str      "ok" | "failed"; ``error`` str | None (one line)
    steps, families   list[str]
    artifact          str      the model's path relative to the run directory
                               (``steps/.../model`` or ``.../model.onnx``)
    load              list[str] two Python lines that load and run it on a tensor ``x``
    input_name        str|None the ONNX input name (ONNX Runtime rows)
    parameters, macs, bytes (int) and parameters_ratio, macs_ratio, bytes_ratio (float):
                               ratios are the user baseline's / this row's
    accuracy          float    top-1 % on the test set; ``test_samples`` int
    accuracy_se       float    its standard error in points (binomial, for test_samples)
    accuracy_delta    float    accuracy - the user baseline's, in points; ``accuracy_delta_se``
    accuracy_within_noise bool the delta is within 2 standard errors (not a real difference)
    retention         float    accuracy / the user baseline's, %
    latency           S -> float   median ms per batch
    speedup           S -> float   same-runtime speed-up (the same-runtime baseline's time / this)
    speedup_ci        S -> ratio interval of ``speedup``
    speedup_user      S -> float   speed-up against the user baseline
    speedup_user_ci   S -> ratio interval of ``speedup_user``
    same_runtime_baseline RID
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

import math
import time
from typing import Any

STRUCTURAL_STEPS = {"prune", "sparsify", "quantize"}

# (key, heading, description) of every matrix column, in order; matrix.md and report.html use it.
COLUMNS = [
    ("strategy", "strategy", "the recipe's name for it"),
    ("steps", "steps", "what produced it, in order"),
    ("parameters", "params", "parameters (FP32 model, or the initialisers of an ONNX file)"),
    ("parameters_ratio", "params ×", "teacher's parameters / this one's"),
    ("macs", "MACs", "multiply-accumulates per sample"),
    ("macs_ratio", "MACs ×", "teacher's MACs / this one's"),
    ("bytes", "bytes", "size of the saved artifact"),
    ("bytes_ratio", "bytes ×", "teacher's bytes / this one's"),
    ("accuracy", "test acc %", "top-1 on the test set"),
    ("accuracy_delta", "Δ pts", "accuracy − the teacher's, in points"),
    ("retention", "retention %", "accuracy / the teacher's"),
    ("latency", "latency ms", "median per batch, on the runtime that ships it"),
    ("speedup", "speed-up ×", "the teacher's latency / this one's, timed in the same run"),
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
QUALITY = {
    "image": {"name": "test accuracy", "short": "accuracy", "heading": "test acc %", "unit": "%", "axis": "test accuracy (%)",
              "phrase": "{:.2f}% test accuracy",
              "description": "top-1 on the test set"},
    "text": {"name": "agreement (pairwise Spearman ×100)", "short": "agreement", "heading": "Spearman ×100", "unit": "",
             "axis": "agreement with the teacher: pairwise Spearman ×100",
             "phrase": "agreement {:.2f} (pairwise Spearman ×100)",
             "description": "agreement with the teacher on held-out sentences: Spearman's rho between this "
                            "model's and the teacher's cosine similarities over all sentence pairs, ×100 (the "
                            "teacher: 100)"},
}
TEXT_COLUMNS = [
    ("mean_cosine", "cosine", "mean cosine between this model's and the teacher's embedding of each held-out "
                              "sentence"),
    ("knn_overlap", "k-NN overlap", "fraction of each sentence's k nearest neighbours (cosine) shared with the "
                                    "teacher's, averaged"),
    ("sentences_per_second", "sent/s", "sentences per second at each setting (a batch of real test sentences "
                                       "padded to its longest)"),
]


def quality(matrix: dict) -> dict:
    """The quality metric of ``matrix`` (test accuracy unless its task says otherwise)."""
    return QUALITY[matrix.get("task", "image")]


def columns_for(task: str) -> list[tuple[str, str, str]]:
    """The matrix columns of ``task``: the text task names its quality column for what it is and
    adds the other two agreement metrics and the throughput."""
    if task != "text":
        return list(COLUMNS)
    q, out = QUALITY["text"], []
    for key, heading, description in COLUMNS:
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


def setting_key(batch_size: int, threads: int) -> str:
    return f"b{batch_size}_t{threads}"


def _ratio(base: float | None, value: float | None) -> float | None:
    if base is None or value is None or value <= 0:
        return None
    return base / value


def _kernel(record: dict, steps: list[str]) -> str:
    extra = record.get("extra") or {}
    if extra.get("kernel"):
        return str(extra["kernel"])
    if record.get("runtime", "").startswith("onnx"):
        return "ONNX Runtime " + ("INT8" if "quantize" in steps else "FP32")
    return "torch eager FP32"


def build_matrix(recipe: Any, results: list[Any], records: dict[str, dict], ctx: Any, *, quick: bool,
                 wall_seconds: float) -> dict[str, Any]:
    """Assemble ``matrix.json``: rows, recommendations and the rule-of-thumb check."""
    from torchslim.measure import machine_info

    cfg = recipe.measure
    settings = [(b, t) for t in cfg.threads for b in cfg.batch_sizes]
    baseline = recipe.baseline_name
    base = records.get(baseline)
    rows = []
    for r in results:
        steps = [s["step"] for s in r.steps] if r.steps else [s.name for s in recipe.strategies[r.name]]
        row: dict[str, Any] = {"strategy": r.name, "status": "ok" if r.ok and r.name in records else "failed",
                               "error": r.error, "steps": steps, "families": families(steps)}
        rec = records.get(r.name)
        if rec is None:
            if row["error"] is None:
                row["error"] = "not measured"
            rows.append(row)
            continue
        cost = r.cost()
        row.update({
            "parameters": rec["parameters"], "macs": rec["macs"], "bytes": rec["bytes"],
            "accuracy": rec["accuracy"], "test_samples": rec["test_samples"],
            "runtime": rec["runtime"], "kernel": _kernel(rec, steps),
            "latency": {setting_key(s["batch_size"], s["threads"]): s["median_ms"] for s in rec["latency"]},
            "latency_spread": {setting_key(s["batch_size"], s["threads"]): s["p90_ms"] / max(s["p10_ms"], 1e-9)
                               for s in rec["latency"]},
            "train_seconds": cost["seconds"], "epochs": cost["epochs"], "needs_teacher": cost["needs_teacher"],
            "peak_memory_mb": cost["peak_memory_bytes"] / 2**20 if cost["peak_memory_bytes"] else None,
            "reused_steps": cost["reused_steps"], "notes": list(rec.get("notes", [])),
        })
        agreement = (rec.get("extra") or {}).get("agreement")
        if agreement is not None:  # text: all three agreement metrics and the throughput
            row.update({"agreement": agreement, "mean_cosine": agreement["mean_cosine"],
                        "knn_overlap": agreement["knn_overlap"], "pairwise_spearman": agreement["pairwise_spearman"],
                        "sentences_per_second": {k: v["sentences_per_second"]
                                                 for k, v in rec["extra"]["speed"].items()}})
        for s in r.steps:
            m = s.get("metrics") or {}
            for note in m.get("notes", []) if isinstance(m.get("notes"), list) else []:
                row["notes"].append(f"{s['step']}: {note}")
        if base is not None:
            for key in ("parameters", "macs", "bytes"):
                row[f"{key}_ratio"] = _ratio(base[key], rec[key])
            if base["accuracy"] is not None and rec["accuracy"] is not None:
                row["accuracy_delta"] = rec["accuracy"] - base["accuracy"]
                row["retention"] = 100.0 * rec["accuracy"] / base["accuracy"] if base["accuracy"] else None
            base_lat = {setting_key(s["batch_size"], s["threads"]): s["median_ms"] for s in base["latency"]}
            row["speedup"] = {k: _ratio(base_lat.get(k), v) for k, v in row["latency"].items()}
        rows.append(row)
    data = ctx.data
    task = getattr(recipe, "task", "image")
    matrix: dict[str, Any] = {
        "format": 1, "recipe": recipe.name, "source": recipe.source, "quick": quick,
        "task": task, "quality": QUALITY[task],
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_seconds": wall_seconds,
        "baseline": baseline, "settings": [setting_key(b, t) for b, t in settings],
        "primary": setting_key(max(cfg.batch_sizes), min(cfg.threads)),
        "data": {"name": data.name, "train_samples": len(data.train.dataset), "test_samples": len(data.test.dataset)},
        "scenarios": recipe.scenarios.model_dump(mode="json"),
        "machine": machine_info(),
        "columns": [{"key": k, "heading": h, "description": d} for k, h, d in columns_for(task)],
        "rows": rows, "failed": [r["strategy"] for r in rows if r["status"] != "ok"],
    }
    matrix["recommendations"] = recommend(matrix)
    matrix["rule_of_thumb"] = rule_of_thumb(matrix)
    return matrix


def families(steps: list[str]) -> list[str]:
    out = []
    # Dropping layers is structural on its own, but before distillation it is how the distilled
    # student is made (DistilBERT's initialisation), so that strategy counts as distillation.
    layers_alone = "layers" in steps and "distill" not in steps
    if STRUCTURAL_STEPS & set(steps) or layers_alone:
        out.append("structural")
    if "distill" in steps:
        out.append("distillation")
    return out


# -- scenarios --------------------------------------------------------------------------------------


def _ok(matrix: dict) -> list[dict]:
    return [r for r in matrix["rows"] if r["status"] == "ok" and r.get("accuracy") is not None]


def _lat(row: dict, matrix: dict) -> float:
    return row["latency"].get(matrix["primary"], math.inf)


def pareto_front(rows: list[dict], matrix: dict) -> list[dict]:
    """Rows no other row beats on both latency (lower) and accuracy (higher), by latency."""
    front = []
    for r in rows:
        dominated = any(_lat(o, matrix) <= _lat(r, matrix) and o["accuracy"] >= r["accuracy"]
                        and (_lat(o, matrix) < _lat(r, matrix) or o["accuracy"] > r["accuracy"]) for o in rows)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: _lat(r, matrix))


def knee(front: list[dict], matrix: dict) -> dict | None:
    """The front's point farthest from the chord joining its two ends, with log-latency and
    accuracy each scaled to [0, 1] (the point of diminishing returns)."""
    if not front:
        return None
    if len(front) == 1:
        return front[0]
    if len(front) == 2:  # no knee between two points: the faster unless it gives up more than the floor
        fast, accurate = front
        floor = matrix["scenarios"]["accuracy_floor"]
        return fast if accurate["accuracy"] - fast["accuracy"] <= floor else accurate
    xs = [math.log(max(_lat(r, matrix), 1e-9)) for r in front]
    ys = [r["accuracy"] for r in front]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    nx = [(x - x0) / ((x1 - x0) or 1) for x in xs]
    ny = [(y - y0) / ((y1 - y0) or 1) for y in ys]
    (ax, ay), (bx, by) = (nx[0], ny[0]), (nx[-1], ny[-1])
    norm = math.hypot(bx - ax, by - ay) or 1.0
    dist = [abs((bx - ax) * (ay - y) - (ax - x) * (by - ay)) / norm for x, y in zip(nx, ny, strict=True)]
    return front[max(range(len(front)), key=lambda i: (dist[i], ys[i]))]


def _describe(row: dict, matrix: dict) -> str:
    lat, speed = _lat(row, matrix), (row.get("speedup") or {}).get(matrix["primary"])
    batch = matrix["primary"].split("_")[0][1:]
    parts = [quality(matrix)["phrase"].format(row["accuracy"])]
    if row.get("accuracy_delta") is not None:
        parts[-1] += f" ({row['accuracy_delta']:+.2f} points vs the teacher)"
    parts.append(f"{lat:.3g} ms per batch of {batch}" + (f" ({speed:.2f}× the teacher's speed)" if speed else ""))
    if row.get("bytes_ratio"):
        parts.append(f"{human_bytes(row['bytes'])} ({row['bytes_ratio']:.1f}× smaller)")
    parts.append(f"{row['train_seconds']:.0f} s to produce" if row.get("train_seconds") else "no training")
    return ", ".join(parts)


def recommend(matrix: dict) -> dict[str, dict]:
    """One recommendation per scenario, each with the chosen strategy and a sentence of numbers."""
    rows = _ok(matrix)
    sc = matrix["scenarios"]
    base = next((r for r in rows if r["strategy"] == matrix["baseline"]), None)
    out: dict[str, dict] = {}
    if base is None or not rows:
        reason = "the baseline was not measured" if base is None else "no strategy was measured"
        return {k: {"strategy": None, "text": f"No recommendation: {reason}."}
                for k in ("resource_limited", "accuracy_sensitive", "balanced")}
    floor = base["accuracy"] - sc["accuracy_floor"]
    within = [r for r in rows if r["accuracy"] >= floor]
    metric = sc["resource"]
    key = (lambda r: _lat(r, matrix)) if metric == "latency" else (lambda r: r["bytes"])
    pick = min(within, key=key) if within else None
    out["resource_limited"] = {
        "strategy": pick and pick["strategy"], "criterion": f"{'fastest' if metric == 'latency' else 'smallest'} "
        f"with {quality(matrix)['name']} ≥ {floor:.2f}{quality(matrix)['unit']} (teacher − {sc['accuracy_floor']:g} "
        "point)",
        "text": (f"Resource-limited: **{pick['strategy']}**, the {'fastest' if metric == 'latency' else 'smallest'} "
                 f"strategy within {sc['accuracy_floor']:g} point of the teacher — {_describe(pick, matrix)}."
                 if pick else f"Resource-limited: no strategy stays within {sc['accuracy_floor']:g} point of the "
                 "teacher; relax `scenarios.accuracy_floor` or train longer.")}
    budget = _lat(base, matrix) * sc["latency_budget"]
    fits = [r for r in rows if _lat(r, matrix) <= budget
            and (sc["size_budget"] is None or r["bytes"] <= base["bytes"] * sc["size_budget"])]
    best = max(fits, key=lambda r: r["accuracy"]) if fits else None
    size_text = f" and at most {sc['size_budget']:g}× its bytes" if sc["size_budget"] else ""
    out["accuracy_sensitive"] = {
        "strategy": best and best["strategy"],
        "criterion": f"most accurate with latency ≤ {sc['latency_budget']:g}× the teacher's{size_text}",
        "text": (f"Accuracy-sensitive: **{best['strategy']}**, the most accurate strategy at most "
                 f"{sc['latency_budget']:g}× the teacher's latency{size_text} — {_describe(best, matrix)}."
                 if best else f"Accuracy-sensitive: nothing runs within {sc['latency_budget']:g}× the teacher's "
                 "latency; raise `scenarios.latency_budget`.")}
    front = pareto_front(rows, matrix)
    balanced_floor = sc.get("balanced_floor", 3.0)
    near = [r for r in front if r["accuracy"] >= base["accuracy"] - balanced_floor]
    k = knee(near, matrix)
    left = [r["strategy"] for r in front if r not in near]
    out["balanced"] = {
        "strategy": k and k["strategy"], "front": [r["strategy"] for r in front],
        "criterion": f"the knee of the accuracy–latency Pareto front, within {balanced_floor:g} points of the teacher",
        "text": (f"Balanced: **{k['strategy']}**, the knee of the accuracy–latency Pareto front "
                 f"({' → '.join(r['strategy'] for r in near)})"
                 + (f", leaving out {', '.join(left)} (more than {balanced_floor:g} points below the teacher)"
                    if left else "") + f" — {_describe(k, matrix)}." if k else
                 "Balanced: no Pareto front (nothing measured).")}
    return out


# -- the rule of thumb, checked ---------------------------------------------------------------------


def _pure(rows: list[dict], family: str) -> list[dict]:
    return [r for r in rows if r["families"] == [family]]


def _median(values: list[float]) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _cell(claim: str, s_value: float | None, d_value: float | None, s_better_if: str, unit: str,
          what: str) -> dict:
    if s_value is None or d_value is None:
        return {"claim": claim, "status": "not measured",
                "evidence": "needs at least one purely structural and one purely distilled strategy"}
    holds = s_value >= d_value if s_better_if == "higher" else s_value <= d_value
    return {"claim": claim, "status": "confirmed" if holds else "contradicted",
            "evidence": f"{what}: structural {s_value:.3g}{unit} vs distillation {d_value:.3g}{unit}"}


def rule_of_thumb(matrix: dict) -> list[dict]:
    """The practitioners' table, each cell marked confirmed / contradicted by this run's numbers.

    Families are compared on "pure" strategies: structural = prune/sparsify/quantize without
    distillation; distillation = distilled without structural steps (hybrids are left out).
    """
    rows = _ok(matrix)
    s, d = _pure(rows, "structural"), _pure(rows, "distillation")
    p = matrix["primary"]

    def best(rs: list[dict], key: str) -> float | None:
        values = [r.get(key) for r in rs if r.get(key) is not None]
        return max(values) if values else None

    def efficiency(r: dict) -> float | None:
        speed, macs = (r.get("speedup") or {}).get(p), r.get("macs_ratio")
        return speed / macs if speed and macs else None

    cells = [
        {"aspect": "compression", **_cell("structural compression compresses more strongly", best(s, "bytes_ratio"),
                                          best(d, "bytes_ratio"), "higher", "×", "best bytes reduction")},
        {"aspect": "accuracy retention", **_cell("distillation keeps accuracy best, structural moderately",
                                                 best(s, "retention"), best(d, "retention"), "lower", "%",
                                                 "best accuracy retention")},
        {"aspect": "hardware fit", **_cell("structural compression fits hardware better (its MAC savings "
                                           "become speed)", _median([efficiency(r) for r in s]),
                                           _median([efficiency(r) for r in d]), "higher", "",
                                           "median (speed-up ÷ MACs reduction)")},
        {"aspect": "training cost", **_cell("structural compression costs little to train; distillation needs "
                                            "a teacher and training", _median([r["train_seconds"] for r in s]),
                                            _median([r["train_seconds"] for r in d]), "lower", " s",
                                            "median seconds to produce")},
    ]
    recs = matrix.get("recommendations") or recommend(matrix)
    by_name = {r["strategy"]: r for r in rows}
    advice = [
        ("resource_limited", "resource-limited: prune + quantize",
         lambda st: bool({"prune", "quantize"} & set(st))),
        ("accuracy_sensitive", "accuracy-sensitive: distil (with intermediate-layer matching)",
         lambda st: "distill" in st),
        ("balanced", "balanced: structured pruning, then distillation",
         lambda st: "prune" in st and "distill" in st[st.index("prune"):]),
    ]
    for key, claim, test in advice:
        pick = recs.get(key, {}).get("strategy")
        if pick is None or pick not in by_name:
            cells.append({"aspect": key.replace("_", "-"), "claim": claim, "status": "not measured",
                          "evidence": "no strategy qualified in this scenario"})
            continue
        steps = by_name[pick]["steps"]
        cells.append({"aspect": key.replace("_", "-"), "claim": claim,
                      "status": "confirmed" if test(steps) else "contradicted",
                      "evidence": f"measured pick: {pick} ({' → '.join(steps)})"})
    return cells


def human_bytes(n: float | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


__all__ = ["COLUMNS", "QUALITY", "build_matrix", "columns_for", "families", "human_bytes", "knee", "pareto_front",
           "quality", "recommend", "rule_of_thumb", "setting_key"]
