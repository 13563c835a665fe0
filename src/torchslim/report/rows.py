"""The rows of the selection matrix: one per (strategy, deployment target), from measured records.

A record (``MeasureRecord.to_dict()``) carries in ``extra`` the ``strategy`` and ``target`` it was
measured as, its ``artifact`` path and, for ONNX, its ``input_name``. Speed-ups are computed here
from the records' per-round medians (the rounds ran interleaved, so round ``r`` of one row and of
its baseline ran under the same load): the median of per-round ratios and its bootstrap interval,
against the same-runtime baseline and against the user baseline (the teacher on torch eager).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torchslim.measure import confidence as conf
from torchslim.options.measure import TARGETS

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


def quality(matrix: dict) -> dict:
    """The quality metric of ``matrix`` (test accuracy unless its task says otherwise)."""
    return QUALITY[matrix.get("task", "image")]


def first_line(text: str | None) -> str:
    """An error's first line (the rest is in the strategy's log)."""
    return (text or "unknown error").strip().splitlines()[0] if (text or "").strip() else "unknown error"


def human_bytes(n: float | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def setting_key(batch_size: int, threads: int) -> str:
    return f"b{batch_size}_t{threads}"


def row_id(strategy: str, target: str | None) -> str:
    return f"{strategy}@{target}" if target else strategy


def load_lines(artifact: str, runtime: str, input_name: str | None) -> list[str]:
    """Two Python lines that load ``artifact`` (a path relative to the run directory) and run it on
    a float tensor ``x`` of shape ``(N, ...)``."""
    if runtime == "onnxruntime":
        return [f"session = onnxruntime.InferenceSession({artifact!r})",
                f"y = session.run(None, {{{(input_name or 'input')!r}: x.numpy()}})[0]"]
    return [f"model, _ = torchslim.load_model({artifact!r})", "y = model.eval()(x)"]


def interval(base: dict | None, stat: dict | None, opts: dict) -> dict | None:
    """``base``'s time / ``stat``'s (two ``LatencyStat`` dicts of one setting) with its interval:
    ``{"ratio", "low", "high", "converged", "rounds"}``; from per-round medians when both have the
    same rounds, else the ratio of medians without an interval (low, high, converged None)."""
    if base is None or stat is None or stat["median_ms"] <= 0:
        return None
    a, b = base.get("round_medians_ms") or [], stat.get("round_medians_ms") or []
    if not a or len(a) != len(b):
        return {"ratio": base["median_ms"] / stat["median_ms"], "low": None, "high": None, "converged": None,
                "rounds": None}
    ratio, low, high = conf.bootstrap_interval(conf.per_round_ratios(a, b), confidence=opts["confidence"],
                                               resamples=opts["resamples"], seed=opts["seed"])
    return {"ratio": ratio, "low": low, "high": high, "rounds": len(a),
            "converged": conf.is_narrow(ratio, low, high, opts["target_width"])}


def _latency(record: dict) -> dict[str, dict]:
    return {setting_key(s["batch_size"], s["threads"]): s for s in record.get("latency", [])}


def _speedups(record: dict, base: dict | None, base_id: str | None, opts: dict) -> tuple[dict, dict]:
    """``({S: ratio}, {S: interval with its baseline})`` of ``record`` against ``base``."""
    if base is None:
        return {}, {}
    mine, theirs = _latency(record), _latency(base)
    if base is record:
        return {k: 1.0 for k in mine}, {}
    cis = {k: interval(theirs.get(k), s, opts) for k, s in mine.items()}
    cis = {k: {**v, "baseline": base_id} for k, v in cis.items() if v is not None}
    return {k: v["ratio"] for k, v in cis.items()}, {k: v for k, v in cis.items() if v["low"] is not None}


def kernel(record: dict, int8: bool) -> str:
    extra = record.get("extra") or {}
    if extra.get("kernel"):
        return str(extra["kernel"])
    if record.get("runtime", "").startswith("onnx"):
        return "ONNX Runtime " + ("INT8" if int8 else "FP32")
    return "torch eager FP32"


def same_runtime_baseline(target: str, baseline: str, records: dict[str, dict]) -> str | None:
    """The baseline strategy's row on the same runtime: torch eager rows against the teacher on
    torch eager, ONNX Runtime rows (FP32 or INT8) against the teacher on ONNX Runtime FP32."""
    want = row_id(baseline, "torch-fp32" if TARGETS[target][0] == "torch-eager" else "ort-fp32")
    return want if want in records else None


def _accuracy(row: dict, rec: dict, base: dict | None) -> None:
    acc, n = rec.get("accuracy"), rec.get("test_samples")
    row.update(accuracy=acc, test_samples=n)
    if acc is None:
        return
    b_acc, b_n = (base or {}).get("accuracy"), (base or {}).get("test_samples")
    if b_acc is not None:
        row["accuracy_delta"] = acc - b_acc
        row["retention"] = 100.0 * acc / b_acc if b_acc else None
    if not n or (rec.get("extra") or {}).get("agreement") is not None:
        return  # a text model's quality is a Spearman, not a proportion: no binomial error
    row["accuracy_se"] = conf.accuracy_standard_error(acc, n)
    if b_acc is not None and b_n:
        row["accuracy_delta_se"] = math.hypot(row["accuracy_se"], conf.accuracy_standard_error(b_acc, b_n))
        row["accuracy_within_noise"] = not conf.accuracies_differ(acc, n, b_acc, b_n)


def measured_row(rid: str, rec: dict, int8: bool, records: dict[str, dict], user_id: str, baseline: str,
                 out: Path, opts: dict) -> dict[str, Any]:
    """The figures of one measured (strategy, target)."""
    extra = rec.get("extra") or {}
    target = extra.get("target")
    user = records.get(user_id)
    # Without the teacher on this runtime (its export failed; the text task measures each model on
    # one runtime only) the row is compared with the user baseline, and same_runtime_baseline says so.
    same_id = (same_runtime_baseline(target, baseline, records) if target in TARGETS else None) or user_id
    artifact = extra.get("artifact")
    if artifact:
        path = Path(artifact)
        artifact = str(path.relative_to(out)) if path.is_absolute() and path.is_relative_to(out) else str(path)
    row: dict[str, Any] = {
        "parameters": rec["parameters"], "macs": rec["macs"], "bytes": rec["bytes"],
        "runtime": rec["runtime"], "kernel": kernel(rec, int8), "artifact": artifact,
        "input_name": extra.get("input_name"),
        # a text model takes token ids from its tokenizer: torchslim.text loads it, not these lines
        "load": load_lines(artifact, rec["runtime"], extra.get("input_name"))
        if artifact and extra.get("agreement") is None else [],
        "latency": {k: s["median_ms"] for k, s in _latency(rec).items()},
        # the spread of the per-batch times, S -> ms: the report's latency bars
        "latency_p10": {k: s["p10_ms"] for k, s in _latency(rec).items() if s.get("p10_ms") is not None},
        "latency_p90": {k: s["p90_ms"] for k, s in _latency(rec).items() if s.get("p90_ms") is not None},
        "same_runtime_baseline": same_id,
    }
    _accuracy(row, rec, user)
    if user is not None:
        for key in ("parameters", "macs", "bytes"):
            row[f"{key}_ratio"] = user[key] / rec[key] if rec[key] else None
    row["speedup"], row["speedup_ci"] = _speedups(rec, records.get(same_id) if same_id else None, same_id, opts)
    row["speedup_user"], row["speedup_user_ci"] = _speedups(rec, user, user_id, opts)
    return row


__all__ = ["QUALITY", "first_line", "human_bytes", "quality", "interval", "kernel", "load_lines", "measured_row", "row_id", "same_runtime_baseline",
           "setting_key"]
