"""The text task of recipes and the comparison, on a tiny random BERT and written WordNet files."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

pytest.importorskip("transformers")

from text_helpers import write_tiny_bert, write_wordnet  # noqa: E402
from torchslim.cli import main as cli  # noqa: E402
from torchslim.core.errors import TorchSlimError  # noqa: E402
from torchslim.pipeline import RecipeError, compare, load_recipe, parse, run  # noqa: E402
from torchslim.report.matrix import columns_for  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DISTILL = {"distill": {"epochs": 2, "lr": 2.0e-3}}
STRATEGIES = {
    "teacher": ["load"],
    "student-2l": ["load", {"layers": {"keep": 2, "sample_size": 16}}, DISTILL],
    "student-2l-int8": ["load", {"layers": {"keep": 2, "sample_size": 16}}, DISTILL, {"quantize": "dynamic"}],
    "student-1l": ["load", {"layers": [0]}, DISTILL],
    "pruned-distilled": ["load", {"prune": {"heads": 0.5, "ffn": 0.5, "sample_size": 16}}, DISTILL],
    "teacher-int8": ["load", "quantize"],
    "teacher-onnx": ["load", "export", "evaluate"],
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("text-pipeline")
    return {"bert": write_tiny_bert(root / "bert", layers=3, hidden=32, heads=4, seed=1, init_range=0.3),
            "wordnet": write_wordnet(root / "wordnet", synsets_per_part=16)}


def text_recipe(tmp_path: Path, files: dict, strategies: dict, name: str = "recipe.yaml", **extra) -> Path:
    recipe = {
        "version": 1, "name": "tiny-text", "teacher": str(files["bert"]), "threads": 1,
        "data": {"name": "wordnet-glosses", "batch_size": 16, "root": str(files["wordnet"]),
                 "options": {"val_fraction": 0.2, "test_fraction": 0.2}},
        "text": {"max_length": 16, "spearman_size": 100, "neighbours": 3},
        "measure": {"batch_sizes": [1, 8], "thread_counts": [1], "rounds": 1, "min_seconds": 0.02},
        "scenarios": {"accuracy_floor": 5.0, "balanced_floor": 50.0},
        "quick": {"epochs": 1, "train_subset": 80, "test_subset": 24, "sample_size": 8},
        **({"baseline": "teacher"} if "teacher" in strategies else {}), **extra, "strategies": strategies}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_text_compare_end_to_end_writes_the_agreement_matrix(tmp_path, files):
    recipe = text_recipe(tmp_path, files, STRATEGIES)
    out = tmp_path / "out"
    assert cli(["compare", str(recipe), "--out", str(out), "--quick", "--quiet"]) == 0
    for name in ("report.html", "matrix.md", "matrix.json", "pareto.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    matrix = json.loads((out / "matrix.json").read_text())
    assert matrix["task"] == "text" and not matrix["failed"] and matrix["quick"]
    assert matrix["data"]["train_samples"] == 80 and matrix["data"]["test_samples"] == 24
    rows = {r["strategy"]: r for r in matrix["rows"]}
    assert list(rows) == list(STRATEGIES)
    for name, row in rows.items():
        for key, _, _ in columns_for("text"):
            assert row.get(key) is not None, (name, key)
        agree = row["agreement"]
        assert {"mean_cosine", "knn_overlap", "pairwise_spearman"} <= set(agree) and agree["n"] == 24
        assert row["accuracy"] == pytest.approx(100 * agree["pairwise_spearman"])
        assert set(row["speedup"]) == set(row["sentences_per_second"]) == {"b1_t1", "b8_t1"}
        assert all(v > 0 for v in row["speedup"].values())
    teacher = rows["teacher"]
    assert teacher["accuracy"] == pytest.approx(100.0) and teacher["speedup"]["b8_t1"] == pytest.approx(1.0)
    assert teacher["mean_cosine"] == pytest.approx(1.0) and not teacher["needs_teacher"]
    # structure: fewer layers and pruned units are fewer parameters and MACs; INT8 keeps the MACs
    assert rows["student-1l"]["macs_ratio"] == pytest.approx(3.0) and rows["student-2l"]["macs_ratio"] == pytest.approx(1.5)
    assert rows["pruned-distilled"]["parameters_ratio"] > 1.2 and rows["pruned-distilled"]["needs_teacher"]
    assert rows["student-2l-int8"]["macs"] == rows["student-2l"]["macs"]
    for name in ("student-2l-int8", "teacher-int8"):
        assert rows[name]["runtime"] == "onnxruntime" and "INT8" in rows[name]["kernel"]
    assert rows["teacher-int8"]["accuracy"] > 95 and rows["teacher-onnx"]["accuracy"] > 99
    assert rows["student-2l"]["families"] == ["distillation"] and rows["teacher-int8"]["families"] == ["structural"]
    assert set(matrix["recommendations"]) == {"resource_limited", "accuracy_sensitive", "balanced"}
    md = (out / "matrix.md").read_text()
    assert "| Spearman ×100 |" in md and "Quality is not accuracy" in md and "k-NN overlap" in md
    assert "Spearman ×100" in (out / "report.html").read_text()

    # the evaluate step recorded the ONNX model's agreement; run again and every step is reused
    logs: list[str] = []
    again = compare(recipe, out, quick=True, progress=False, log=logs.append)
    assert not again["failed"]
    assert sum("reused" in line for line in logs) == sum(len(steps) for steps in STRATEGIES.values())
    evaluated = json.loads((out / "strategies" / "teacher-onnx.json").read_text())["steps"][-1]
    assert evaluated["metrics"]["test"]["mean_cosine"] > 0.99


def test_text_steps_save_and_reload_students(tmp_path, files):
    recipe = text_recipe(tmp_path, files, {"s": ["load", {"layers": [0, 2]}, "evaluate"]})
    result = run(recipe, tmp_path / "out", progress=False, log=lambda _: None)
    layers_dir = tmp_path / "out" / "steps" / next(p.name for p in (tmp_path / "out" / "steps").iterdir()
                                                    if p.name.startswith("01-layers"))
    meta = json.loads((layers_dir / "model" / "torchslim.json").read_text())
    assert meta["structure"]["heads"] == [4, 4] and meta["teacher_layers"] == [0, 2]
    assert result.steps[1]["metrics"]["layers"] == [0, 2]
    # the reused student is loaded back from its directory for the next step
    again = run(recipe, tmp_path / "out", progress=False, log=lambda _: None)
    assert all(s["reused"] for s in again.steps)


def test_bad_layers_fail_naming_the_step(tmp_path, files):
    recipe = text_recipe(tmp_path, files, {"s": ["load", {"layers": [0, 7]}]})
    with pytest.raises(TorchSlimError, match=r"strategy 's', step 2 \(layers\).*index 7 is out of range.*3 layers"):
        run(recipe, tmp_path / "out", progress=False, log=lambda _: None)
    assert not (tmp_path / "out").exists()  # found before the run claims its folder


# -- validation ------------------------------------------------------------------------------------


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def test_text_step_in_an_image_recipe_is_refused(tmp_path):
    path = write(tmp_path, """
        version: 1
        name: x
        data: {name: synthetic}
        strategies:
          s:
            - load: teacher
            - layers: {keep: 3}
        """)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    message = str(err.value)
    assert f"{path}:8" in message and "'layers'" in message and "is a text step" in message
    assert "an image recipe (data.name 'synthetic')" in message and "Image steps: distill, evaluate" in message


def test_image_step_in_a_text_recipe_is_refused(tmp_path):
    path = write(tmp_path, """
        version: 1
        name: x
        data: {name: wordnet-glosses}
        strategies:
          s:
            - sparsify: {sparsity: 0.5}
        """)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    message = str(err.value)
    assert f"{path}:7" in message and "'sparsify'" in message and "is an image step" in message
    assert "Text steps: distill, evaluate, export, layers, load, prune, quantize" in message


def test_a_step_with_the_other_tasks_parameters_says_so():
    with pytest.raises(RecipeError, match=r"prune\.ratio.*Valid keys here: heads, ffn.*parameters of the image "
                                          r"step 'prune'"):
        parse({"name": "x", "data": {"name": "wordnet-glosses"}, "strategies": {"s": ["load", {"prune": {"ratio": 0.5}}]}})
    with pytest.raises(RecipeError, match="Input should be 'dynamic'"):
        parse({"name": "x", "data": {"name": "wordnet-glosses"},
               "strategies": {"s": ["load", {"quantize": {"mode": "static"}}]}})


@pytest.mark.parametrize(("recipe", "expected"), [
    ({"task": "image", "data": {"name": "wordnet-glosses"}}, "task 'image' does not fit data.name 'wordnet-glosses'"),
    ({"task": "text", "data": {"name": "fashion-mnist"}}, "task 'text' does not fit data.name 'fashion-mnist', a "
     "dataset of the image task; drop `task:` or use a text dataset"),
    ({"task": "text"}, "task 'text' does not fit data.name 'fashion-mnist'"),
    ({"text": {"max_length": 32}}, "the `text:` section configures recipes of another task, but this is an image "
     "recipe"),
    ({"data": {"name": "wordnet-glosses", "augment": False}}, "data.augment applies to image datasets"),
    ({"data": {"name": "wordnet-glosses", "test_subset": 10}}, "data.test_subset = 10 is smaller than the largest"),
], ids=["image-task-text-data", "text-task-image-data", "text-without-data", "text-section-on-image",
        "augment-on-text", "too-few-test-sentences"])
def test_task_mismatches_are_refused(recipe, expected):
    with pytest.raises(RecipeError, match=expected.replace("(", r"\(")):
        parse({"name": "x", **recipe, "strategies": {"s": ["load"]}})


def test_shipped_text_recipe_validates_without_loading_a_model(monkeypatch):
    from torchslim.text import load

    def refuse(*args, **kwargs):
        raise AssertionError("validating a recipe loaded a text model or tokenizer")

    monkeypatch.setattr(load, "load_encoder", refuse)
    monkeypatch.setattr(load, "load_tokenizer", refuse)
    recipe = load_recipe(REPO / "recipes" / "minilm-wordnet.yaml")
    assert recipe.task == "text" and recipe.teacher == "minilm"
    assert {"teacher-fp32", "student-3l-distilled", "student-3l-distilled-int8", "student-2l-distilled",
            "teacher-pruned-distilled", "teacher-int8"} <= set(recipe.strategies)
    steps = {name: [s.name for s in specs] for name, specs in recipe.strategies.items()}
    assert steps["student-3l-distilled-int8"] == ["load", "layers", "distill", "quantize"]


# What recipes/minilm-wordnet.yaml parsed to before the text steps' parameters became the text options
# classes: the same recipe must run the same steps.
DISTILLED = {"epochs": 2, "optimizer": "adamw", "lr": 5e-4, "schedule": "cosine", "warmup_epochs": 0.05,
             "weight_decay": 0.01, "max_grad_norm": 1.0, "losses": [{"name": "embed-cos", "weight": 1.0, "teacher": None}],
             "teacher": "teacher", "cache": "disk", "seed": None}
SHIPPED = {
    "student-3l-distilled": [{"keep": 3, "layers": None, "sample_size": 256}, DISTILLED],
    "student-3l-distilled-int8": [{"keep": 3, "layers": None, "sample_size": 256}, DISTILLED, {"mode": "dynamic"}],
    "student-2l-distilled": [{"keep": 2, "layers": None, "sample_size": 256}, DISTILLED],
    "teacher-pruned-distilled": [{"heads": 0.5, "ffn": 0.5, "sample_size": 256}, DISTILLED],
    "teacher-int8": [{"mode": "dynamic"}],
}


def test_shipped_text_recipe_parses_to_the_same_options():
    recipe = load_recipe(REPO / "recipes" / "minilm-wordnet.yaml")
    for name, expected in SHIPPED.items():
        steps = [spec.params.model_dump(mode="json") for spec in recipe.strategies[name][1:]]
        assert [{k: step[k] for k in want} for step, want in zip(steps, expected, strict=True)] == expected, name
    distill = recipe.strategies["student-3l-distilled"][2].params
    # The fit options a text distillation never set keep the values fit() used for it.
    assert (distill.momentum, distill.nesterov, distill.label_smoothing, distill.channels_last) == (0.9, True, 0.0, False)
