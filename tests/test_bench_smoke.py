"""The benchmark scripts run end to end in their ``--quick`` mode, writing only where told."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from torchslim.measure import MeasureRecord

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    """Import benchmark scripts as modules (they import their sibling ``_common``)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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
