"""The Markdown section of ``prune_fashion_mnist.py``: its tables, the headline verdict and what
the criterion choice changed (``random`` is the control)."""

from __future__ import annotations

import statistics
from typing import Any

from _common import machine_line

from torchslim.measure.record import SPREAD_LIMIT
from torchslim.measure.table import human

GROUP_TITLES = {
    "screen": "Criteria at channel ratio {ratio}: accuracy right after pruning and after {epochs} fine-tune epoch(s)",
    "ratio": "The best two criteria at other ratios ({epochs} fine-tune epoch(s))",
    "compare": "Recovery at equal epochs ({epochs} each): one-shot vs iterative, fine-tune vs distillation",
    "headline": "Headline: best criterion, ratio {ratio}, distillation from the teacher, {epochs} epoch(s)",
    "sparse": "Unstructured (global magnitude) sparsity, {epochs} fine-tune epoch(s): same dense model, zeros",
}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _latency(row: dict[str, Any], batch: int, suffix: str = "") -> str:
    stat = next((x for x in row.get("latency" + suffix, []) if x["batch_size"] == batch), None)
    base = next((x for x in row.get("teacher_latency" + suffix, []) if x["batch_size"] == batch), None)
    if stat is None or base is None:
        return "—"
    busy = " *" if max(stat["p90_ms"] / max(stat["p10_ms"], 1e-9), base["p90_ms"] / max(base["p10_ms"], 1e-9)) > SPREAD_LIMIT else ""
    return f"{stat['median_ms']:.3g} vs {base['median_ms']:.3g} ({base['median_ms'] / stat['median_ms']:.2f}×){busy}"


def _rows(result: dict[str, Any], group: str) -> list[dict[str, Any]]:
    return [r for r in result["rows"] if r["group"] == group]


