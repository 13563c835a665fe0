"""Matrices the report tests render: a format-1 matrix of an earlier default comparison (tests/data), a
format-2 one derived from it (rows per deployment target, speed-up intervals, standard errors,
ties, a failed strategy, artifacts and load lines), and a crowded one for label placement."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "tests" / "data" / "matrix-format1.json"  # an earlier default comparison, format 1


def old_matrix() -> dict:
    """The committed default comparison's matrix (format 1: one row per strategy, no targets)."""
    return json.loads(COMMITTED.read_text(encoding="utf-8"))


# as long as the runner's real message: the report must wrap it, not widen the table
NAN_ERROR = ("loss became nan at epoch 1, step 2 (lr 1.806e+29). Lower the learning rate or check the data. No "
             "checkpoint was kept (it failed before the first epoch ended): a new run starts from the beginning")


def _ci(value: float) -> dict:
    return {"ratio": value, "low": value * 0.95, "high": value * 1.06, "converged": True, "rounds": 12,
            "baseline": "teacher-fp32@torch-fp32"}


def _target_row(row: dict, target: str, slow: float) -> dict:
    out = copy.deepcopy(row)
    out.update({"id": f"{row['strategy']}@{target}", "target": target,
                "runtime": "torch-eager" if target == "torch-fp32" else "onnxruntime",
                "artifact": f"steps/{row['strategy']}/" + ("model" if target == "torch-fp32" else "model.onnx"),
                "accuracy_se": 0.25, "accuracy_within_noise": abs(row.get("accuracy_delta") or 0) < 0.5,
                "same_runtime_baseline": "teacher-fp32@" + target, "int8": "quantize" in row["steps"]})
    out["load"] = ([f"model = torchslim.load('{out['artifact']}')", "y = model(x)"] if target == "torch-fp32" else
                   [f"session = onnxruntime.InferenceSession('{out['artifact']}')",
                    "y = session.run(None, {'input': x.numpy()})[0]"])
    out["latency"] = {k: v * slow for k, v in row["latency"].items()}
    out["latency_p10"] = {k: v * 0.9 for k, v in out["latency"].items()}
    out["latency_p90"] = {k: v * 1.2 for k, v in out["latency"].items()}
    out["speedup_user"] = {k: s / slow for k, s in row["speedup"].items()}
    out["speedup_user_ci"] = {k: _ci(v) for k, v in out["speedup_user"].items()}
    out["speedup_ci"] = {k: _ci(v) for k, v in row["speedup"].items()}
    out.pop("latency_spread", None)
    return out


def format2_matrix() -> dict:
    """A format-2 matrix built from the committed one: every FP32 strategy on torch-fp32 and
    ort-fp32, every quantized one on ort-int8, one strategy failed, picks with ties and load lines."""
    m = old_matrix()
    rows = []
    for row in m["rows"]:
        targets = [("ort-int8", 1.0)] if "quantize" in row["steps"] else [("torch-fp32", 1.0), ("ort-fp32", 0.8)]
        rows += [_target_row(row, t, slow) for t, slow in targets]
    rows.append({"id": "student-broken@torch-fp32", "strategy": "student-broken", "target": "torch-fp32",
                 "status": "failed", "error": NAN_ERROR, "steps": ["train"], "families": []})
    m.update({"format": 2, "rows": rows, "user_baseline": "teacher-fp32@torch-fp32",
              "failed": ["student-broken"],
              "failures": [{"strategy": "student-broken", "target": None, "error": NAN_ERROR}],
              "timing": {"verdict": "quiet: every setting converged within ±5% in 12 rounds", "quiet": True,
                         "notes": []}})
    load = ["import onnxruntime as ort",
            "y = ort.InferenceSession('runs/x/steps/teacher-int8/model.onnx').run(None, {'input': x.numpy()})[0]"]
    for rec in m["recommendations"].values():
        rec.update({"row": "teacher-int8@ort-int8", "target": "ort-int8", "tie": ["teacher-pruned-distilled-int8@ort-int8"],
                    "artifact": "steps/teacher-int8/model.onnx", "load": load})
    return m


def crowded_matrix(n: int = 24) -> dict:
    """``n`` strategies with long names packed close together (labels cannot all sit at one offset)."""
    m = old_matrix()
    base = m["rows"][0]
    rows = []
    for i in range(n):
        row = copy.deepcopy(base)
        row["strategy"] = f"strategy-with-a-long-name-{i:02d}"
        row["latency"] = {k: v * (1 + 0.04 * (i % 6)) for k, v in base["latency"].items()}
        row["accuracy"] = 92.0 + 0.15 * math.sin(i) + 0.05 * (i // 6)
        row["bytes"] = 50_000 * (1 + i % 4)
        rows.append(row)
    m["rows"] = rows
    m["recommendations"] = {"balanced": {"strategy": rows[3]["strategy"], "text": f"Balanced: **{rows[3]['strategy']}**."}}
    return m
