"""The selection matrix from synthetic measurements (no training): rows per (strategy, target),
same-runtime vs user-baseline speed-ups, ties, accuracy floors, failures, load lines, verdicts."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch

import torchslim
from torchslim.measure import LatencyStat, MeasureRecord
from torchslim.measure.confidence import accuracy_standard_error
from torchslim.pipeline.measuring import _targets_of
from torchslim.pipeline.recipe import parse
from torchslim.pipeline.runner import Saved, StrategyResult
from torchslim.pipeline.tasks import TASKS
from torchslim.report import build_matrix
from torchslim.report.rows import load_lines

DISTILL = {"distill": {"student": "cnn-tiny", "epochs": 1}}
STEPS = {
    "teacher": ["load"],
    "student": [DISTILL],
    "student-twin": [DISTILL, "evaluate"],
    "tiny": [{"train": {"model": "cnn-tiny", "epochs": 1}}],
    "teacher-int8": ["load", {"quantize": {"mode": "static"}}],
    "pruned-int8": ["load", {"prune": {"ratio": 0.5}}, {"quantize": {"mode": "static"}}],
    "broken": [{"train": {"model": "cnn-tiny", "epochs": 1}}],
}


def recipe(names, targets=("torch-fp32", "ort-fp32", "ort-int8"), **scenarios):
    return parse({"name": "synthetic-matrix", "baseline": "teacher",
                  "measure": {"batch_sizes": [64], "thread_counts": [1], "targets": list(targets)},
                  "scenarios": scenarios, "strategies": {n: STEPS[n] for n in names}})


def record(strategy, target, accuracy, ms, *, n=10000, size=1000, noise=0.0, seed=0, artifact="x", **extra):
    """A measured row: ``ms`` per batch of 64, 8 interleaved rounds with relative ``noise``."""
    rng = random.Random(seed)
    medians = [ms * (1 + noise * rng.uniform(-1, 1)) for _ in range(8)]
    runtime = "torch-eager" if target == "torch-fp32" else "onnxruntime"
    stat = LatencyStat.from_times(medians, batch_size=64, threads=1, runtime=runtime, rounds=8,
                                  round_medians_ms=medians)
    rec = MeasureRecord(name=f"{strategy}@{target}", runtime=runtime, parameters=size, macs=size * 10, bytes=size,
                        accuracy=accuracy, test_samples=n, latency=[stat],
                        extra={"strategy": strategy, "target": target, "artifact": artifact,
                               "input_name": None if runtime == "torch-eager" else "input", **extra})
    return rec.to_dict()


def result(name, steps, error=None):
    made = [{"step": s, "seconds": 0 if s == "load" else 10.0, "epochs": 0 if s == "load" else 1,
             "used_teacher": s == "distill", "peak_memory_bytes": None} for s in steps]
    return StrategyResult(name=name, steps=[] if error else made, error=error, route=TASKS.get("image").route(steps))


def matrix_of(recs, results, failures=(), out=Path("/run"), targets=("torch-fp32", "ort-fp32", "ort-int8"),
              **scenarios):
    names = [r.name for r in results]
    measured = {"records": {r["name"]: r for r in recs}, "timing": None, "failures": list(failures)}
    return build_matrix(recipe(names, targets, **scenarios), results, measured, out=out,
                        data={"name": "synthetic", "train_samples": 100, "test_samples": 10000}, quick=True,
                        wall_seconds=1.0)


TEACHER = [record("teacher", "torch-fp32", 93.0, 100.0, size=4000),
           record("teacher", "ort-fp32", 93.0, 50.0, size=4000)]


def rows_by_id(m):
    return {r["id"]: r for r in m["rows"]}


def test_same_runtime_and_user_baseline_speedups_are_kept_apart():
    recs = TEACHER + [record("teacher-int8", "ort-int8", 92.9, 20.0, size=1000)]
    m = matrix_of(recs, [result("teacher", ["load"]), result("teacher-int8", ["load", "quantize"])])
    rows = rows_by_id(m)
    assert m["user_baseline"] == "teacher@torch-fp32"
    int8 = rows["teacher-int8@ort-int8"]
    assert int8["same_runtime_baseline"] == "teacher@ort-fp32"
    assert int8["speedup"]["b64_t1"] == pytest.approx(2.5)  # compression's gain: 50 ms -> 20 ms
    assert int8["speedup_user"]["b64_t1"] == pytest.approx(5.0)  # against torch eager today
    assert int8["speedup_ci"]["b64_t1"]["baseline"] == "teacher@ort-fp32"
    assert int8["speedup_user_ci"]["b64_t1"]["converged"]
    assert m["runtime_gain"]["ort-fp32"]["b64_t1"]["ratio"] == pytest.approx(2.0)  # the runtime's gain alone
    assert rows["teacher@ort-fp32"]["speedup"]["b64_t1"] == 1.0
    assert "torch-fp32" not in {r["target"] for r in m["rows"] if r["strategy"] == "teacher-int8"}


def test_accuracy_carries_its_standard_error_and_noise_flag():
    recs = TEACHER + [record("student", "torch-fp32", 92.8, 30.0), record("tiny", "torch-fp32", 90.0, 10.0)]
    m = matrix_of(recs, [result("teacher", ["load"]), result("student", ["distill"]), result("tiny", ["train"])])
    rows = rows_by_id(m)
    assert rows["student@torch-fp32"]["accuracy_se"] == pytest.approx(accuracy_standard_error(92.8, 10000))
    assert rows["student@torch-fp32"]["accuracy_within_noise"]  # -0.2 points on 10,000 samples
    assert not rows["tiny@torch-fp32"]["accuracy_within_noise"]
    se = rows["tiny@torch-fp32"]["accuracy_delta_se"]
    assert se == pytest.approx(math.hypot(accuracy_standard_error(90.0, 10000), accuracy_standard_error(93.0, 10000)))


def test_a_tie_between_the_two_fastest_is_named():
    recs = TEACHER + [record("student", "torch-fp32", 92.8, 30.0, noise=0.2, seed=1),
                      record("student-twin", "torch-fp32", 92.7, 30.5, noise=0.2, seed=2)]
    m = matrix_of(recs, [result("teacher", ["load"]), result("student", ["distill"]),
                         result("student-twin", ["distill", "evaluate"])])
    rec = m["recommendations"]["resource_limited"]
    assert {rec["row"], *rec["tie"]} == {"student@torch-fp32", "student-twin@torch-fp32"}
    assert "a tie" in rec["text"] and "speed-up vs the teacher as run today" in rec["ranked_by"]


def test_a_student_29_points_below_is_never_picked_for_accuracy():
    far = record("tiny", "torch-fp32", 64.0, 5.0)
    recs = [TEACHER[0], record("teacher", "ort-fp32", 93.0, 80.0)] + [far]  # only tiny is under half the latency
    m = matrix_of(recs, [result("teacher", ["load"]), result("tiny", ["train"])])
    sensitive = m["recommendations"]["accuracy_sensitive"]
    assert sensitive["row"] is None and "no row is within 1 point" in sensitive["text"]
    assert m["recommendations"]["resource_limited"]["row"] != "tiny@torch-fp32"
    assert m["recommendations"]["balanced"]["row"] != "tiny@torch-fp32"
    near = record("student", "torch-fp32", 92.6, 40.0)
    m = matrix_of(recs + [near], [result("teacher", ["load"]), result("tiny", ["train"]),
                                  result("student", ["distill"])])
    assert m["recommendations"]["accuracy_sensitive"]["row"] == "student@torch-fp32"
    # a looser floor lets it through: the floor is what keeps it out
    m = matrix_of(recs, [result("teacher", ["load"]), result("tiny", ["train"])], sensitive_floor=30.0)
    assert m["recommendations"]["accuracy_sensitive"]["row"] == "tiny@torch-fp32"


def test_failed_strategies_and_targets_are_listed_with_one_line_errors():
    recs = TEACHER + [record("student", "torch-fp32", 92.8, 30.0)]
    failures = [{"strategy": "student", "target": "ort-fp32", "error": "ExportError: the graph differs"}]
    m = matrix_of(recs, [result("teacher", ["load"]), result("student", ["distill"]),
                         result("broken", ["train"], error="TrainingError: loss became nan\n  at epoch 1")],
                  failures=failures)
    assert {(f["strategy"], f["target"], f["error"]) for f in m["failures"]} == {
        ("student", "ort-fp32", "ExportError: the graph differs"), ("broken", None, "TrainingError: loss became nan")}
    assert m["failed"] == ["broken"]  # a target that failed alone keeps its strategy's other rows
    for rec in m["recommendations"].values():
        assert set(rec["failed"]) == {"student@ort-fp32", "broken"}


def test_a_model_no_listed_target_runs_is_skipped_not_failed():
    student = result("student", ["distill"])
    student.final = Saved(Path("/run/steps/01-distill"), "torch")
    m = matrix_of(TEACHER, [result("teacher", ["load"]), student], targets=("ort-int8",))
    row = rows_by_id(m)["student"]
    assert row["status"] == "skipped" and "ort-int8" in row["error"] and "a torch model" in row["error"]
    assert m["failed"] == [] and m["failures"] == []


def test_rule_of_thumb_says_partly_when_the_pick_did_not_prune():
    recs = TEACHER + [record("teacher-int8", "ort-int8", 92.9, 20.0)]
    m = matrix_of(recs, [result("teacher", ["load"]), result("teacher-int8", ["load", "quantize"])])
    cells = {c["aspect"]: c for c in m["rule_of_thumb"]}
    assert m["recommendations"]["resource_limited"]["row"] == "teacher-int8@ort-int8"
    assert cells["resource-limited"]["status"] == "partly"
    assert "did not prune" in cells["resource-limited"]["evidence"] and "same-runtime" in cells["resource-limited"]["basis"]
    recs.append(record("pruned-int8", "ort-int8", 92.5, 8.0))
    m = matrix_of(recs, [result("teacher", ["load"]), result("teacher-int8", ["load", "quantize"]),
                         result("pruned-int8", ["load", "prune", "quantize"])])
    cells = {c["aspect"]: c for c in m["rule_of_thumb"]}
    assert cells["resource-limited"]["status"] == "confirmed"
    assert cells["hardware fit"]["basis"] == "same-runtime speed-ups"


def test_targets_of_a_model():
    torch_result = StrategyResult("student", [{"step": "distill"}], final=Saved(Path("/x"), "torch"),
                                  route=TASKS.get("image").route(["distill"]))
    int8 = StrategyResult("t-int8", [{"step": "load"}, {"step": "quantize"}], final=Saved(Path("/y"), "onnx"),
                          route=TASKS.get("image").route(["load", "quantize"]))
    every = ["torch-fp32", "ort-fp32", "ort-int8"]
    assert _targets_of(torch_result, "teacher", every) == ["torch-fp32", "ort-fp32"]
    assert _targets_of(int8, "teacher", every) == ["ort-int8"]
    assert _targets_of(torch_result, "teacher", ["ort-int8"]) == []
    # the teacher is always measured as the user runs it, and on ONNX Runtime FP32 as their baseline
    teacher = StrategyResult("teacher", [{"step": "load"}], final=Saved(Path("/z"), "torch"))
    assert _targets_of(teacher, "teacher", ["ort-int8"]) == ["torch-fp32", "ort-fp32"]


def test_the_picks_load_lines_load_and_run_their_artifacts(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = torchslim.models.create("cnn-tiny", num_classes=3, in_channels=1).eval()
    x = torch.randn(2, 1, 28, 28)
    saved = torchslim.save_model(model, tmp_path / "steps" / "00-load" / "model")
    onnx_path = tmp_path / "targets" / "teacher" / "model.onnx"
    torchslim.export.onnx(model, x, onnx_path)
    recs = [record("teacher", "torch-fp32", 93.0, 100.0, artifact=str(saved)),
            record("teacher", "ort-fp32", 93.0, 50.0, artifact=str(onnx_path))]
    m = matrix_of(recs, [result("teacher", ["load"])], out=tmp_path, resource_budget=1.0)
    rows = rows_by_id(m)
    assert rows["teacher@ort-fp32"]["artifact"] == "targets/teacher/model.onnx"
    assert rows["teacher@torch-fp32"]["artifact"] == "steps/00-load/model"
    pick = m["recommendations"]["resource_limited"]
    assert pick["row"] == "teacher@ort-fp32" and pick["artifact"] == "targets/teacher/model.onnx"
    monkeypatch.chdir(tmp_path)  # the paths are relative to the run directory
    import onnxruntime

    for row in rows.values():
        scope = {"torchslim": torchslim, "onnxruntime": onnxruntime, "x": x}
        exec("\n".join(row["load"]), scope)
        assert torch.allclose(torch.as_tensor(scope["y"]), model(x), atol=1e-5), row["id"]
    assert load_lines("m.onnx", "onnxruntime", "pixels")[1].endswith("{'pixels': x.numpy()})[0]")
