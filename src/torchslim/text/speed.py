"""Sentences per second of encoders (torch or ONNX Runtime), timed interleaved in one run."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from torchslim.core.errors import TorchSlimError
from torchslim.measure.latency import interleaved_latency


def throughput(encoders: Mapping[str, Callable], sample: torch.Tensor, pad_token_id: int, *,
               batch_sizes: Sequence[int] = (64, 1), threads: int = 1, rounds: int = 3,
               runtimes: Mapping[str, str] | None = None, **latency_kwargs) -> dict[str, dict]:
    """Sentences per second of each encoder at each batch size.

    The batch of size b is the first b sentences of ``sample`` ((N, L) token ids of real text,
    N >= b), trimmed to the longest of them, as a deployment would pad it. Every encoder is timed on
    the same batch in alternating rounds (:func:`~torchslim.measure.interleaved_latency`), so a
    change in machine load hits them alike.

    Returns:
        ``{name: {"b64": {"sentences_per_second", "p10", "p90", "median_ms", ...}, "b1": {...}}}``;
        p10/p90 of sentences/second come from the p90/p10 latencies.

    Raises:
        TorchSlimError: fewer sentences than the largest batch size.
    """
    out: dict[str, dict] = {name: {} for name in encoders}
    for b in batch_sizes:
        if len(sample) < b:
            raise TorchSlimError(f"Timing batch size {b} needs at least {b} sample sentences, got {len(sample)}.")
        batch = sample[:b]
        width = max(int((batch != pad_token_id).sum(dim=1).max()), 1)
        batch = batch[:, :width].contiguous()
        stats = interleaved_latency(dict(encoders), batch, batch_sizes=(b,), threads=(threads,), rounds=rounds,
                                    runtimes=runtimes, **latency_kwargs)
        for name, (stat,) in stats.items():
            out[name][f"b{b}"] = {
                "sentences_per_second": 1000.0 * b / stat.median_ms,
                "p10": 1000.0 * b / stat.p90_ms, "p90": 1000.0 * b / stat.p10_ms,
                "median_ms": stat.median_ms, "p10_ms": stat.p10_ms, "p90_ms": stat.p90_ms,
                "repeats": stat.repeats, "threads": stat.threads, "runtime": stat.runtime, "tokens": width,
                "times_ms": stat.times_ms}
    return out
