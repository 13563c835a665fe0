"""Recipes, the pipeline runner, the comparison and its report, on tiny synthetic data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from torchslim import data, fit, models, save_model
from torchslim.cli import main as cli
from torchslim.core.errors import TorchSlimError
from torchslim.pipeline import RecipeError, compare, load_recipe, parse, run
from torchslim.report import COLUMNS, knee, pareto_front, recommend, rerender, rule_of_thumb

REPO = Path(__file__).resolve().parents[1]
MEASURE = "measure: {batch_sizes: [1, 8], thread_counts: [1], rounds: 1, min_seconds: 0.02}"


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    bundle = data.load("synthetic", batch_size=32, seed=0)
    model = models.create("cnn-small", num_classes=bundle.num_classes, in_channels=1)
    fit(model, bundle, 2, progress=False)
    out = tmp_path_factory.mktemp("teacher") / "teacher"
    save_model(model, out)
    return out


def write(tmp_path: Path, body: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def synth_recipe(tmp_path: Path, teacher: Path, strategies: str, extra: str = "",
                 name: str = "recipe.yaml") -> Path:
    import yaml

    recipe = {"version": 1, "name": "synth", "teacher": str(teacher),
              "data": {"name": "synthetic", "batch_size": 32}, **yaml.safe_load(MEASURE),
              **(yaml.safe_load(extra) or {}), "strategies": yaml.safe_load(textwrap.dedent(strategies))}
    return write(tmp_path, yaml.safe_dump(recipe, sort_keys=False), name)


# -- recipe validation -----------------------------------------------------------------------------


def test_unknown_step_names_the_closest_step_and_line(tmp_path):
    path = write(tmp_path, """
        version: 1
        name: x
        strategies:
          s:
            - trian: {model: cnn-tiny, epochs: 1}
        """)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    message = str(err.value)
    assert "'trian'" in message and "Did you mean 'train'" in message
    assert f"{path}:6" in message and "strategies.s[0]" in message


def test_unknown_key_names_its_path_closest_key_and_line(tmp_path):
    path = write(tmp_path, """
        version: 1
        name: x
        strategies:
          s:
            - train:
                model: cnn-tiny
                epoch: 2
        """)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    message = str(err.value)
    assert "strategies.s[0].train.epoch" in message and "Did you mean 'epochs'" in message
    assert f"{path}:8" in message


def test_unknown_top_level_key(tmp_path):
    path = write(tmp_path, "version: 1\nname: x\nteachr: t\nstrategies: {s: [load]}\n")
    with pytest.raises(RecipeError, match=r"unknown key 'teachr'.*Did you mean 'teacher'"):
        load_recipe(path)


def test_wrong_type_names_value_and_expected_type(tmp_path):
    path = write(tmp_path, """
        version: 1
        name: x
        strategies:
          s:
            - train: {model: cnn-tiny, epochs: two}
        """)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert '"two"' in str(err.value) and "integer" in str(err.value) and "train.epochs" in str(err.value)


def test_bad_values_are_rejected():
    with pytest.raises(RecipeError, match="epochs"):
        parse({"name": "x", "strategies": {"s": [{"train": {"model": "cnn-tiny", "epochs": 0}}]}})
    with pytest.raises(RecipeError, match="version 2"):
        parse({"version": 2, "name": "x", "strategies": {"s": ["load"]}})
    with pytest.raises(RecipeError, match="Unknown name 'kdd'|'kdd'"):
        parse({"name": "x", "strategies": {"s": [{"distill": {"student": "cnn-tiny", "epochs": 1,
                                                               "losses": [{"name": "kdd"}]}}]}})
    with pytest.raises(RecipeError, match="non-empty list"):
        parse({"name": "x", "strategies": {"s": []}})
    with pytest.raises(RecipeError, match="baseline"):
        parse({"name": "x", "baseline": "nope", "strategies": {"s": ["load"]}})


def test_yaml_never_constructs_python_objects(tmp_path):
    path = write(tmp_path, "version: 1\nname: !!python/object/apply:os.system ['echo hi']\nstrategies: {s: [load]}\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(path)


def _pipeline_recipes() -> list[Path]:
    """Shipped recipes that `torchslim run`/`compare` read (federated ones have their own schema)."""
    import yaml

    return [p for p in sorted((REPO / "recipes").glob("*.yaml")) if "federated" not in yaml.safe_load(p.read_text())]


@pytest.mark.parametrize("path", _pipeline_recipes(), ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.strategies and recipe.baseline_name in recipe.strategies
    for steps in recipe.strategies.values():
        for step in steps:
            step.config()  # every step's parameters serialise


# -- running ---------------------------------------------------------------------------------------


STRATEGIES = """
teacher: [load]
student-alone:
  - train: {model: cnn-tiny, epochs: 1}
