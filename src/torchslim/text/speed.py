"""Sentences per second of encoders (torch or ONNX Runtime), timed interleaved in one run.

:func:`throughput` times a fixed number of alternating rounds; :func:`confident_throughput` adds
rounds, pinned to fixed cores, until each encoder's speed-up over a baseline encoder has a narrow
interval (:func:`torchslim.measure.rounds.confident_latency`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from torchslim.core.errors import TorchSlimError
from torchslim.measure.latency import check_positive_ints, interleaved_latency
from torchslim.measure.record import LatencyStat, RatioStat, TimingRun
from torchslim.measure.rounds import confident_latency


def sentence_batch(sample: torch.Tensor, b: int, pad_token_id: int) -> torch.Tensor:
    """The first ``b`` sentences of ``sample`` ((N, L) token ids) trimmed to the longest of them,
    as a deployment would pad the batch.

    Raises:
        TorchSlimError: fewer sentences than ``b``.
    """
    if len(sample) < b:
        raise TorchSlimError(f"Timing batch size {b} needs at least {b} sample sentences, got {len(sample)}.")
    batch = sample[:b]
    width = max(int((batch != pad_token_id).sum(dim=1).max()), 1)
    return batch[:, :width].contiguous()


def _row(stat: LatencyStat, b: int, tokens: int, speedup: RatioStat | None = None) -> dict[str, Any]:
    """Sentences per second at the median; p10/p90 of sentences/second come from p90/p10 latencies."""
    row = {"sentences_per_second": 1000.0 * b / stat.median_ms,
           "p10": 1000.0 * b / stat.p90_ms, "p90": 1000.0 * b / stat.p10_ms,
           "median_ms": stat.median_ms, "p10_ms": stat.p10_ms, "p90_ms": stat.p90_ms,
           "repeats": stat.repeats, "threads": stat.threads, "runtime": stat.runtime, "tokens": tokens,
           "times_ms": stat.times_ms}
    if stat.rounds is not None:
        row.update(rounds=stat.rounds, round_medians_ms=stat.round_medians_ms, cores=stat.cores,
                   speedup=speedup.to_dict() if speedup is not None else None)
    return row


def throughput(encoders: Mapping[str, Callable], sample: torch.Tensor, pad_token_id: int, *,
               batch_sizes: Sequence[int] = (64, 1), threads: int = 1, rounds: int = 3,
               runtimes: Mapping[str, str] | None = None, **latency_kwargs) -> dict[str, dict]:
    """Sentences per second of each encoder at each batch size.

    The batch of size b is :func:`sentence_batch` of ``sample``. Every encoder is timed on the
    same batch in alternating rounds (:func:`~torchslim.measure.interleaved_latency`), so a
    change in machine load hits them alike.

    Returns:
        ``{name: {"b64": {"sentences_per_second", "p10", "p90", "median_ms", ...}, "b1": {...}}}``;
        p10/p90 of sentences/second come from the p90/p10 latencies.

    Raises:
        TorchSlimError: fewer sentences than the largest batch size.
    """
    out: dict[str, dict] = {name: {} for name in encoders}
    for b in batch_sizes:
        batch = sentence_batch(sample, b, pad_token_id)
        stats = interleaved_latency(dict(encoders), batch, batch_sizes=(b,), threads=(threads,), rounds=rounds,
                                    runtimes=runtimes, **latency_kwargs)
        for name, (stat,) in stats.items():
            out[name][f"b{b}"] = _row(stat, b, batch.shape[1])
    return out


def confident_throughput(encoders: Mapping[str, Callable], sample: torch.Tensor, pad_token_id: int, *,
                         baseline: str, batch_sizes: Sequence[int] = (64, 1), threads: int = 1,
                         **options: Any) -> tuple[dict[str, dict], list[TimingRun]]:
    """Sentences per second of each encoder, and its speed-up over ``baseline`` with an interval.

    Each batch size is a :func:`~torchslim.measure.rounds.confident_latency` run on
    :func:`sentence_batch` (``options``: its ``min_rounds``, ``max_seconds``, ``target_width``,
    ``cores``, ``runtimes``, ...).

    Returns:
        ``({name: {"b64": {... as throughput, "rounds", "cores", "speedup": RatioStat dict or None
        for the baseline}}}, [TimingRun per batch size])``; each run's ``verdict`` summarises the
        machine's noise once.

    Raises:
        TorchSlimError: fewer sentences than a batch size, or a bad option (before any timing).
    """
    batch_sizes = check_positive_ints("batch_sizes", batch_sizes)
    for b in batch_sizes:  # every batch size checked before the first is timed
        sentence_batch(sample, b, pad_token_id)
    out: dict[str, dict] = {name: {} for name in encoders}
    runs = []
    for b in batch_sizes:
        batch = sentence_batch(sample, b, pad_token_id)
        run = confident_latency(dict(encoders), batch, baseline=baseline, batch_sizes=(b,), threads=(threads,),
                                **options)
        (setting,) = run.settings
        for name, stat in setting.latency.items():
            out[name][f"b{b}"] = _row(stat, b, batch.shape[1], setting.ratios.get(name))
        runs.append(run)
    return out, runs