def table_markdown(result: dict[str, Any], s, group: str) -> str:
    """One group's rows: what was done, sizes, accuracy (Δ to the teacher), latency vs the teacher."""
    teacher = result["teacher"]["test"]["accuracy"]
    batches = list(s.batch_sizes)
    head = ["row", "criterion", "ratio", "steps", "recovery", "params", "MACs", "bytes",
            "acc. right after pruning %", "acc. after recovery %", "Δ vs teacher"]
    head += [f"b{b} ms vs teacher (speed-up)" for b in batches]
    head += [f"b{b} BN folded (speed-up)" for b in batches]
    if group == "sparse":
        head[1:4] = ["sparsity reached", "zipped bytes", "CSR bytes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 5 + "---:|" * (len(head) - 5)]
    for r in _rows(result, group):
        if group == "sparse":
            rec = r["sparsity_record"]
            what = [f"{rec['sparsity']:.1%}", human(rec["zipped_bytes"], "B"), human(rec["csr_bytes"], "B")]
            recovery = f"fine-tune {r['epochs']}" if r["epochs"] else "none"
        else:
            what = [r["criterion"], f"{r['ratio']:g}", str(r["steps"])]
            recovery = f"{r['recover']} {r['epochs']}" if r["epochs"] else "none"
        cells = [r["id"], *what, recovery, f"{r['parameters']:,}", human(r["macs"]), human(r["bytes"], "B"),
                 _pct(r["accuracy_pruned"]), _pct(r["accuracy"]), f"{r['accuracy'] - teacher:+.2f}"]
        cells += [_latency(r, b) for b in batches] + [_latency(r, b, "_folded") for b in batches]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def headline_verdict(result: dict[str, Any], s) -> str:
    rows = _rows(result, "headline")
    if not rows:
        return "No headline row (no criterion was screened besides random)."
    row, teacher = rows[0], result["teacher"]["test"]["accuracy"]
    batch = max(s.batch_sizes)
    plain, folded = row["speedup"][str(batch)], row["speedup_folded"][str(batch)]
    speedup = max(plain, folded)
    drop = teacher - row["accuracy"]
    fast, close = speedup >= s.target_speedup, drop <= s.target_points
    text = (f"**Headline** (`{row['criterion']}`, ratio {row['ratio']:g}, KD {row['epochs']} epoch(s)): batch-"
            f"{batch} latency {folded:.2f}× lower than the teacher's with BatchNorm folded into the convolutions "
            f"of both (how an eager model ships), {plain:.2f}× with BatchNorm kept as trained (target ≥ "
            f"{s.target_speedup:g}×: **{'met' if fast else 'missed'}**"
            + (f", by the {'folded' if folded >= plain else 'unfolded'} pair" if fast and min(plain, folded) < s.target_speedup else "")
            + f"); test accuracy {row['accuracy']:.2f}% vs {teacher:.2f}% "
            f"({-drop:+.2f} points; target within {s.target_points:g}: **{'met' if close else 'missed'}**).")
    same = [r for r in result["rows"] if r["group"] != "sparse" and r["macs"] == row["macs"]
            and r["parameters"] == row["parameters"] and "speedup_folded" in r]
    if len(same) > 2:  # rows of one architecture: their spread is the timing noise, their median the estimate
        pooled = {k: sorted(r[k][str(batch)] for r in same) for k in ("speedup", "speedup_folded")}
        text += (f" The {len(same)} rows with this architecture (the ratio-{row['ratio']:g} rows of every criterion "
                 f"and recovery) were timed separately: batch-{batch} speed-ups {pooled['speedup'][0]:.2f}–"
                 f"{pooled['speedup'][-1]:.2f}× (median {statistics.median(pooled['speedup']):.2f}×) as trained, "
                 f"{pooled['speedup_folded'][0]:.2f}–{pooled['speedup_folded'][-1]:.2f}× (median "
                 f"{statistics.median(pooled['speedup_folded']):.2f}×) folded.")
    if not close:
        curve = _val_curve(row)
        rising = len(curve) > 1 and curve[-1] > curve[-2]
        text += (" Cause: " + ("validation accuracy was still rising at the last recovery epoch, so the "
                               "recovery budget was too short (try more `--headline-epochs`)." if rising else
                               "validation accuracy had levelled off, so more of the same recovery is unlikely "
                               "to close the gap at this width."))
    if not fast:
        macs = row["macs"] / max(1, result["teacher"]["macs"])
        busy = _latency(row, batch).endswith("*")
        text += (" Cause: " + ("the machine was busy while timing (p90/p10 above the limit), so the ratio is "
                               "uncertain; rerun on an idle machine." if busy else
                               f"with {macs:.2f}× of the teacher's MACs it runs only {speedup:.2f}× faster: at these "
                               "small widths the eager CPU kernels (and the memory-bound BatchNorm/ReLU, which "
                               "shrink only with the activations) do not scale with MACs."))
    return text


def criterion_findings(result: dict[str, Any]) -> str:
    """Where the criterion choice mattered and where it did not, with ``random`` as the control."""
    rows = _rows(result, "screen")
    others = [r for r in rows if r["criterion"] != "random"]
    control = next((r for r in rows if r["criterion"] == "random"), None)
    if not others or control is None:
        return "The criterion comparison needs `random` and at least one other criterion in the screen."
    parts = []
    for key, label in (("accuracy_pruned", "right after pruning (BN re-estimated)"), ("accuracy", "after fine-tuning")):
        values = [r[key] for r in others if r[key] is not None]
        if not values or control[key] is None:
            continue
        spread, lead = max(values) - min(values), statistics.median(values) - control[key]
        verdict = "mattered" if lead > 1.0 else "hardly mattered"
        parts.append(f"{label}, the criteria span {min(values):.2f}–{max(values):.2f}% (spread {spread:.2f} "
                     f"points; median {lead:+.2f} over random's {control[key]:.2f}%): the choice {verdict} there")
    text = "; ".join(parts) + "."
    same: dict[str, list[str]] = {}
    for r in others:
        same.setdefault(r["kept_channels_sha256"], []).append(r["criterion"])
    for names in (n for n in same.values() if len(n) > 1):
        text += (f" {' and '.join(names)} kept exactly the same channels: ranked layer by layer, they order "
                 "each layer's channels alike (LAMP only rescales L2 scores within a layer).")
    return text + (" One seed: differences under about half a point are not claimed as differences.")


def _val_curve(row: dict[str, Any]) -> list[float]:
    return [e["val_accuracy"] for h in row.get("record", {}).get("history", []) for e in h["recovery_history"]
            if "val_accuracy" in e]


def render_section(result: dict[str, Any], s, quick: bool) -> str:
    t = result["teacher"]
    curve = [c for r in _rows(result, "headline") for c in _val_curve(r)]
    parts = [
        "## Pruning on Fashion-MNIST" + (" — `--quick` smoke run (synthetic data, a stand-in teacher trained "
                                         "1 epoch): not a result" if quick else ""),
        f"`{result['command']}` — {result['date']}, {machine_line(result['machine'])}. JSON: `{result['json']}`.",
        f"Teacher `{t['source']}`: {t['parameters']:,} parameters, test accuracy {t['test']['accuracy']:.2f}% "
        f"({t['test']['n']} images). Recovery: SGD, cosine from lr {0.02:g}, {s.threads} training thread(s); KD = "
        "0.9·KD(T=4) + 0.1·CE from the unpruned teacher's cached logits. BatchNorm statistics re-estimated on "
        f"{s.bn_batches} training batches after each pruning step. Latency: torch eager, 1 thread, median of "
        f"{s.rounds} interleaved rounds of {s.latency.get('repeats', '~')} calls with the teacher timed in the same call "
        "(`row vs teacher`), as trained and with BatchNorm folded into the convolutions of both (`BN folded`); * marks a "
        f"p90/p10 spread above {SPREAD_LIMIT} (busy machine). Seed {s.seed}, one run per row.",
    ]
    for group in ("screen", "ratio", "compare", "headline", "sparse"):
        if _rows(result, group):
            epochs = {"screen": s.screen_epochs, "ratio": s.screen_epochs, "compare": s.compare_epochs,
                      "headline": s.headline_epochs, "sparse": s.sparse_epochs}[group]
            title = GROUP_TITLES[group].format(ratio=s.screen_ratio, epochs=epochs)
            parts.append(f"### {title}\n\n{table_markdown(result, s, group)}")
    parts.append(headline_verdict(result, s))
    if curve:
        parts.append(f"Headline validation accuracy after each recovery epoch: {', '.join(f'{c:.2f}' for c in curve)}%.")
    parts.append("**Where the criterion mattered**: " + criterion_findings(result))
    parts.append("Unstructured sparsity keeps every tensor dense: torch's kernels multiply the zeros too, so its "
                 "latency stays the teacher's (speed-up ≈ 1×); its gain is the compressed size (zipped, CSR).")
    return "\n\n".join(p.strip() for p in parts) + "\n"