student-distilled:
  - distill: {student: cnn-tiny, epochs: 1}
distilled-evaluated:
  - distill: {student: cnn-tiny, epochs: 1}
  - evaluate
diverges:
  - train: {model: cnn-tiny, epochs: 1, lr: 1.0e+30}
pruned-int8:
  - load: teacher
  - prune: {ratio: 0.5, importance: l1}
  - quantize: {calibration_batches: 2}
sparse:
  - load: teacher
  - sparsify: {sparsity: 0.5}
exported:
  - load: teacher
  - export
"""


def test_compare_writes_every_report_file_and_failed_rows(tmp_path, teacher_dir):
    recipe = synth_recipe(tmp_path, teacher_dir, STRATEGIES)
    out = tmp_path / "out"
    logs: list[str] = []
    matrix = compare(recipe, out, progress=False, log=logs.append)
    for name in ("report.html", "matrix.md", "matrix.json", "pareto.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert matrix["failed"] == ["diverges"] and matrix["failures"][0]["strategy"] == "diverges"
    rows = {r["id"]: r for r in matrix["rows"]}
    assert "loss became nan" in rows["diverges"]["error"]
    torch_models = ("teacher", "student-alone", "student-distilled", "distilled-evaluated", "sparse")
    expected = [f"{n}@{t}" for n in torch_models for t in ("torch-fp32", "ort-fp32")]
    expected += ["pruned-int8@ort-int8", "exported@ort-fp32"]
    assert sorted(r for r in rows if r != "diverges") == sorted(expected)
    for rid in expected:
        row = rows[rid]
        for key, _, _ in COLUMNS:
            assert key in row and row[key] is not None or key == "peak_memory_mb", (rid, key)
        assert set(row["latency"]) == {"b1_t1", "b8_t1"} and row["speedup_user"]["b8_t1"] > 0
        assert row["accuracy_se"] >= 0 and row["load"] and (out / row["artifact"]).exists()
    assert matrix["user_baseline"] == "teacher@torch-fp32"
    assert rows["teacher@torch-fp32"]["speedup"]["b8_t1"] == pytest.approx(1.0)
    assert rows["teacher@ort-fp32"]["speedup"]["b8_t1"] == pytest.approx(1.0)
    assert matrix["runtime_gain"]["ort-fp32"]["b8_t1"]["ratio"] == rows["teacher@ort-fp32"]["speedup_user"]["b8_t1"]
    for rid in ("pruned-int8@ort-int8", "exported@ort-fp32", "student-alone@ort-fp32"):
        assert rows[rid]["same_runtime_baseline"] == "teacher@ort-fp32"
        assert rows[rid]["speedup_ci"]["b8_t1"]["baseline"] == "teacher@ort-fp32"
    assert rows["student-alone@torch-fp32"]["same_runtime_baseline"] == "teacher@torch-fp32"
    assert rows["student-distilled@torch-fp32"]["needs_teacher"] and not rows["student-alone@torch-fp32"]["needs_teacher"]
    assert rows["student-alone@torch-fp32"]["macs_ratio"] > 1 and rows["student-alone@torch-fp32"]["bytes_ratio"] > 1
    int8 = rows["pruned-int8@ort-int8"]
    assert int8["runtime"] == "onnxruntime" and "INT8" in int8["kernel"]
    assert int8["macs_ratio"] > 2 and int8["bytes_ratio"] > 4 and int8["artifact"].endswith("model.onnx")
    assert rows["exported@ort-fp32"]["runtime"] == "onnxruntime" and rows["exported@ort-fp32"]["accuracy"] == pytest.approx(
        rows["teacher@torch-fp32"]["accuracy"], abs=0.5)
    assert rows["sparse@torch-fp32"]["parameters"] == rows["teacher@torch-fp32"]["parameters"]
    assert any("zipped" in n for n in rows["sparse@torch-fp32"]["notes"])
    assert int8["families"] == ["structural"] and rows["student-distilled@torch-fp32"]["families"] == ["distillation"]
    # the machine's noise is said once per run, not in every row
    assert matrix["timing"]["verdict"] and not any("busy" in n for r in rows.values() for n in r.get("notes", []))
    # the distil step is shared by two strategies: run once, reused by the second
    assert any("distilled-evaluated: step 1/2 distill — reused" in line for line in logs)
    assert rows["distilled-evaluated@torch-fp32"]["bytes"] == rows["student-distilled@torch-fp32"]["bytes"]
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "Resource-limited" in html and "<link" not in html
    md = (out / "matrix.md").read_text()
    assert "| strategy |" in md and "rule of thumb" in md and "FAILED" in md
    assert set(matrix["recommendations"]) == {"resource_limited", "accuracy_sensitive", "balanced"}

    # run again: every finished step is reused, nothing retrained
    logs.clear()
    compare(recipe, out, progress=False, log=logs.append)
    assert sum("reused" in line for line in logs) == 12
    # the report re-renders from matrix.json alone
    (out / "report.html").unlink()
    rerender(out)
    assert (out / "report.html").is_file()


def test_cli_compare_exit_code_and_other_recipe_refused(tmp_path, teacher_dir, capsys):
    recipe = synth_recipe(tmp_path, teacher_dir, "teacher: [load]\nbad:\n  - train: {model: cnn-tiny, epochs: 1, lr: 1.0e+30}\n")
    out = tmp_path / "out"
    assert cli(["compare", str(recipe), "--out", str(out), "--quiet"]) == 1
    other = synth_recipe(tmp_path, teacher_dir, "teacher: [load]\n", extra="seed: 3", name="other.yaml")
    assert cli(["compare", str(other), "--out", str(out), "--quiet"]) == 2
    assert "already holds a run of recipe" in capsys.readouterr().err
    assert cli(["compare", str(other), "--out", str(out), "--quiet", "--force"]) == 0
    assert not (out / "strategies" / "bad.json").exists()
    assert cli(["compare", str(recipe), "--out", str(out), "--quiet", "--resume"]) == 1


def test_missing_teacher_checkpoint(tmp_path):
    recipe = write(tmp_path, f"""
        version: 1
        name: x
        teacher: {tmp_path / "no-such-teacher"}
        data: {{name: synthetic}}
        strategies:
          teacher: [load]
        """)
    with pytest.raises(TorchSlimError, match="no-such-teacher"):
        run(recipe, tmp_path / "out", progress=False, log=lambda _: None)
    # found before anything runs or is written, for the comparison too
    with pytest.raises(RecipeError, match=r"recipe.yaml:4: teacher .*no-such-teacher"):
        compare(recipe, tmp_path / "out2", progress=False, log=lambda _: None)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


def test_run_one_strategy_and_finetune_continues_the_model(tmp_path, teacher_dir):
    recipe = synth_recipe(tmp_path, teacher_dir, """
        tuned:
          - load: teacher
          - train: {epochs: 1, lr: 0.01}
        """)
    result = run(recipe, tmp_path / "out", progress=False, log=lambda _: None)
    assert [s["step"] for s in result.steps] == ["load", "train"] and result.cost()["epochs"] == 1
    assert (result.final.path / "model.safetensors").is_file()
    bad = synth_recipe(tmp_path, teacher_dir, "a: [load]\nb: [load]\n", name="two.yaml")
    with pytest.raises(RecipeError, match="--strategy"):
        run(bad, tmp_path / "out3", progress=False)


def test_code_is_imported_only_when_allowed(tmp_path, teacher_dir, monkeypatch):
    pkg = tmp_path / "userpkg_nets"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        from torch import nn
        def tiny(num_classes, in_channels, hidden=8):
            return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 16 * 16, hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_classes))
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = synth_recipe(tmp_path, teacher_dir, """
        mine:
          - train: {model: "userpkg_nets:tiny", epochs: 1, channels_last: false, model_kwargs: {hidden: 4}}
          - evaluate
        """)
    with pytest.raises(RecipeError, match="--allow-import userpkg_nets"):
        run(recipe, tmp_path / "out", progress=False, log=lambda _: None)
    assert "userpkg_nets" not in sys.modules
    result = run(recipe, tmp_path / "out", progress=False, log=lambda _: None, allow_imports=("userpkg_nets",))
    assert result.steps[-1]["metrics"]["test"]["n"] == 256
    # resumed: the saved model is rebuilt by the same factory
    again = run(recipe, tmp_path / "out", progress=False, log=lambda _: None, allow_imports=("userpkg_nets",))
    assert all(s["reused"] for s in again.steps)


def test_python_entry_point_with_own_model_teacher_and_data(tmp_path):
    from torch import nn

    bundle = data.load("synthetic", batch_size=32, seed=1, num_classes=3, shape=(1, 8, 8))
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 3))
    fit(teacher, bundle, 1, progress=False, channels_last=False)

    def small(num_classes, in_channels):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 64, 8), nn.ReLU(), nn.Linear(8, num_classes))

    recipe = parse({"name": "own", "measure": {"batch_sizes": [4], "thread_counts": [1], "rounds": 1, "min_seconds": 0.02},
                    "strategies": {"teacher": ["load"],
                                   "distilled": [{"distill": {"student": "small", "epochs": 1,
                                                              "channels_last": False}}]}})
    matrix = compare(recipe, tmp_path / "out", models={"small": small}, teacher=teacher, data=bundle,
                     progress=False, log=lambda _: None)
    assert not matrix["failed"]
    rows = {r["strategy"]: r for r in matrix["rows"]}
    assert rows["distilled"]["parameters"] == sum(p.numel() for p in small(3, 1).parameters())


def test_interrupted_run_keeps_finished_steps_and_resumes(tmp_path, teacher_dir):
    recipe = synth_recipe(tmp_path, teacher_dir, """
        long:
          - train: {model: cnn-tiny, epochs: 1}
          - train: {epochs: 400}
        """)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "torchslim.cli", "run", str(recipe), "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                            # a test runner started in the background hands down SIGINT ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 600  # generous: a loaded CI machine imports and trains slowly
    first = None
    while time.time() < deadline and proc.poll() is None:
        found = list(out.glob("steps/00-train-*/step.json"))
        if found and list(out.glob("steps/01-train-*/work/checkpoints/last")):
            first = found[0]
            break
        time.sleep(0.2)
    if first is None:
        proc.kill()
        pytest.fail(f"the first step did not finish: {proc.communicate()[1][-2000:]}")
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the run did not stop on SIGINT")
    assert proc.returncode == 130 and "resume" in err
    record = json.loads(first.read_text())
    assert record["step"] == "train" and not list(out.glob("steps/01-train-*/step.json"))
    logs: list[str] = []
    again = load_recipe(recipe).model_copy()
    quick = again.model_copy(update={"strategies": {"long": again.strategies["long"][:1]}})
    result = run(quick, out, progress=False, log=logs.append, resume=True)
    assert result.steps[0]["reused"] and result.steps[0]["key"] == record["key"]


# -- recommendations -------------------------------------------------------------------------------


def _row(name, steps, acc, lat, bytes_, seconds=10.0, macs_ratio=1.0, speed=None):
    from torchslim.pipeline.tasks import TASKS

    return {"strategy": name, "status": "ok", "steps": steps, **TASKS.get("image").route(steps), "accuracy": acc,
            "latency": {"b64_t1": lat}, "bytes": bytes_, "train_seconds": seconds, "macs_ratio": macs_ratio,
            "speedup": {"b64_t1": speed if speed is not None else 100.0 / lat},
            "bytes_ratio": 1000 / bytes_, "retention": acc / 93.0 * 100, "accuracy_delta": acc - 93.0}


def _matrix(rows, **scenarios):
    sc = {"accuracy_floor": 1.0, "resource": "latency", "latency_budget": 0.5, "size_budget": None,
          "balanced_floor": 3.0, **scenarios}
    return {"rows": rows, "baseline": "teacher", "primary": "b64_t1", "scenarios": sc}


def test_recommendations_follow_the_numbers():
    rows = [_row("teacher", ["load"], 93.0, 100.0, 1000, seconds=0),
            _row("pruned", ["load", "prune"], 92.5, 30.0, 300, seconds=50, macs_ratio=4),
            _row("pruned-int8", ["load", "prune", "quantize"], 91.0, 10.0, 80, seconds=60, macs_ratio=4),
            _row("student", ["distill"], 90.0, 5.0, 50, seconds=200, macs_ratio=20, speed=20)]
    m = _matrix(rows)
    rec = recommend(m)
    assert rec["resource_limited"]["strategy"] == "pruned"  # fastest within 1 point of 93.0
    assert rec["accuracy_sensitive"]["strategy"] == "pruned"  # most accurate at <= 50 ms
    assert [r["strategy"] for r in pareto_front(rows, m)] == ["student", "pruned-int8", "pruned", "teacher"]
    assert knee(pareto_front(rows, m), m)["strategy"] in {"pruned", "pruned-int8"}
    assert "92.50%" in rec["resource_limited"]["text"]
    m2 = _matrix(rows, accuracy_floor=3.5, resource="bytes")
    assert recommend(m2)["resource_limited"]["strategy"] == "student"
    # a knee far below the teacher is left out of the balanced choice
    far = rows + [_row("tiny", ["train"], 70.0, 1.0, 10, seconds=30, macs_ratio=100, speed=100)]
    assert recommend(_matrix(far))["balanced"]["strategy"] != "tiny"
    assert "leaving out tiny" in recommend(_matrix(far))["balanced"]["text"]
    assert recommend(_matrix(far, balanced_floor=30.0))["balanced"]["front"][0] == "tiny"
    none = recommend(_matrix(rows, latency_budget=0.01))
    assert none["accuracy_sensitive"]["strategy"] is None and "raise" in none["accuracy_sensitive"]["text"]
    m["recommendations"] = rec
    cells = {c["aspect"]: c for c in rule_of_thumb(m)}
    assert cells["training cost"]["status"] == "confirmed"  # 55 s vs 200 s
    assert cells["compression"]["status"] == "contradicted"  # the student is smaller than any pruned model
    assert cells["resource-limited"]["status"] == "partly"  # the pick pruned but did not quantize
    assert cells["accuracy-sensitive"]["status"] == "contradicted"


@pytest.mark.slow
def test_default_recipe_quick_end_to_end(tmp_path):
    """`torchslim compare recipes/fashion-mnist.yaml --quick`: every strategy of the default recipe
    runs on a subset, and the report holds every matrix column for each of them."""
    from torchslim.data.fashion_mnist import locate

    try:
        locate(download=False)
    except TorchSlimError:
        pytest.skip("Fashion-MNIST is not installed here (make data installs it)")
    out = tmp_path / "quick"
    assert cli(["compare", str(REPO / "recipes" / "fashion-mnist.yaml"), "--out", str(out), "--quick", "--quiet"]) == 0
    matrix = json.loads((out / "matrix.json").read_text())
    recipe = load_recipe(REPO / "recipes" / "fashion-mnist.yaml")
    assert list(dict.fromkeys(r["strategy"] for r in matrix["rows"])) == list(recipe.strategies)
    assert {r["target"] for r in matrix["rows"]} == {"torch-fp32", "ort-fp32", "ort-int8"}
    for row in matrix["rows"]:
        assert row["status"] == "ok", row
        for key, _, _ in COLUMNS:
            assert row.get(key) is not None, (row["id"], key)
    for name in ("report.html", "matrix.md", "pareto.png"):
        assert (out / name).stat().st_size > 0
    assert matrix["timing"]["verdict"] and matrix["timing"]["options"]["max_seconds"] <= 3.0
    for rec in matrix["recommendations"].values():
        assert rec["row"] is None or ((out / rec["artifact"]).exists() and len(rec["load"]) == 2)
