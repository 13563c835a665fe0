"""The benchmark scripts run end to end in their ``--quick`` mode, writing only where told."""

from __future__ import annotations

import json

import pytest

from torchslim.measure import MeasureRecord


@pytest.fixture
def bench(bench_scripts, one_thread):
    """Benchmark scripts importable as modules, run on one thread."""


def test_train_default_quick(bench, tmp_path):
    import train_default

    out, md = tmp_path / "results" / "train_default.json", tmp_path / "RESULTS.md"
    md.write_text("# results\n\n<!-- other:start -->\nkeep me\n<!-- other:end -->\n")
    assert train_default.main(["--quick", "--out", str(out), "--results-md", str(md)]) == 0

    result = json.loads(out.read_text())
    records = [MeasureRecord.from_dict(r) for r in result["records"]]
    assert [r.name for r in records] == ["quick-teacher", "quick-student"]
    assert all(r.accuracy is not None and r.test_samples == 64 and r.macs > 0 for r in records)
    assert {(s.batch_size, s.threads) for s in records[0].latency} == {(1, 1), (8, 1)}
    assert result["machine"]["versions"]["torch"] and result["quick"] is True
    measured = result["training"]["quick-student"]["measured"]
    assert len(measured["step_seconds"]) == measured["steps"] == 2
    assert result["training"]["quick-student"]["recorded"] is None

    text = md.read_text()
    assert "keep me" in text and text.count("<!-- train_default:start -->") == 1
    assert "quick-student" in text and "not a result" in text
    # A second run replaces its section instead of appending another.
    train_default.main(["--quick", "--out", str(out), "--results-md", str(md)])
    assert md.read_text().count("<!-- train_default:start -->") == 1


def test_section_rewrite(bench, tmp_path):
    from _common import replace_section, write_section

    from torchslim.core.errors import TorchSlimError

    path = write_section(tmp_path / "R.md", "a", "first")
    assert path.read_text().startswith("# torchslim benchmark results")
    write_section(path, "b", "second")
    write_section(path, "a", "third")
    text = path.read_text()
    assert "third" in text and "second" in text and "first" not in text
    assert text.index("<!-- a:start -->") < text.index("<!-- b:start -->")
    with pytest.raises(TorchSlimError, match="markers"):
        replace_section("<!-- a:end --> <!-- a:start -->", "a", "x")


def test_distill_benchmark_quick(bench, tmp_path, capsys):
    import distill_fashion_mnist as distill

    out, md = tmp_path / "results" / "distill.json", tmp_path / "RESULTS.md"
    md.write_text("# results\n\n<!-- other:start -->\nkeep me\n<!-- other:end -->\n")
    argv = ["--quick", "--out", str(out), "--results-md", str(md)]
    assert distill.main(argv) == 0

    result, quick = json.loads(out.read_text()), distill.QUICK
    runs = {(r["method"], r["seed"]): r for r in result["runs"]}
    first, *others = quick.seeds
    assert len(result["chosen"]) == quick.top and distill.ALONE not in result["chosen"]
    expected = {(m, first) for m in quick.methods}
    expected |= {(m, s) for s in others for m in (distill.ALONE, *result["chosen"])}
    assert set(runs) == expected and len(result["runs"]) == len(expected)
    for run in runs.values():
        assert run["status"] == "ok" and 0 <= run["accuracy"] <= 100 and run["test"]["n"] == 128
        assert len(run["epoch_seconds"]) == quick.epochs and run["spec"] == distill.spec_of(run["method"])
    timing = result["timing"]
    assert set(timing["ratio_to_alone"]) == {distill.ALONE, "kd-live", "kd-cached"}
    assert len(timing["cache_build_seconds"]) == quick.timing_rounds and isinstance(timing["target_met"], bool)
    assert set(result["teachers"]) == {"teacher", "second"}
    assert result["teachers"]["teacher"]["test"]["n"] == 128
    assert result["machine"]["versions"]["torch"] and result["threads"]["torch"] == quick.threads
    assert set(result["summary"]) == set(quick.methods)

    text = md.read_text()
    assert "keep me" in text and text.count("<!-- distill_fashion_mnist:start -->") == 1
    assert "not a result" in text and "kd-2teachers" in text and result["verdict"]["text"] in text
    # Started again with the same settings, it trains nothing again (a killed run resumes).
    capsys.readouterr()
    assert distill.main(argv) == 0
    assert f"resuming: {len(expected)} run(s)" in capsys.readouterr().out
    again = json.loads(out.read_text())
    assert again["runs"] == result["runs"] and again["timing"] == result["timing"]
    assert md.read_text().count("<!-- distill_fashion_mnist:start -->") == 1


def test_distill_benchmark_summary(bench):
    import distill_fashion_mnist as distill

    def run(method, seed, accuracy, seconds=1.0):
        return {"method": method, "seed": seed, "status": "ok", "accuracy": accuracy,
                "mean_epoch_seconds": seconds}

    runs = [run(distill.ALONE, 0, 90.0), run(distill.ALONE, 1, 90.2), run(distill.ALONE, 2, 89.8),
            run("kd", 0, 91.0, 2.0), run("kd", 1, 91.2, 2.0), run("kd", 2, 90.8, 2.0), run("dkd", 0, 92.0),
            {"method": "fitnet", "seed": 0, "status": "diverged", "error": "nan"}]
    summary = distill.summarise(runs, teacher_accuracy=94.0)
    assert summary["kd"]["delta"] == pytest.approx(1.0) and summary["kd"]["gap_closed"] == pytest.approx(25.0)
    assert summary["kd"]["seconds_ratio"] == pytest.approx(2.0) and summary["kd"]["std"] == pytest.approx(0.2)
    assert summary["dkd"]["gap_closed"] == pytest.approx(50.0) and summary["dkd"]["std"] is None
    assert summary["fitnet"] == {"seeds": [], "n": 0, "diverged_seeds": [0]}
    assert distill.best_methods(runs, distill.FULL) == ["dkd", "kd"]
    verdict = distill.verdict(summary, distill.FULL)  # dkd has one seed: kd is the best on all three
    assert verdict["best"] == "kd" and verdict["beats_by_half_point"] and verdict["exceeds_spread"]
    assert "diverged" in distill.table_markdown(summary, distill.FULL)


def test_distill_benchmark_methods_build(bench):
    """Every method of the table builds and runs a batch with stand-ins of the default models."""
    import distill_fashion_mnist as distill

    from torchslim import data, models

    bundle = data.load("synthetic", batch_size=8, num_classes=10, shape=(1, 28, 28), train_size=16,
                       val_size=0, test_size=8)
    teachers = {distill.TEACHER: models.create("resnet20"), distill.SECOND: models.create("cnn-small")}
    distill.check_methods(distill.FULL, teachers, bundle)
