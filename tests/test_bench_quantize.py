"""benchmarks/quantize_fashion_mnist.py runs end to end in --quick mode and resumes."""

from __future__ import annotations

import json

import pytest

from torchslim.measure import MeasureRecord


@pytest.mark.slow
def test_quantize_benchmark_quick(bench_scripts, tmp_path, capsys):
    import quantize_fashion_mnist as bench

    out, md = tmp_path / "results" / "q.json", tmp_path / "RESULTS.md"
    md.write_text("# results\n\n<!-- other:start -->\nkeep me\n<!-- other:end -->\n")
    argv = ["--quick", "--out", str(out), "--results-md", str(md), "--work", str(tmp_path / "work")]
    assert bench.main(argv) == 0
    result = json.loads(out.read_text())
    assert set(result["models"]) == {"teacher", "student"}
    for entry in result["models"].values():
        records = {r["name"]: MeasureRecord.from_dict(r) for r in entry["records"]}
        assert list(records) == list(bench.VARIANTS)
        assert records["torch-fp32"].runtime == "torch-eager"
        assert all(r.runtime == "onnxruntime" for n, r in records.items() if n != "torch-fp32")
        assert all(r.test_samples == 64 and r.macs > 0 for r in records.values())
        assert records["static-minmax"].extra["kernel"] == "INT8 QDQ U8S8 per-channel"
        assert {(s.batch_size, s.threads) for s in records["qat"].latency} == {(1, 1), (8, 1)}
        assert entry["summary"]["static-minmax"]["size_ratio_vs_ort_fp32"] > 1
    assert any(line.startswith("Targets, teacher static-minmax") for line in result["models"]["teacher"]["findings"])
    assert result["builds"]["teacher"]["qat"]["record"]["mode"] == "qat"
    assert result["operands"]["operands"] in ("U8S8", "S8S8")
    text = md.read_text()
    assert "keep me" in text and "not a result" in text and text.count("<!-- quantize_fashion_mnist:start -->") == 1
    # Run again: every build and measurement is reused.
    capsys.readouterr()
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    assert "teacher: measured already" in printed and "building" not in printed
