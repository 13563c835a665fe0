"""The report files: answer first in HTML and Markdown, picks highlighted, legends written out, the
plot's labels apart and its millisecond ticks plain, matrices of format 1 and 2 alike."""

from __future__ import annotations

import base64
import itertools
import re

import pytest

from report_matrices import crowded_matrix, format2_matrix, old_matrix
from torchslim.report import write_report
from torchslim.report.html import to_html
from torchslim.report.plot import pareto_figure, plotted_rows
from torchslim.report.render import to_markdown
from torchslim.report.view import MARK, table_columns

SHAPES = {"format-1": old_matrix, "format-2": format2_matrix}
PNG = b"\x89PNG fake bytes: the page only embeds them"


@pytest.fixture(params=list(SHAPES))
def matrix(request):
    return SHAPES[request.param]()


def _close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_html_answer_before_table(matrix):
    page = to_html(matrix, PNG)
    answer, plot, table = page.index("id='recommendation'"), page.index("data:image/png;base64,"), \
        page.index("id='matrix'")
    assert answer < plot < table
    assert page.index("Resource-limited") < table and page.index("Balanced") < table
    assert "<link" not in page and "src=\"http" not in page and "src='http" not in page


def test_markdown_answer_before_table(matrix):
    md = to_markdown(matrix)
    answer, plot, table = md.index("## Recommendation"), md.index("![accuracy vs latency](pareto.png)"), \
        md.index("| strategy |")
    assert answer < plot < table
    assert md.index("Resource-limited") < table and md.index("Balanced") < table
    assert md.index("## Full record per row") > table and "<details><summary>" in md


def test_picks_highlighted(matrix):
    page, md = to_html(matrix, PNG), to_markdown(matrix)
    chosen = re.findall(r"<tr class='chosen'><td>([^<]*)</td>", page)
    assert chosen == [f"{MARK} teacher-int8"]
    assert page.count("<tr class='measured'>") == sum(r["status"] == "ok" for r in matrix["rows"]) - 1
    marked = [line for line in md.splitlines() if line.startswith(f"| {MARK}")]
    assert marked == [line for line in md.splitlines() if line.startswith(f"| {MARK} **teacher-int8**")]
    assert len(marked) == 1


def test_table_legend_written_out(matrix):
    page, md = to_html(matrix, PNG), to_markdown(matrix)
    cols = table_columns(matrix)
    assert len(cols) <= 12, "the compact table stays narrow; everything else is in each row's record"
    legend = page[page.index("<ul class='legend'>"):]
    for _, heading, meaning in cols:
        assert f"<b>{heading}</b>: " in legend
        assert f"- **{heading}**: {meaning}" in md
    headings = [h for _, h, _ in cols]
    assert "b1 ms" in headings and "b64 ms" in headings
    assert any(h.startswith("speed-up b64") for h in headings)


def test_format2_answer_names_ties_failures_and_load_lines():
    m = format2_matrix()
    page, md = to_html(m, PNG), to_markdown(m)
    load = m["recommendations"]["resource_limited"]["load"]
    assert "```python\n" + "\n".join(f"  {line}" for line in load) in md
    assert "<pre><code>import onnxruntime as ort\ny = ort.InferenceSession(" in page
    answer = md.split("## Measurements")[0]
    assert answer.count("```python") == 1, "the load lines are shown once per pick, not once per scenario"
    assert md.count("```python") == 1 + sum(bool(r.get("load")) for r in m["rows"]), "and in each row's record"
    for text in (page, md):
        assert "Tied within noise with: teacher-pruned-distilled-int8@ort-int8" in text
        assert "student-broken: loss became nan at epoch 1" in text
        assert "steps/teacher-int8/model.onnx" in text
        assert "Timing: quiet" in text
    assert page.index("student-broken: loss") < page.index("id='matrix'")
    assert "speed-up b64 (same runtime) ×" in md and "speed-up b64 (vs today) ×" in md
    assert "3.07 [2.92–3.25]" in md and "93.39 ± 0.25" in md
    assert "| student-broken | FAILED: loss became nan at epoch 1, step 2" in md
    assert "teacher-fp32@ort-fp32" in md and "| ort-int8 |" in md


def test_format1_renders_what_it_has():
    m = old_matrix()
    page, md = to_html(m, PNG), to_markdown(m)
    assert "Artifact" not in md and "<pre>" not in page and "Failed" not in md
    assert "Pick **teacher-int8** for every scenario" in md
    assert "| runtime |" in md and "target" not in md.split("## Measurements")[1].split("\n\n")[2]


def test_labels_do_not_overlap_with_many_close_points():
    fig, labels = pareto_figure(crowded_matrix(24))
    try:
        renderer = fig.canvas.get_renderer()
        assert len(labels) == 24
        boxes = [label.get_window_extent(renderer) for label in labels]
        for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2):
            assert not a.overlaps(b), (labels[i].get_text(), labels[j].get_text())
        frame = fig.get_window_extent(renderer)
        assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
    finally:
        _close(fig)


