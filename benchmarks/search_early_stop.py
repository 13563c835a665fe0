"""Benchmark: what early stopping saves in a search, and whether it loses any of the front.

The same candidates are searched twice, once with early stopping (latency measured before training,
the low-fidelity accuracy rule) and once without (every candidate trained to the end): a random
sampler with a fixed seed samples the same candidates in the same order whatever the trials
measure, so the two studies differ only in what early stopping did. Reported: the seconds the
trials took in each, how many trials each rule stopped, and which members of the feasible front of
the full run (validation split) the early-stopping run did not measure to the end (the front it
would have lost). On tiny synthetic data (a ResNet-8 teacher, 16x16 images), so it runs in
minutes; the rules are the ones a full search uses.

    python benchmarks/search_early_stop.py             # about 3 minutes on 2 cores
    python benchmarks/search_early_stop.py --quick     # 8 candidates

Writes ``benchmarks/results/search_early_stop.json`` and its section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from _common import machine_line, new_parser, parse, record_header, report_written, write_section

from torchslim.core.io import atomic_write_json

NAME = "search_early_stop"
SPACE = {"route": ["pruned", "student"], "quantize": ["none", "static"],
         "prune.ratio": {"low": 0.2, "high": 0.8}, "recovery": ["train", "distill"],
         "train.epochs": {"low": 3, "high": 6}, "distill.epochs": {"low": 3, "high": 6},
         "distill.student": ["cnn-tiny", "cnn-small", "resnet8"], "distill.width": {"low": 0.25, "high": 1.0}}


def _teacher(directory: Path) -> Path:
    import torch

    from torchslim import data, fit, models, save_model

    torch.manual_seed(0)
    bundle = data.load("synthetic", batch_size=32, seed=0)
    model = models.create("resnet8", num_classes=bundle.num_classes, in_channels=1)
    fit(model, bundle, 4, progress=False)
    return save_model(model, directory / "teacher")


def _recipe(directory: Path, teacher: Path, trials: int, early: bool) -> Path:
    body = {"version": 1, "name": "early-stop", "teacher": str(teacher), "threads": 1, "seed": 0,
            "data": {"name": "synthetic", "batch_size": 32},
            "measure": {"batch_sizes": [8], "thread_counts": [1], "rounds": 2, "max_seconds": 1},
            "search": {"sampler": "random", "seed": 0, "trials": trials, "front_size": 1,
                       "target": {"seconds": 0.5, "batch_size": 8},
                       "constraints": {"accuracy_floor": 15.0, "latency_budget": 0.6},
                       "early_stop": {"enabled": early, "min_trials": 2, "margin": 1.0}, "space": SPACE},
            "strategies": {"teacher-fp32": [{"load": "teacher"}]}}
    path = directory / f"recipe-{'early' if early else 'full'}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = new_parser(__doc__, "8 candidates instead of 24")
    args = parse(parser, NAME, argv)
    from torchslim.measure import machine_info
    from torchslim.search import search
    from torchslim.search.results import feasible

    trials = 8 if args.quick else 24
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="torchslim-early-stop-") as tmp:
        work = Path(tmp)
        teacher = _teacher(work)
        for label, early in (("early", True), ("full", False)):
            began = time.perf_counter()
            summary = search(_recipe(work, teacher, trials, early), work / label, budget="30m", log=lambda m: None)
            rows = summary["trials"]
            runs[label] = {
                "wall_seconds": time.perf_counter() - began,
                "trial_seconds": sum(r.get("seconds") or 0 for r in rows),
                "not_trained": [r["number"] for r in rows if r.get("untrained")],
                "stopped_low_fidelity": [r["number"] for r in rows if (r.get("stopped") or "").startswith("low")],
                "measured": [r["number"] for r in rows if r["state"] == "complete" and not r.get("untrained")],
                "feasible": [r["number"] for r in rows if feasible(r)],
                "front": summary["front"],
                "values": {r["number"]: r.get("values") for r in rows}}
    early, full = runs["early"], runs["full"]
    same = all(early["values"][n] == full["values"][n] for n in full["values"])
    full_front = [n for n in full["front"] if n in full["feasible"]]
    lost = [n for n in full_front if n not in early["measured"]]
    record = {**record_header(NAME, args), "machine": machine_info(), "trials": trials, "runs": runs,
              "same_candidates": same, "full_front": full_front, "front_lost": lost,
              "saved_fraction": 1 - early["trial_seconds"] / full["trial_seconds"] if full["trial_seconds"] else None}
    atomic_write_json(args.out, record)
    write_section(args.results_md, NAME, markdown(record))
    report_written(NAME, args.out, args.results_md)
    return record


def markdown(r: dict[str, Any]) -> str:
    e, f = r["runs"]["early"], r["runs"]["full"]
    return "\n".join([
        f"## Early stopping in a search (`{r['command']}`)", "",
        f"Machine: {machine_line(r['machine'])}; {r['date']}. {r['trials']} candidates sampled at random (seed 0) on "
        "synthetic data, searched twice: same candidates in both runs: "
        f"{'yes' if r['same_candidates'] else 'NO'}.{' A --quick smoke run.' if r['quick'] else ''}", "",
        "| run | trial seconds | wall seconds | not trained (latency over budget) | stopped at low fidelity | "
        "measured to the end |", "|---|---|---|---|---|---|",
        f"| early stopping | {e['trial_seconds']:.0f} | {e['wall_seconds']:.0f} | {len(e['not_trained'])} | "
        f"{len(e['stopped_low_fidelity'])} | {len(e['measured'])} |",
        f"| every candidate trained | {f['trial_seconds']:.0f} | {f['wall_seconds']:.0f} | — | — | {len(f['measured'])} |",
        "",
        f"Early stopping saved {100 * (r['saved_fraction'] or 0):.0f}% of the trials' time. The full run's feasible "
        f"front (trials {', '.join(map(str, r['full_front'])) or 'none'}): "
        + (f"{len(r['front_lost'])} of its members were stopped early ({', '.join(map(str, r['front_lost']))})."
           if r["front_lost"] else "every member was measured to the end with early stopping too (none lost)."),
        ""])


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
