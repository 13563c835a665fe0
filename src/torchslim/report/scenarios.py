"""What to ship per deployment scenario, read off a matrix (:mod:`torchslim.report.matrix`), and the
practitioners' rule of thumb checked against what the picks actually did.

Every scenario has an accuracy floor (points below the user baseline: the teacher as run today)
and a budget (a fraction of the user baseline's latency at the primary setting, or of its bytes),
from the recipe's ``scenarios:``. Rows are ranked across targets, so speed is ranked on the
speed-up against the *user baseline* (one reference for every row); the rule of thumb reads the
*same-runtime* speed-ups (what compression bought, the runtime's gain taken out). Two rows whose
speed-up intervals overlap, or whose accuracies differ by less than noise, are a tie and named as
one.
"""

from __future__ import annotations

import math
from typing import Any

from torchslim.measure.confidence import accuracies_differ, intervals_overlap

SCENARIOS = ("resource_limited", "accuracy_sensitive", "balanced")
# Distillation losses that read only the outputs; any other loss matches intermediate layers.
OUTPUT_LOSSES = {"ce", "kd", "dkd", "dist", "embed-cos", "embed-sim", "embed-mse"}


def ok_rows(matrix: dict) -> list[dict]:
    """Rows measured with an accuracy and a latency at the primary setting."""
    p = matrix["primary"]
    return [r for r in matrix["rows"] if r["status"] == "ok" and r.get("accuracy") is not None
            and p in (r.get("latency") or {})]


def user_baseline(matrix: dict) -> dict | None:
    """The row of the teacher as the user runs it today (``matrix["user_baseline"]``)."""
    want = matrix.get("user_baseline")
    return next((r for r in ok_rows(matrix) if r.get("id", r["strategy"]) == want or
                 (want is None and r["strategy"] == matrix["baseline"])), None)


def _lat(row: dict, matrix: dict) -> float:
    return row["latency"].get(matrix["primary"], math.inf)


def _speed(row: dict, matrix: dict) -> float:
    """Speed-up against the user baseline at the primary setting (older matrices: ``speedup``)."""
    key = "speedup_user" if "speedup_user" in row else "speedup"
    value = (row.get(key) or {}).get(matrix["primary"])
    return value if value is not None else 1.0 / max(_lat(row, matrix), 1e-12)


def _interval(row: dict, matrix: dict) -> tuple[float, float] | None:
    ci = (row.get("speedup_user_ci") or {}).get(matrix["primary"])
    return (ci["low"], ci["high"]) if ci and ci.get("low") is not None else None


def speed_tie(a: dict, b: dict, matrix: dict) -> bool:
    """Whether ``a`` and ``b``'s speed-ups against the user baseline are within noise (intervals
    overlap; rows without intervals tie only when equal)."""
    ia, ib = _interval(a, matrix), _interval(b, matrix)
    if ia is None or ib is None:
        return _speed(a, matrix) == _speed(b, matrix)
    return intervals_overlap(ia, ib)


def accuracy_tie(a: dict, b: dict) -> bool:
    """Whether ``a`` and ``b``'s accuracies differ by no more than noise (2 standard errors)."""
    na, nb = a.get("test_samples"), b.get("test_samples")
    if not na or not nb or a.get("accuracy_se") is None or b.get("accuracy_se") is None:
        return a["accuracy"] == b["accuracy"]  # no binomial error (text agreement): only equal ties
    return not accuracies_differ(a["accuracy"], na, b["accuracy"], nb)


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


# -- the three scenarios ----------------------------------------------------------------------------


def _rid(row: dict) -> str:
    return row.get("id") or row["strategy"]


