"""Benchmark: the shipped default teacher and student on Fashion-MNIST.

For each model: test accuracy over the whole test set, parameters, MACs, bytes on disk, latency at
batch 1 and 64 with 1 and 2 threads (teacher and student interleaved; the teacher is the
baseline), and the cost of training: seconds per epoch from the recorded training history, and
measured here by timing a fixed number of training steps on a copy of the model.

    python benchmarks/train_default.py            # writes results/train_default.json, RESULTS.md
    python benchmarks/train_default.py --quick    # seconds: synthetic data, untrained models

Run it on an otherwise idle machine; the spread of every timing is recorded and flagged.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import time
from collections.abc import Iterable
from typing import Any

import torch
from _common import (
    command_line,
    machine_line,
    new_parser,
    parse,
    record_header,
    report_written,
    write_section,
)
from torch import nn

from torchslim import data, models
from torchslim.core.io import atomic_write_json
from torchslim.measure import MeasureRecord, machine_info, measure_many, print_records, records_markdown
from torchslim.measure.record import percentile
from torchslim.train.batch import as_batch
from torchslim.train.fit import FitConfig, make_optimizer

NAME = "train_default"
SEED = 0
ZOO_NAMES = ("fashion-mnist-teacher", "fashion-mnist-student")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob of a run, recorded in the JSON."""

    batch_sizes: tuple[int, ...] = (1, 64)
    threads: tuple[int, ...] = (1, 2)
    rounds: int = 3  # interleaved teacher/student rounds per latency setting
    latency: dict = dataclasses.field(default_factory=lambda: {"warmup": 10, "min_seconds": 0.5})
    train_steps: int = 20
    train_warmup_steps: int = 3
    train_threads: int = 2
    train_batch_size: int = 128


FULL = Settings()
# Small enough to finish in seconds on one thread: a smoke test of the script, not a result.
QUICK = Settings(batch_sizes=(1, 8), threads=(1,), rounds=1,
                 latency={"warmup": 1, "min_seconds": 0.0, "min_repeats": 3},
                 train_steps=2, train_warmup_steps=1, train_threads=1, train_batch_size=16)


def load_candidates(quick: bool) -> tuple[dict[str, tuple[nn.Module, dict]], data.DataBundle]:
    """``({name: (model, meta)}, data)``: the shipped models and Fashion-MNIST, or stand-ins."""
    if quick:
        bundle = data.load("synthetic", batch_size=QUICK.train_batch_size, num_classes=10,
                           shape=(1, 28, 28), train_size=64, val_size=0, test_size=64, seed=SEED)
        torch.manual_seed(SEED)
        return {"quick-teacher": (models.create("cnn-small"), {}),
                "quick-student": (models.create("cnn-tiny"), {})}, bundle
    from torchslim import zoo  # only here: --quick must run without the shipped weights

    bundle = data.load("fashion-mnist", batch_size=FULL.train_batch_size, seed=SEED)
    return {name: zoo.load(name) for name in ZOO_NAMES}, bundle


def recorded_training(meta: dict) -> dict[str, Any] | None:
    """Seconds per epoch as recorded when the model was trained (``meta["history"]``), or None."""
    history = meta.get("history")
    if not history or not history.get("epochs"):
        return None
    seconds = [e["seconds"] for e in history["epochs"] if "seconds" in e]
    return {"epochs": len(history["epochs"]), "epoch_seconds": seconds,
            "mean_epoch_seconds": statistics.fmean(seconds) if seconds else None,
            "total_seconds": history.get("seconds"), "config": history.get("config", {}),
            "test": history.get("test")}


def _cycle(loader: Iterable) -> Iterable:
    while True:
        yield from loader


