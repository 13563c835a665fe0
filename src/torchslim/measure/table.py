"""Records as a table: one row per record, one latency column per (batch size, threads).

Speed is shown as a ratio to a baseline measured in the same run (BENCHMARKS.md: compare, don't
quote). The same cells render as a rich table for the terminal and as Markdown for RESULTS.md.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from torchslim.measure.record import SPREAD_LIMIT, LatencyStat, MeasureRecord

BUSY_MARK = "*"
BUSY_NOTE = f"{BUSY_MARK} p90/p10 > {SPREAD_LIMIT}: the machine was busy while timing; do not trust that median."
SPEEDUP_NOTE = "Latency cells: median ms per batch (p10–p90), then the speed-up over the baseline's median."


def human(value: float, unit: str = "", base: int = 1000) -> str:
    """``1234567`` -> ``"1.23 M"``: three significant digits and an SI prefix (``base`` 1000)."""
    for prefix in ("", "k", "M", "G", "T"):
        if abs(value) < base or prefix == "T":
            digits = f"{value:.0f}" if prefix == "" else f"{value:.3g}"
            return f"{digits} {prefix}{unit}".strip()
        value /= base
    raise AssertionError("unreachable")


def settings(records: list[MeasureRecord]) -> list[tuple[int, int]]:
    """Every (batch size, threads) any record was timed at, sorted by threads then batch size."""
    keys = {stat.key for record in records for stat in record.latency}
    return sorted(keys, key=lambda k: (k[1], k[0]))


def latency_cell(stat: LatencyStat | None, base: LatencyStat | None) -> str:
    if stat is None:
        return "—"
    text = f"{stat.median_ms:.3g} ({stat.p10_ms:.3g}–{stat.p90_ms:.3g})"
    if base is not None:
        text += f" {base.median_ms / stat.median_ms:.2f}×"
    return text + (f" {BUSY_MARK}" if stat.spread > SPREAD_LIMIT else "")


def accuracy_cell(record: MeasureRecord, baseline: MeasureRecord | None) -> str:
    if record.accuracy is None:
        return "—"
    text = f"{record.accuracy:.2f}%"
    if baseline is not None and baseline.accuracy is not None and record is not baseline:
        text += f" ({record.accuracy - baseline.accuracy:+.2f})"
    return text


def cells(records: list[MeasureRecord], baseline: MeasureRecord | None = None
          ) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of strings, shared by :func:`records_table` and :func:`records_markdown`."""
    keys = settings(records)
    headers = ["model", "runtime", "params", "MACs", "size", "accuracy"]
    headers += [f"b{b} × {t} thr, ms" for b, t in keys]
    rows = []
    for record in records:
        row = [record.name, record.runtime, f"{record.parameters:,}", human(record.macs),
               human(record.bytes, "B"), accuracy_cell(record, baseline)]
        for b, t in keys:
            base = baseline.latency_for(b, t) if baseline is not None else None
            row.append(latency_cell(record.latency_for(b, t), base))
        rows.append(row)
    return headers, rows


def records_table(records: list[MeasureRecord], baseline: MeasureRecord | None = None) -> Table:
    """A rich table of ``records``; speed-ups are relative to ``baseline`` when given.

    ``baseline`` should have been measured in the same run (``measure_many``), typically the
    uncompressed model; it is usually one of ``records`` (its speed-up reads 1.00×).
    """
    headers, rows = cells(records, baseline)
    caption = SPEEDUP_NOTE if baseline is not None else SPEEDUP_NOTE.split(", then")[0] + "."
    if any(stat.spread > SPREAD_LIMIT for r in records for stat in r.latency):
        caption += "\n" + BUSY_NOTE
    table = Table(caption=caption, caption_justify="left")
    for i, header in enumerate(headers):
        # Names stay whole on a narrow terminal; the numeric columns wrap instead.
        table.add_column(header, justify="left" if i < 2 else "right", no_wrap=i < 2)
    for row in rows:
        table.add_row(*row)
    return table


def records_markdown(records: list[MeasureRecord], baseline: MeasureRecord | None = None) -> str:
    """The same table as :func:`records_table`, as GitHub Markdown (with its notes below)."""
    headers, rows = cells(records, baseline)
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(headers) - 2)) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    lines += ["", SPEEDUP_NOTE if baseline is not None else SPEEDUP_NOTE.split(", then")[0] + "."]
    if any(stat.spread > SPREAD_LIMIT for r in records for stat in r.latency):
        lines += ["", BUSY_NOTE]
    return "\n".join(lines) + "\n"


def print_records(records: list[MeasureRecord], baseline: MeasureRecord | None = None,
                  console: Console | None = None) -> None:
    """Print :func:`records_table` and every record's notes to ``console`` (stdout by default)."""
    console = console or Console()
    console.print(records_table(records, baseline))
    for record in records:
        for note in record.notes:
            console.print(Text("note ", style="yellow") + Text(note))  # Text: no markup parsing