def _describe(row: dict, matrix: dict) -> str:
    """The pick's numbers, each with its uncertainty."""
    from torchslim.report.rows import human_bytes, quality

    p = matrix["primary"]
    batch = p.split("_")[0][1:]
    acc = quality(matrix)["phrase"].format(row["accuracy"])
    if row.get("accuracy_se") is not None:
        acc += f" ± {row['accuracy_se']:.2f}"
    if row.get("accuracy_delta") is not None:
        noise = ", within noise" if row.get("accuracy_within_noise") else ""
        acc += f" ({row['accuracy_delta']:+.2f} points vs the teacher{noise})"
    parts = [acc, f"{_lat(row, matrix):.3g} ms per batch of {batch}"]
    keys = [("speedup_user", "vs the teacher as run today")]
    if row.get("same_runtime_baseline") not in (None, matrix.get("user_baseline")):
        keys.append(("speedup", "vs the teacher on the same runtime"))
    for key, label in keys:
        value, ci = (row.get(key) or {}).get(p), (row.get(f"{key}_ci") or {}).get(p)
        if value is not None:
            band = f" [{ci['low']:.2f}–{ci['high']:.2f}]" if ci and ci.get("low") is not None else ""
            parts.append(f"{value:.2f}×{band} {label}")
    if row.get("bytes_ratio"):
        parts.append(f"{human_bytes(row['bytes'])} ({row['bytes_ratio']:.1f}× smaller)")
    parts.append(f"{row['train_seconds']:.0f} s to produce" if row.get("train_seconds") else "no training")
    return ", ".join(parts)


def _pick(row: dict | None, matrix: dict, criterion: str, ranked_by: str, tie: list[dict],
          headline: str, empty: str) -> dict[str, Any]:
    out: dict[str, Any] = {"row": None, "strategy": None, "target": None, "criterion": criterion,
                           "ranked_by": ranked_by, "tie": [], "artifact": None, "load": [],
                           "failed": [f["strategy"] if f.get("target") is None else f"{f['strategy']}@{f['target']}"
                                      for f in matrix.get("failures", [])]}
    if row is None:
        out["text"] = f"{headline}: {empty}"
        return out
    out.update(row=_rid(row), strategy=row["strategy"], target=row.get("target"), tie=[_rid(r) for r in tie],
               artifact=row.get("artifact"), load=list(row.get("load") or []))
    where = f" on {row['target']}" if row.get("target") else ""
    tie_text = (f" Within noise of it on {ranked_by.split(' at ')[0]}: {', '.join(_rid(r) for r in tie)} — a tie; "
                f"{'either' if len(tie) == 1 else 'any of them'} serves." if tie else "")
    load = f" Load it from `{row['artifact']}`." if row.get("artifact") else ""
    out["text"] = (f"{headline}: **{row['strategy']}**{where}, {criterion} — {_describe(row, matrix)}."
                   f"{tie_text}{load}")
    return out


def _resource_limited(rows: list[dict], base: dict, matrix: dict) -> dict:
    sc = matrix["scenarios"]
    floor, budget = base["accuracy"] - sc["accuracy_floor"], sc.get("resource_budget", 1.0)
    by_bytes = sc.get("resource") == "bytes"
    fits = [r for r in rows if r["accuracy"] >= floor and
            (r["bytes"] <= base["bytes"] * budget if by_bytes else _lat(r, matrix) <= _lat(base, matrix) * budget)]
    if by_bytes:
        ranked = sorted(fits, key=lambda r: r["bytes"])
        tie = [r for r in ranked[1:] if ranked and r["bytes"] == ranked[0]["bytes"]]
        ranked_by = "bytes on disk"
    else:
        ranked = sorted(fits, key=lambda r: -_speed(r, matrix))
        tie = [r for r in ranked[1:] if speed_tie(ranked[0], r, matrix)]
        ranked_by = f"speed-up vs the teacher as run today at {matrix['primary']}"
    what = "smallest" if by_bytes else "fastest"
    criterion = (f"the {what} row at most {sc['accuracy_floor']:g} point(s) below the teacher and at most "
                 f"{budget:g}× its {'bytes' if by_bytes else 'latency'} (ranked by {ranked_by})")
    return _pick(ranked[0] if ranked else None, matrix, criterion, ranked_by, tie,
                 "Resource-limited", f"no row stays within {sc['accuracy_floor']:g} point(s) of the teacher inside "
                 "the budget; relax `scenarios.accuracy_floor` or `scenarios.resource_budget`, or train longer.")