def time_training(model: nn.Module, loader: Iterable, config: dict, settings: Settings) -> dict[str, Any]:
    """Seconds per training step of a copy of ``model``: batch loading, forward, backward, step.

    The optimizer and label smoothing follow the recorded training ``config`` (FitConfig fields);
    the shipped model is not touched. The copy's mode and the thread count are set for the timing
    and the thread count restored afterwards.
    """
    known = {k: v for k, v in config.items() if k in FitConfig.model_fields and k != "epochs"}
    cfg = FitConfig(epochs=1, **known)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    trainee = copy.deepcopy(model).train().to(memory_format=memory_format)
    optimizer = make_optimizer(trainee.parameters(), cfg)
    previous = torch.get_num_threads()
    torch.manual_seed(SEED)
    if hasattr(getattr(loader, "sampler", None), "set_epoch"):
        loader.sampler.set_epoch(0)
    batches, times = iter(_cycle(loader)), []
    try:
        torch.set_num_threads(settings.train_threads)
        for _ in range(settings.train_warmup_steps + settings.train_steps):
            start = time.perf_counter()
            batch = as_batch(next(batches), memory_format=memory_format)
            loss = nn.functional.cross_entropy(trainee(batch["x"]), batch["y"],
                                               label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    timed = sorted(times[settings.train_warmup_steps:])
    median = statistics.median(timed)
    return {"threads": settings.train_threads, "batch_size": settings.train_batch_size,
            "warmup_steps": settings.train_warmup_steps, "steps": settings.train_steps,
            "step_seconds": times[settings.train_warmup_steps:], "median_step_seconds": median,
            "p10_step_seconds": percentile(timed, 0.1), "p90_step_seconds": percentile(timed, 0.9),
            "steps_per_epoch": len(loader), "estimated_epoch_seconds": median * len(loader)}


def training_markdown(training: dict[str, dict]) -> str:
    """The training-cost table: recorded seconds per epoch next to the measured estimate."""
    lines = ["| model | epochs trained | s/epoch recorded (mean) | s/step measured (p10–p90) "
             "| steps/epoch | s/epoch estimated |", "|---|---:|---:|---:|---:|---:|"]
    for name, entry in training.items():
        rec, meas = entry["recorded"], entry["measured"]
        recorded = (f"{rec['epochs']}", f"{rec['mean_epoch_seconds']:.1f}") if rec else ("—", "—")
        lines.append(f"| {name} | {recorded[0]} | {recorded[1]} | {meas['median_step_seconds']:.3f} "
                     f"({meas['p10_step_seconds']:.3f}–{meas['p90_step_seconds']:.3f}) | "
                     f"{meas['steps_per_epoch']} | {meas['estimated_epoch_seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def render_section(result: dict[str, Any], records: list[MeasureRecord], quick: bool) -> str:
    s = result["settings"]
    title = "Default teacher and student" + (" — `--quick` smoke run (synthetic data, untrained "
                                             "models): not a result" if quick else "")
    parts = [
        f"## {title}",
        f"`python benchmarks/train_default.py{' --quick' if quick else ''}` — {result['date']}, "
        f"{machine_line(result['machine'])}. JSON: `{result['json']}`.",
        f"Accuracy over all {records[0].test_samples} test images; latency in ms per batch, "
        f"interleaved over {s['rounds']} round(s), baseline `{records[0].name}`.",
        records_markdown(records, baseline=records[0]),
        f"Training cost: recorded per-epoch seconds come from each model's training history "
        f"(including validation); measured steps are plain cross-entropy steps with batch loading, "
        f"{s['train_steps']} steps of {s['train_batch_size']} after {s['train_warmup_steps']} "
        f"warm-up, {s['train_threads']} thread(s). A distilled student's recorded epochs also paid "
        "for the teacher's forward pass, which the measured steps do not.",
        training_markdown(result["training"]),
    ]
    notes = [n for r in records for n in r.notes]
    if notes:
        parts.append("Notes:\n\n" + "\n".join(f"- {n}" for n in notes))
    return "\n\n".join(p.strip() for p in parts) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return parse(new_parser(__doc__, "synthetic data, fresh models, few repeats: a smoke test in seconds"), NAME, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    candidates, bundle = load_candidates(args.quick)
    started = time.perf_counter()
    records = measure_many({name: model for name, (model, _) in candidates.items()}, bundle.test,
                           batch_sizes=settings.batch_sizes, threads=settings.threads,
                           rounds=settings.rounds, latency_kwargs=settings.latency)
    training = {}
    for name, (model, meta) in candidates.items():
        recorded = recorded_training(meta)
        measured = time_training(model, bundle.train, recorded["config"] if recorded else {}, settings)
        training[name] = {"recorded": recorded, "measured": measured}
    result = {
        **record_header(NAME, args, command=command_line(NAME, ["--quick"] if args.quick else [])),
        "settings": dataclasses.asdict(settings), "seeds": {"torch": SEED, "data": SEED},
        "data": {"name": bundle.name, "test_samples": records[0].test_samples, **bundle.info},
        "machine": machine_info(), "baseline": records[0].name,
        "records": [r.to_dict() for r in records], "training": training,
        "seconds": time.perf_counter() - started,
    }
    atomic_write_json(args.out, result)
    write_section(args.results_md, NAME, render_section(result, records, args.quick))
    print_records(records, baseline=records[0])
    report_written(NAME, args.out, args.results_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
