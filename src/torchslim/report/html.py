"""``report.html``: one self-contained page (styles inline, the plot as a data URI, nothing fetched)
that reads at 1000 px: the answer first (a recommendation per scenario, its ties, the failed
strategies, the pick's artifact and load lines, the plot), then a compact table with the picks
highlighted and its legend written out, then the rule of thumb and every row's record folded."""

from __future__ import annotations

import base64
from html import escape as e

from torchslim.report.view import (
    MARK,
    answer,
    context_line,
    failures,
    headline,
    picks,
    quality_line,
    record,
    row_id,
    rule_evidence,
    runtime_gain_line,
    skipped,
    status_text,
    table_cell,
    table_columns,
    timing_line,
    timing_notes,
    title,
)

CSS = """body{font-family:system-ui,sans-serif;margin:1.2em 2em;color:#222;line-height:1.4}
main{max-width:1100px}h1{font-size:1.5em;margin:0 0 .4em}h2{font-size:1.2em;margin:1.4em 0 .5em}
.answer{background:#f4f8ff;border:1px solid #c9d8f0;border-radius:6px;padding:.6em 1em;margin-bottom:1em}
.answer h2{margin-top:.2em}.headline{font-size:1.1em;margin:.2em 0}.answer ul{padding-left:1.2em;margin:.3em 0}.answer li{margin:.45em 0}
.tie{color:#6b4e00}.failures{color:#a11}
pre{background:#f6f6f6;border:1px solid #ddd;padding:.5em .7em;white-space:pre-wrap;overflow-wrap:anywhere;
font-size:12px;margin:.3em 0}code{font-size:12px;overflow-wrap:anywhere}
figure{margin:1em 0}img{max-width:100%;height:auto}figcaption{font-size:12px;color:#555}
.scroll{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;font-size:13px;margin:.6em 0}th,td{border:1px solid #ccc;padding:3px 6px;
text-align:right;vertical-align:top}th{background:#f2f2f2;font-weight:600}
td:first-child,th:first-child{text-align:left}table.text td,table.text th{text-align:left}
table.compact td{white-space:nowrap}table.compact td:first-child{white-space:normal;min-width:9em}
table.compact td.error{white-space:normal;text-align:left}
td .ci{display:block;font-size:11px;color:#666;white-space:nowrap}
tr.chosen td{background:#fff3c4}tr.chosen td:first-child{font-weight:700}tr.failed td{background:#fde8e8}tr.skipped td{background:#f0f0f0}
ul.legend{columns:2;column-gap:2em;font-size:12px;color:#444;padding-left:1.2em;margin:.3em 0 1em}
.confirmed{color:#176b2c;font-weight:600}.contradicted{color:#a11;font-weight:600}.partly{color:#8a5a00}
details{margin:.2em 0}summary{cursor:pointer}.small{color:#555;font-size:12px}"""


def _bold(text: str) -> str:
    """Escape ``text`` and turn its Markdown ``**bold**`` and ```code``` spans into HTML."""
    parts = e(text).split("**")
    bold = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(bold.split("`")))


def _answer(matrix: dict) -> str:
    items = []
    for item in answer(matrix):
        parts = [_bold(item["text"])]
        if item["tie_untold"]:
            parts.append(f"<div class='tie'>Tied within noise with: {e(', '.join(item['tie_untold']))}</div>")
        if not item["repeat"] and item["artifact_untold"]:
            parts.append(f"<div>Artifact: <code>{e(item['artifact'])}</code></div>")
        if not item["repeat"] and item["load"]:
            parts.append(f"<pre><code>{e(chr(10).join(item['load']))}</code></pre>")
        items.append(f"<li class='rec' id='rec-{e(item['key'])}'>{''.join(parts)}</li>")
    fails = failures(matrix)
    extra = f"<p class='failures'><b>Failed:</b> {e('; '.join(fails))}.</p>" if fails else ""
    if skipped(matrix):
        extra += f"<p><b>Not measured:</b> {e('; '.join(skipped(matrix)))}.</p>"
    timing = "".join(f"<p class='small'>{e(line)}</p>" for line in (timing_line(matrix), runtime_gain_line(matrix))
                     if line)
    top = f"<p class='headline'>{_bold(headline(matrix))}</p>" if headline(matrix) else ""
    return (f"<section class='answer' id='recommendation'><h2>Recommendation</h2>{top}<ul>{''.join(items)}</ul>"
            f"{extra}{timing}</section>")


