"""Benchmark: speed-ups of the shipped Fashion-MNIST student over the teacher, with intervals.

The shipped teacher (``fashion-mnist-teacher``) and student (``fashion-mnist-student``) run on
torch eager and on ONNX Runtime FP32, all four timed in the same shuffled interleaved rounds
(``torchslim.measure.rounds.confident_latency``) at batch 1 and 64 on 1 thread, the process
pinned to one fixed core. Rounds are added until every speed-up's 95% interval is within +-5% or
a setting has taken ``--max-seconds``. Speed-ups compare like with like:

- student (torch eager) against teacher (torch eager): what compression gives on torch;
- teacher (ONNX Runtime) against teacher (torch eager): what the runtime alone gives;
- student (ONNX Runtime) against teacher (ONNX Runtime): what compression gives on ONNX Runtime.

    python benchmarks/timing_confidence.py            # a few minutes; needs an otherwise idle machine
    python benchmarks/timing_confidence.py --quick    # seconds: a smoke check, not a result

A full run writes ``benchmarks/results/timing_confidence.json`` (machine, CPU model, versions,
threads, cores, every round's raw times) and its section of ``benchmarks/RESULTS.md``. ``--quick``
writes only to ``runs/timing_confidence-quick/`` unless ``--out``/``--results-md`` are given.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _common import (
    default_work,
    display_path,
    machine_line,
    new_parser,
    parse,
    quick_outputs,
    record_header,
    report_written,
    write_section,
)

from torchslim.core.io import atomic_write_json
from torchslim.measure import machine_info
from torchslim.measure.record import TimingRun
from torchslim.measure.rounds import confident_latency

NAME = "timing_confidence"
BASELINE = "teacher-torch"
# Each candidate's speed-up is against the teacher on the same runtime, but for the teacher on
# ONNX Runtime, whose speed-up over the teacher on torch is the runtime's own gain.
BASELINES = {"student-torch": BASELINE, "teacher-ort": BASELINE, "student-ort": "teacher-ort"}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob of a run, recorded in the JSON."""

    batch_sizes: tuple[int, ...] = (1, 64)
    threads: tuple[int, ...] = (1,)
    min_rounds: int = 5
    max_seconds: float = 60.0  # per batch size
    target_width: float = 0.05
    round_seconds: float = 0.1
    warmup: int = 10
    seed: int = 0


FULL = Settings()
QUICK = Settings(batch_sizes=(1, 8), min_rounds=3, max_seconds=1.5, round_seconds=0.01, warmup=1)


def load_candidates(work: Path) -> tuple[dict[str, Any], dict[str, Any], torch.Tensor]:
    """The teacher and student on torch eager and ONNX Runtime FP32 (exported into ``work``), their
    sources, and the example input (one Fashion-MNIST-shaped image; these convolutional nets have
    no data-dependent branches, so the pixel values do not change their speed)."""
    from torchslim import zoo
    from torchslim.export import onnx as export_onnx
    from torchslim.runtime import OnnxModel

    example = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    candidates: dict[str, Any] = {}
    sources: dict[str, Any] = {}
    for role in ("teacher", "student"):
        name = f"fashion-mnist-{role}"
        model, _ = zoo.load(name)
        model.eval()
        path = work / f"{role}.onnx"
        report = export_onnx(model, example, path)
        candidates[f"{role}-torch"] = model
        candidates[f"{role}-ort"] = OnnxModel(path, threads=1)
        sources[role] = {"zoo": name, "parameters": sum(p.numel() for p in model.parameters()),
                         "onnx": display_path(path), "export": report.to_dict()}
    order = ("teacher-torch", "student-torch", "teacher-ort", "student-ort")
    return {n: candidates[n] for n in order}, sources, example


def rows(run: TimingRun) -> list[dict[str, Any]]:
    """One row per (setting, candidate): median latency, and its speed-up with the interval."""
    out = []
    for s in run.settings:
        for name, stat in s.latency.items():
            r = s.ratios.get(name)
            out.append({"batch_size": s.batch_size, "threads": s.threads, "cores": s.cores, "name": name,
                        "runtime": stat.runtime, "median_ms": stat.median_ms, "rounds": s.rounds,
                        "vs": r.baseline if r else None, "speedup": r.ratio if r else None,
                        "low": r.low if r else None, "high": r.high if r else None,
                        "converged": r.converged if r else None})
    return out


def table(result: dict[str, Any]) -> str:
    lines = ["| batch | threads | candidate | runtime | median ms | vs | speed-up [95% interval] | rounds |",
             "|---:|---:|---|---|---:|---|---|---:|"]
    for r in result["rows"]:
        speed = (f"{r['speedup']:.2f}x [{r['low']:.2f}, {r['high']:.2f}]" + ("" if r["converged"] else " (wide)")
                 if r["vs"] else "baseline")
        lines.append(f"| {r['batch_size']} | {r['threads']} | {r['name']} | {r['runtime']} | "
                     f"{r['median_ms']:.3g} | {r['vs'] or '-'} | {speed} | {r['rounds']} |")
    return "\n".join(lines)


def render_section(result: dict[str, Any]) -> str:
    title = "Speed-ups with intervals (Fashion-MNIST teacher and student, torch and ONNX Runtime)"
    if result["quick"]:
        title += " — `--quick` smoke run: not a result"
    return "\n".join([f"## {title}", "", f"`{result['command']}` ({result['date']}, {result['seconds']:.0f} s)",
                      "", f"Machine: {machine_line(result['machine'])}.", "",
                      f"Noise: {result['run']['verdict']}.", "", table(result), "",
                      f"Raw per-round times: `{result['json']}`."])


def run(args: argparse.Namespace, s: Settings) -> int:
    started = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    candidates, sources, example = load_candidates(args.work)
    print(f"timing {len(candidates)} candidates at batch {s.batch_sizes}, threads {s.threads}, "
          f"up to {s.max_seconds:g} s per batch size ...", flush=True)
    timing = confident_latency(candidates, example, baseline=BASELINE, baselines=BASELINES,
                               batch_sizes=s.batch_sizes, threads=s.threads, min_rounds=s.min_rounds,
                               max_seconds=s.max_seconds, target_width=s.target_width,
                               round_seconds=s.round_seconds, warmup=s.warmup, seed=s.seed)
    result = {**record_header(NAME, args), "settings": dataclasses.asdict(s), "machine": machine_info(), "models": sources,
              "run": timing.to_dict(), "rows": rows(timing), "seconds": time.perf_counter() - started}
    atomic_write_json(args.out, result)
    if args.results_md is not None:
        write_section(args.results_md, NAME, render_section(result))
    print(table(result))
    print(f"noise: {timing.verdict}" + "".join(f"\nnote: {n}" for n in timing.notes))
    report_written(NAME, args.out, args.results_md)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = new_parser(__doc__, "short caps and batch 8 instead of 64: a smoke check in seconds, not a result")
    parser.add_argument("--work", type=Path, default=None,
                        help="where the exported ONNX files go (default runs/timing_confidence[-quick])")
    args = parse(parser, NAME, argv)
    default_work(args, NAME)
    quick_outputs(args, NAME, args.work)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run(args, QUICK if args.quick else FULL)


if __name__ == "__main__":
    sys.exit(main())
