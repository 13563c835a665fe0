"""The pruning benchmark runs end to end in its ``--quick`` mode, writes only where told, and
resumes from its JSON without redoing rows."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_prune_benchmark_quick_and_resume(bench_scripts, tmp_path, capsys):
    import prune_fashion_mnist as bench_prune

    out, md = tmp_path / "results" / "prune.json", tmp_path / "RESULTS.md"
    md.write_text("# results\n\n<!-- other:start -->\nkeep me\n<!-- other:end -->\n")
    argv = ["--quick", "--criteria", "l1,l2,random", "--sparsities", "0.8", "--out", str(out), "--results-md", str(md)]
    assert bench_prune.main(argv) == 0

    result = json.loads(out.read_text())
    rows = {r["id"]: r for r in result["rows"]}
    best = result["best"]
    assert set(best) == {"l1", "l2"} and "random" not in best
    expected = {"screen:l1", "screen:l2", "screen:random", "compare:oneshot-finetune", "compare:oneshot-kd",
                "compare:iterative-kd", "headline", "sparse:0.8"}
    expected |= {f"ratio:{c}:{r}" for c in best for r in (0.3, 0.7)}
    assert set(rows) == expected
    teacher = result["teacher"]
    for row in rows.values():
        assert 0 <= row["accuracy"] <= 100 and set(row["speedup"]) == {"1", "8"}
        assert len(row["latency"]) == len(row["teacher_latency"]) == 2  # timed in the same call as the teacher
    assert rows["headline"]["recover"] == "kd" and rows["headline"]["criterion"] == best[0]
    assert rows["compare:iterative-kd"]["steps"] == 2 and len(rows["compare:iterative-kd"]["record"]["history"]) == 2
    assert rows["screen:l1"]["parameters"] < 0.4 * teacher["parameters"]
    assert rows["sparse:0.8"]["parameters"] == teacher["parameters"]
    assert abs(rows["sparse:0.8"]["sparsity_record"]["sparsity"] - 0.8) < 1e-3
    assert result["machine"]["versions"]["torch_pruning"] == "1.6.1"

    text = md.read_text()
    assert "keep me" in text and text.count("<!-- prune_fashion_mnist:start -->") == 1
    assert "not a result" in text and "**Headline**" in text and "Where the criterion mattered" in text
    capsys.readouterr()
    assert bench_prune.main(argv) == 0  # started again with the same settings: nothing is redone
    assert f"resuming: {len(expected)} row(s)" in capsys.readouterr().out
    assert json.loads(out.read_text())["rows"] == result["rows"]
