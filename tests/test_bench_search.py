"""The search benchmarks: the early-stopping comparison end to end in its --quick mode, and the
Fashion-MNIST search benchmark's analysis and table on a real (tiny, synthetic) search."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from torchslim import data, fit, models, save_model


@pytest.fixture
def bench(bench_scripts, one_thread):
    """Benchmark scripts importable as modules, run on one thread."""


def test_search_early_stop_quick(bench, tmp_path):
    import search_early_stop

    out, md = tmp_path / "results" / "search_early_stop.json", tmp_path / "RESULTS.md"
    md.write_text("# results\n\n<!-- other:start -->\nkeep me\n<!-- other:end -->\n")
    record = search_early_stop.main(["--quick", "--out", str(out), "--results-md", str(md)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(record))
    early, full = record["runs"]["early"], record["runs"]["full"]
    assert record["same_candidates"] and record["trials"] == 8
    assert len(full["measured"]) == 8 and not full["not_trained"] and not full["stopped_low_fidelity"]
    assert len(early["measured"]) + len(early["not_trained"]) + len(early["stopped_low_fidelity"]) <= 8
    assert set(record["front_lost"]) <= set(record["full_front"])
    text = md.read_text()
    assert "keep me" in text and "<!-- search_early_stop:start -->" in text and "A --quick smoke run" in text


def test_search_benchmark_analysis_on_a_real_search(bench, tmp_path):
    import search_fashion_mnist as bench_search

    from torchslim.measure import machine_info
    from torchslim.search import search

    torch.manual_seed(0)
    bundle = data.load("synthetic", batch_size=32, seed=0)
    teacher = models.create("resnet8", num_classes=bundle.num_classes, in_channels=1)
    fit(teacher, bundle, 2, progress=False)
    save_model(teacher, tmp_path / "teacher")
    recipe = {"version": 1, "name": "synth", "teacher": str(tmp_path / "teacher"), "threads": 1,
              "data": {"name": "synthetic", "batch_size": 32},
              "measure": {"batch_sizes": [1, 64], "thread_counts": [1], "rounds": 2, "max_seconds": 1},
              "search": {"trials": 3, "front_size": 2, "target": {"seconds": 0.5},
                         "constraints": {"accuracy_floor": 50.0},
                         "space": {"route": ["student"], "quantize": ["none", "static"],
                                   "distill.epochs": {"low": 1, "high": 2}, "distill.student": ["cnn-tiny"]}},
              "strategies": {"teacher-fp32": [{"load": "teacher"}]}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    out = tmp_path / "search"
    summary = search(path, out, budget="5m", log=lambda m: None)
    analysed = bench_search.analyse(summary, out, 1.0)
    assert analysed["trials"] == 3 and analysed["front_test"]
    for entry in analysed["front_test"]:
        assert entry["speedup_ort_fp32"] > 0 and entry["speedup_torch"] > 0 and isinstance(entry["meets_target"], bool)
    assert {d["strategy"] for d in analysed["dominance"]} >= {"teacher-fp32", "teacher-int8"}  # the committed matrix
    record = {"command": "python benchmarks/search_fashion_mnist.py", "machine": machine_info(), "recipe": "r",
              "seed": 0, "threads": 1, "budget": "5m", "date": "now", "quick": True,
              "searches": {"tpe": analysed, "random": analysed}}
    record["comparison"] = bench_search.compare_samplers(record["searches"])
    text = bench_search.markdown(record)
    assert "### Sampler tpe" in text and "TPE did not beat random sampling" in text  # equal fronts: no win