def _accuracy_sensitive(rows: list[dict], base: dict, matrix: dict) -> dict:
    sc = matrix["scenarios"]
    floor = base["accuracy"] - sc.get("sensitive_floor", 1.0)
    size = sc.get("size_budget")
    fits = [r for r in rows if r["accuracy"] >= floor and _lat(r, matrix) <= _lat(base, matrix) * sc["latency_budget"]
            and (size is None or r["bytes"] <= base["bytes"] * size)]
    best = max(fits, key=lambda r: r["accuracy"]) if fits else None
    # rows whose accuracy is within noise of the best are equally accurate: the fastest of them is
    # the pick, the others its tie
    tied = sorted((r for r in fits if r is best or accuracy_tie(best, r)), key=lambda r: -_speed(r, matrix))
    size_text = f" and at most {size:g}× its bytes" if size else ""
    criterion = (f"the most accurate row (the fastest of those within noise of the best) at most "
                 f"{sc.get('sensitive_floor', 1.0):g} point(s) below the teacher with at most "
                 f"{sc['latency_budget']:g}× its latency{size_text}")
    return _pick(tied[0] if tied else None, matrix, criterion, "accuracy", tied[1:],
                 "Accuracy-sensitive", f"no row is within {sc.get('sensitive_floor', 1.0):g} point(s) of the teacher "
                 f"at {sc['latency_budget']:g}× its latency{size_text}; raise `scenarios.latency_budget` or "
                 "`scenarios.sensitive_floor`, or distil longer.")


def _balanced(rows: list[dict], base: dict, matrix: dict) -> dict:
    sc = matrix["scenarios"]
    floor, budget = base["accuracy"] - sc.get("balanced_floor", 3.0), sc.get("balanced_budget", 1.0)
    front = pareto_front(rows, matrix)
    near = [r for r in front if r["accuracy"] >= floor and _lat(r, matrix) <= _lat(base, matrix) * budget]
    k = knee(near, matrix)
    tie = [r for r in near if k is not None and r is not k and speed_tie(k, r, matrix) and accuracy_tie(k, r)]
    left = [_rid(r) for r in front if r not in near]
    criterion = (f"the knee of the accuracy–latency Pareto front ({' → '.join(_rid(r) for r in near)}) among rows at "
                 f"most {sc.get('balanced_floor', 3.0):g} points below the teacher and {budget:g}× its latency"
                 + (f", leaving out {', '.join(left)}" if left else ""))
    out = _pick(k, matrix, criterion, f"accuracy and speed-up vs the teacher as run today at "
                f"{matrix['primary']}", tie, "Balanced", "no Pareto point within the floor and budget; raise "
                "`scenarios.balanced_floor`.")
    out["front"] = [_rid(r) for r in front]
    return out


def recommend(matrix: dict) -> dict[str, dict]:
    """One recommendation per scenario: the pick (row, strategy, target), its artifact and load
    lines, the rows tied with it, the rule in numbers and a paragraph of text."""
    rows, base = ok_rows(matrix), user_baseline(matrix)
    if base is None or not rows:
        reason = "the teacher was not measured" if base is None else "no strategy was measured"
        return {k: {"row": None, "strategy": None, "target": None, "tie": [], "artifact": None, "load": [],
                    "failed": [], "text": f"No recommendation: {reason}."} for k in SCENARIOS}
    return {"resource_limited": _resource_limited(rows, base, matrix),
            "accuracy_sensitive": _accuracy_sensitive(rows, base, matrix),
            "balanced": _balanced(rows, base, matrix)}


# -- the rule of thumb, checked ---------------------------------------------------------------------


def _pure(rows: list[dict], family: str) -> list[dict]:
    return [r for r in rows if r["families"] == [family]]


def _median(values: list[float | None]) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _cell(aspect: str, claim: str, s_value: float | None, d_value: float | None, s_better_if: str, unit: str,
          what: str, basis: str) -> dict:
    if s_value is None or d_value is None:
        return {"aspect": aspect, "claim": claim, "status": "not measured", "basis": basis,
                "evidence": "needs at least one purely structural and one purely distilled strategy"}
    holds = s_value >= d_value if s_better_if == "higher" else s_value <= d_value
    return {"aspect": aspect, "claim": claim, "status": "confirmed" if holds else "contradicted", "basis": basis,
            "evidence": f"{what}: structural {s_value:.3g}{unit} vs distillation {d_value:.3g}{unit}"}


def _did(row: dict) -> dict[str, bool]:
    steps = row["steps"]
    distilled = "distill" in steps
    return {"prune": "prune" in steps, "quantize": bool(row.get("int8")), "distill": distilled,
            "intermediate": distilled and any(loss not in OUTPUT_LOSSES for loss in row.get("losses") or []),
            "prune_then_distill": "prune" in steps and "distill" in steps[steps.index("prune"):]}


