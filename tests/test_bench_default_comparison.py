"""The default-comparison benchmark: real `torchslim compare` runs in fresh processes on a tiny
synthetic recipe, read back and compared; the stability analysis on the committed matrix of the
default recipe; its bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml

from torchslim import data, fit, models, save_model
from torchslim.core.errors import TorchSlimError

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "benchmarks" / "results" / "compare-fashion-mnist" / "matrix.json"


@pytest.fixture
def bench(bench_scripts, one_thread):
    """Benchmark scripts importable as modules, run on one thread."""


@pytest.fixture(scope="module")
def synth_recipe(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("default-comparison")
    torch.manual_seed(0)
    bundle = data.load("synthetic", batch_size=32, seed=0)
    teacher = models.create("cnn-small", num_classes=bundle.num_classes, in_channels=1)
    fit(teacher, bundle, 1, progress=False)
    save_model(teacher, root / "teacher")
    recipe = {"version": 1, "name": "synth", "teacher": str(root / "teacher"), "threads": 1,
              "data": {"name": "synthetic", "batch_size": 32},
              "measure": {"batch_sizes": [1, 8], "thread_counts": [1], "rounds": 1, "min_seconds": 0.02},
              "strategies": {"teacher-fp32": [{"load": "teacher"}],
                             "teacher-int8": [{"load": "teacher"}, {"quantize": {"mode": "static"}}]}}
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_two_real_runs_read_back_and_compared(bench, synth_recipe, tmp_path):
    import default_comparison as dc

    work, out, md = tmp_path / "work", tmp_path / "dc.json", tmp_path / "RESULTS.md"
    md.write_text("# results\n\n<!-- other:start -->\nkeep me\n<!-- other:end -->\n")
    argv = ["--recipe", str(synth_recipe), "--runs", "2", "--work", str(work), "--out", str(out),
            "--results-md", str(md), "--publish", str(tmp_path / "published")]
    record = dc.main(argv)
    assert json.loads(out.read_text()) == json.loads(json.dumps(record))
    assert [Path(f).name for f in record["folders"]] == ["run-1", "run-2"]
    assert (work / "run-1" / "matrix.json").is_file() and (work / "run-2" / "matrix.json").is_file()
    for run in record["runs"]:
        assert set(run["rows"]) == {"teacher-fp32@ort-fp32", "teacher-int8@ort-int8"}
        assert run["rows"]["teacher-fp32@ort-fp32"]["same_runtime"] is None  # the baseline itself
        assert run["rows"]["teacher-int8@ort-int8"]["same_runtime"]["low"] > 0
    row = record["stability"]["rows"]["teacher-int8@ort-int8"]
    assert row["same_runtime"]["spread"] >= 0 and row["same_runtime"]["min"] <= row["same_runtime"]["max"]
    assert sorted(p.name for p in (tmp_path / "published").iterdir()) == sorted(dc.PUBLISHED)
    text = md.read_text()
    assert "keep me" in text and "<!-- compare_fashion_mnist:start -->" in text and "Across the 2 runs" in text
    # a second call reads the finished runs instead of running them again
    stamp = (work / "run-1" / "matrix.json").stat().st_mtime_ns
    again = dc.main(argv)
    assert (work / "run-1" / "matrix.json").stat().st_mtime_ns == stamp
    assert again["runs"] == record["runs"]


def test_stability_on_the_committed_default_matrix(bench):
    import default_comparison as dc

    matrix = json.loads(COMMITTED.read_text())
    first = dc.headline(matrix)
    assert first["targets"]["cascade"]["met"] and first["targets"]["fast"]["met"]
    assert "teacher-fp32@torch-fp32" not in first["rows"]  # torch eager rows are not deployment rows
    assert first["rows"]["teacher-fp32@ort-fp32"]["same_runtime"] is None
    same = dc.stability([first, copy.deepcopy(first), copy.deepcopy(first)])
    assert same["max_spread"] == 0 and same["all_intervals_agree"]
    assert all(p["same"] and p["within_ties"] for p in same["picks"].values())

    # a run 20% faster whose interval excludes the others', and another accuracy-sensitive pick
    slower = json.loads(COMMITTED.read_text())
    for r in slower["rows"]:
        for key in ("speedup", "speedup_user"):
            r[key] = {s: v * 1.2 for s, v in r[key].items()}
            for ci in r.get(f"{key}_ci", {}).values():
                ci.update(low=ci["low"] * 1.2, high=ci["high"] * 1.2, ratio=ci["ratio"] * 1.2)
    slower["recommendations"]["accuracy_sensitive"].update(row="student-alone@ort-fp32", tie=[])
    second = dc.headline(slower)
    moved = dc.stability([first, second])
    cascade = moved["rows"]["teacher-pruned-distilled-int8@ort-int8"]["same_runtime"]
    assert cascade["spread"] == pytest.approx(0.2) and not cascade["intervals_agree"]
    assert not moved["all_intervals_agree"] and moved["max_spread"] == pytest.approx(0.2)
    sensitive = moved["picks"]["accuracy_sensitive"]
    assert not sensitive["same"] and not sensitive["within_ties"]
    record = {"command": "python benchmarks/default_comparison.py", "compare": "torchslim compare r --out w/run-K",
              "date": "today", "machine": matrix["machine"], "recipe": "recipes/fashion-mnist.yaml", "seed": 0,
              "threads": 2, "quick": False, "published": None, "json": "x.json", "runs": [first, second],
              "stability": moved}
    text = dc.render_section(record)
    assert "| accuracy_sensitive |" in text and "**differs**" in text and "**no**" in text
    assert "Cascade target met in 2 of 2 runs" in text


def test_bad_arguments_are_refused_before_any_run(bench, tmp_path, capsys):
    import default_comparison as dc

    for argv, needle in ((["--runs", "0"], "--runs must be at least 1, got 0"),
                         (["--recipe", str(tmp_path / "none.yaml")], "none.yaml: no such file")):
        with pytest.raises(SystemExit) as exc:
            dc.main(argv + ["--work", str(tmp_path / "w")])
        assert exc.value.code == 2 and needle in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_a_run_that_fails_names_its_command_and_log(bench, tmp_path):
    import default_comparison as dc

    recipe = tmp_path / "broken.yaml"
    recipe.write_text("version: 1\nname: broken\nteacher: no-such-teacher\ndata: {name: synthetic}\n"
                      "strategies: {t: [load]}\n")
    with pytest.raises(TorchSlimError, match=r"exited 2 without a matrix; its log .*run-1\.log ends:"):
        dc.main(["--recipe", str(recipe), "--runs", "1", "--work", str(tmp_path / "w"),
                 "--out", str(tmp_path / "o.json"), "--results-md", str(tmp_path / "R.md"),
                 "--publish", str(tmp_path / "published")])
    assert not any((tmp_path / n).exists() for n in ("o.json", "R.md", "published"))