def _table(matrix: dict) -> str:
    cols, chosen = table_columns(matrix), picks(matrix)
    head = "".join(f"<th title='{e(d)}'>{e(h)}</th>" for _, h, d in cols)
    body = []
    for row in matrix["rows"]:
        if row["status"] != "ok":
            body.append(f"<tr class='{e(row['status'])}'><td>{e(row['strategy'])}</td><td colspan='{len(cols) - 1}' "
                        f"class='error'>{e(status_text(row))}</td></tr>")
            continue
        is_pick = row_id(row) in chosen or row["strategy"] in chosen
        texts = [e(main) + (f"<span class='ci'>{e(sub)}</span>" if sub else "")
                 for main, sub in (table_cell(row, k, matrix) for k, _, _ in cols)]
        if is_pick:
            texts[0] = f"{MARK} {texts[0]}"
        cls = "chosen" if is_pick else "measured"
        body.append(f"<tr class='{cls}'>" + "".join(f"<td>{t}</td>" for t in texts) + "</tr>")
    legend = "".join(f"<li><b>{e(h)}</b>: {e(d)}</li>" for _, h, d in cols)
    return (f"<div class='scroll'><table class='compact' id='matrix'><tr>{head}</tr>{''.join(body)}</table></div>"
            f"<ul class='legend'>{legend}</ul>")


def _rules(matrix: dict) -> str:
    rows = "".join(f"<tr><td>{e(c['aspect'])}</td><td>{e(c['claim'])}</td><td class='{e(c['status'])}'>"
                   f"{e(c['status'])}</td><td>{e(rule_evidence(c))}</td></tr>" for c in matrix["rule_of_thumb"])
    notes = "".join(f"<li>{e(n)}</li>" for n in timing_notes(matrix))
    folded = f"<details><summary>Timing notes</summary><ul>{notes}</ul></details>" if notes else ""
    return ("<h2>The rule of thumb, checked against these measurements</h2><table class='text'><tr><th>aspect</th>"
            f"<th>rule of thumb</th><th>verdict</th><th>evidence</th></tr>{rows}</table>{folded}")


def _value(heading: str, value: str) -> str:
    return f"<pre><code>{e(value)}</code></pre>" if heading == "load" else e(value)


def _records(matrix: dict) -> str:
    out = []
    for row in matrix["rows"]:
        cells = "".join(f"<tr><th>{e(h)}</th><td>{_value(h, v)}</td><td class='small'>{e(d)}</td></tr>"
                        for h, v, d in record(row, matrix))
        out.append(f"<details><summary>{e(row_id(row))}</summary><table class='text'>{cells}</table></details>")
    return "<h2>Full record per row</h2>" + "".join(out)


def to_html(matrix: dict, png: bytes) -> str:
    """The report page for ``matrix`` with ``png`` (pareto.png's bytes) embedded."""
    image = base64.b64encode(png).decode()
    q = quality_line(matrix)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>torchslim — {e(matrix['recipe'])}</title>
<style>{CSS}</style></head><body><main>
<h1>{e(title(matrix))}</h1>
{_answer(matrix)}
<figure><img alt="accuracy vs latency, one point per row" src="data:image/png;base64,{image}">
<figcaption>Up and left is better. Ringed: recommended. Latency at the primary setting on the runtime each row
ships on.</figcaption></figure>
<h2>Measurements</h2>
<p class="small">{_bold(context_line(matrix))}</p>
{f"<p>{_bold(q)}</p>" if q else ""}
{_table(matrix)}
{_rules(matrix)}
{_records(matrix)}
<p class="small">Source data: matrix.json (torchslim report DIR re-renders this page from it).</p>
</main></body></html>
"""


__all__ = ["CSS", "to_html"]