PRACTICE = {"prune": "prune", "quantize": "quantize", "distill": "distil", "intermediate": "match intermediate layers",
            "prune_then_distill": "distil after pruning"}
# scenario -> (claim, the practices the claim names, in order)
ADVICE = {
    "resource_limited": ("resource-limited: prune + quantize", ("prune", "quantize")),
    "accuracy_sensitive": ("accuracy-sensitive: distil (with intermediate-layer matching)", ("distill", "intermediate")),
    "balanced": ("balanced: structured pruning, then distillation", ("prune", "prune_then_distill")),
}


def _advice_cell(key: str, matrix: dict, by_id: dict[str, dict], recs: dict) -> dict:
    claim, practices = ADVICE[key]
    aspect = key.replace("_", "-")
    pick = (recs.get(key) or {}).get("row") or (recs.get(key) or {}).get("strategy")
    row = by_id.get(pick) if pick else None
    if row is None:
        return {"aspect": aspect, "claim": claim, "status": "not measured", "basis": "the scenario's pick",
                "evidence": "no row qualified in this scenario"}
    did = _did(row)
    done = [p for p in practices if did[p]]
    status = "confirmed" if len(done) == len(practices) else "partly" if done else "contradicted"
    speed = (row.get("speedup") or {}).get(matrix["primary"])
    same = f", same-runtime speed-up {speed:.2f}×" if speed is not None else ""
    return {"aspect": aspect, "claim": claim, "status": status,
            "basis": "what the scenario's pick did; speed as same-runtime speed-up",
            "evidence": f"measured pick: {_rid(row)} ({' → '.join(row['steps'])}{same}); it "
                        + ", ".join(f"{'did' if did[p] else 'did not'} {PRACTICE[p]}" for p in practices)}


def rule_of_thumb(matrix: dict) -> list[dict]:
    """The practitioners' table, each cell confirmed / partly / contradicted by this run's numbers.

    Families are compared on "pure" strategies: structural = prune/sparsify/quantize without
    distillation; distillation = distilled without structural steps (hybrids are left out). Speed
    is the same-runtime speed-up (compression's gain, not the runtime's). A scenario's advice is
    confirmed only when its pick did every practice the advice names, "partly" when some.
    """
    rows = ok_rows(matrix)
    s, d = _pure(rows, "structural"), _pure(rows, "distillation")
    p = matrix["primary"]

    def best(rs: list[dict], key: str) -> float | None:
        values = [r.get(key) for r in rs if r.get(key) is not None]
        return max(values) if values else None

    def efficiency(r: dict) -> float | None:
        speed, macs = (r.get("speedup") or {}).get(p), r.get("macs_ratio")
        return speed / macs if speed and macs else None

    cells = [
        _cell("compression", "structural compression compresses more strongly", best(s, "bytes_ratio"),
              best(d, "bytes_ratio"), "higher", "×", "best bytes reduction", "bytes on disk"),
        _cell("accuracy retention", "distillation keeps accuracy best, structural moderately", best(s, "retention"),
              best(d, "retention"), "lower", "%", "best accuracy retention", "test accuracy"),
        _cell("hardware fit", "structural compression fits hardware better (its MAC savings become speed)",
              _median([efficiency(r) for r in s]), _median([efficiency(r) for r in d]), "higher", "",
              "median (same-runtime speed-up ÷ MACs reduction)", "same-runtime speed-ups"),
        _cell("training cost", "structural compression costs little to train; distillation needs a teacher and "
              "training", _median([r["train_seconds"] for r in s]), _median([r["train_seconds"] for r in d]),
              "lower", " s", "median seconds to produce", "wall-clock seconds"),
    ]
    recs = matrix.get("recommendations") or recommend(matrix)
    by_id = {_rid(r): r for r in rows}
    return cells + [_advice_cell(key, matrix, by_id, recs) for key in ADVICE]


__all__ = ["ADVICE", "OUTPUT_LOSSES", "SCENARIOS", "accuracy_tie", "knee", "ok_rows", "pareto_front", "recommend",
           "rule_of_thumb", "speed_tie", "user_baseline"]