def test_committed_matrix_labels_apart_and_ticks_plain():
    m = old_matrix()
    fig, labels = pareto_figure(m)
    try:
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        assert ax.get_xscale() == "log"
        ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        assert len(ticks) >= 3 and all(re.fullmatch(r"\d+(\.\d+)?", t) for t in ticks), ticks
        assert {"5", "10", "20", "50"} <= set(ticks)
        assert not [t for t in ax.get_xticklabels(minor=True) if t.get_text()]
        assert "(ms)" in ax.get_xlabel()
        boxes = [label.get_window_extent(renderer) for label in labels]
        assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
        assert sorted(label.get_text() for label in labels) == sorted(r["strategy"] for r in plotted_rows(m))
        # with room around every point, each label sits right next to its marker: no leader lines
        assert not [line for line in ax.lines if line.get_linestyle() == "-"], "a label was pushed away"
    finally:
        _close(fig)


def test_plot_legends_bars_and_ring():
    for m, targets, bars in ((old_matrix(), False, "±1 s.e. accuracy"),
                             (format2_matrix(), True, "p10–p90 latency, ±1 s.e. accuracy")):
        fig, _ = pareto_figure(m)
        try:
            texts = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
            titles = [legend.get_title().get_text() for legend in fig.legends]
            assert {"structural", "distilled", "both", "recommended", "Pareto front", bars} <= set(texts)
            assert "marker area: bytes on disk" in titles and {"32.1 kB", "1.1 MB"} <= set(texts)
            assert ({"torch-fp32", "ort-fp32", "ort-int8"} <= set(texts)) == targets
            ax = fig.axes[0]
            # the error bars: one vertical segment per plotted row, horizontal ones where p10/p90 exist
            segments = [c for c in ax.collections if c.__class__.__name__ == "LineCollection"]
            assert len(segments) >= len(plotted_rows(m))
            rings = [c for c in ax.collections if c.__class__.__name__ == "PathCollection"
                     and len(c.get_edgecolors()) and tuple(c.get_edgecolors()[0][:3]) == pytest.approx(
                         (0.862745, 0.078431, 0.235294), abs=1e-3)]
            assert len(rings) == 1, "the pick is ringed once"
        finally:
            _close(fig)


def test_write_report_files(tmp_path):
    write_report(format2_matrix(), tmp_path)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    png = (tmp_path / "pareto.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert base64.b64encode(png).decode() in page
    assert (tmp_path / "matrix.md").read_text(encoding="utf-8").startswith("# Selection matrix — fashion-mnist")


def test_no_rows_renders():
    m = old_matrix()
    m.update(rows=[], recommendations={"balanced": {"strategy": None, "text": "No recommendation: nothing measured."}},
             failed=[])
    fig, labels = pareto_figure(m)
    _close(fig)
    assert labels == []
    assert "No recommendation: nothing measured." in to_markdown(m)
    assert "No recommendation" in to_html(m, PNG)


def test_what_the_sentence_says_is_not_repeated():
    m = format2_matrix()
    rec = m["recommendations"]["resource_limited"]
    rec["text"] += f" Within noise of it: {rec['tie'][0]}. Load it from `{rec['artifact']}`."
    md = to_markdown(m)
    first = md.split("\n- ")[1].split("\n- ")[0]
    assert "Tied within noise with" not in first and "Artifact:" not in first
    assert "```python" in first, "the load lines still follow"
    assert md.count("Tied within noise with") == 2, "the other scenarios' texts do not name the tie"


def test_text_task_has_no_invented_error():
    """A text matrix's quality is agreement, not a proportion of samples: no binomial error."""
    m = old_matrix()
    m.update(task="text", quality=None)
    for row in m["rows"]:
        row["accuracy"] = 90.0
    md = to_markdown(m)
    assert "Spearman ×100" in md and "±" not in md.split("## Measurements")[1].split("## The rule")[0]
    fig, _ = pareto_figure(m)
    try:
        assert not [c for c in fig.axes[0].collections if c.__class__.__name__ == "LineCollection"]
    finally:
        _close(fig)


def test_format2_runtime_gain_timing_notes_and_basis():
    m = format2_matrix()
    m["runtime_gain"] = {"ort-fp32": {"b64_t1": {"ratio": 1.25, "low": 1.19, "high": 1.33, "baseline": "x"}}}
    m["timing"]["notes"] = ["b1_t1: 40 rounds, not converged within 60 s"]
    m["rule_of_thumb"][0]["basis"] = "bytes on disk"
    for text in (to_markdown(m), to_html(m, PNG)):
        assert "The runtime alone (the baseline converted, not compressed), at b64: ort-fp32 1.25× [1.19–1.33]." in text
        assert "b1_t1: 40 rounds, not converged within 60 s" in text and "Timing notes" in text
        assert "(basis: bytes on disk)" in text
    assert "The runtime alone" not in to_markdown(old_matrix())


def test_skipped_row_is_named_not_failed():
    m = format2_matrix()
    m["rows"].append({"id": "onnx-only", "strategy": "onnx-only", "target": None, "status": "skipped",
                      "steps": ["export"], "families": [],
                      "error": "none of measure.targets (torch-fp32) runs an ONNX model"})
    md, page = to_markdown(m), to_html(m, PNG)
    line = "onnx-only: none of measure.targets (torch-fp32) runs an ONNX model"
    assert f"**Not measured:** {line}." in md and f"<b>Not measured:</b> {line}." in page
    assert "| onnx-only | SKIPPED: none of measure.targets" in md and "<tr class='skipped'>" in page
    assert "onnx-only" not in md.split("**Failed:**")[1].split("\n")[0]
