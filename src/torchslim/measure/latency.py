"""Latency of a model or any callable on a batch: warm-up, many timed repetitions, median and spread.

The habits of benchmarks/BENCHMARKS.md in code: the batch is built before the clock starts, the
thread count is fixed for the measurement (and restored after), gradients are off, the first calls
(allocation, kernel selection, lazy init) are not timed, and the result is a median with p10/p90
rather than a single number. :func:`interleaved_latency` times several candidates in alternating
rounds so that a change in machine load hits all of them alike
(:func:`torchslim.measure.rounds.confident_latency` keeps adding such rounds, pinned to fixed
cores, until every speed-up's interval is narrow).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.core.macs import batch_size_of
from torchslim.measure.record import LatencyStat


def check_positive_int(name: str, value: Any) -> int:
    """``value`` when it is an int >= 1, else a :class:`TorchSlimError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TorchSlimError(f"{name} must be a positive integer, got {value!r}.")
    return value


def check_positive_ints(name: str, values: Any, allow_empty: bool = False) -> tuple[int, ...]:
    """``values`` as a tuple of positive ints (one int is taken as a 1-tuple)."""
    if isinstance(values, int) and not isinstance(values, bool):
        values = (values,)
    if not isinstance(values, Sequence) or isinstance(values, str) or (not values and not allow_empty):
        raise TorchSlimError(f"{name} must be a non-empty sequence of positive integers, got {values!r}.")
    return tuple(check_positive_int(f"each of {name}", v) for v in values)


def make_batch(example_input: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``batch_size`` samples: the samples of ``example_input`` (N, ...) repeated cyclically."""
    n = batch_size_of(example_input)
    copies = math.ceil(batch_size / n)
    batch = example_input.repeat(copies, *([1] * (example_input.ndim - 1)))[:batch_size]
    channels_last = (example_input.ndim == 4 and not example_input.is_contiguous()
                     and example_input.is_contiguous(memory_format=torch.channels_last))
    return batch.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def timed_call(fn: Callable, batch: torch.Tensor, sync: Callable[[], None] | None) -> float:
    """Milliseconds of one ``fn(batch)``, waiting for the device when it runs asynchronously."""
    start = time.perf_counter()
    fn(batch)
    if sync is not None:
        sync()
    return (time.perf_counter() - start) * 1000.0


def repeat_count(estimate_ms: float, min_seconds: float, min_repeats: int, max_repeats: int) -> int:
    wanted = math.ceil(min_seconds * 1000.0 / max(estimate_ms, 1e-6))
    return max(min_repeats, min(max_repeats, wanted))


def runtime_name(fn: Any) -> str:
    """What runs ``fn``: its ``runtime`` attribute, "torch-eager" for a module, else "callable"."""
    name = getattr(fn, "runtime", None)
    if isinstance(name, str):
        return name
    return "torch-eager" if isinstance(fn, nn.Module) else "callable"


@contextmanager
def timing_mode(fns: Mapping[str, Callable], threads: int,
                set_threads: Mapping[str, Callable[[int], None]] | None = None) -> Iterator[None]:
    """Inside the block: ``threads`` torch threads, each runtime's own pool set to ``threads`` (its
    ``set_threads``, or the hook given for its name), modules in eval mode, inference mode on.
    Torch's thread count and each module's mode are restored after; a runtime keeps its setting."""
    modules = {name: fn.training for name, fn in fns.items() if isinstance(fn, nn.Module)}
    previous_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        for name, fn in fns.items():
            hook = (set_threads or {}).get(name) or getattr(fn, "set_threads", None)
            if callable(hook):
                hook(threads)
            if name in modules:
                fn.eval()
        with torch.inference_mode():
            yield
    finally:
        torch.set_num_threads(previous_threads)
        for name, was_training in modules.items():
            fns[name].train(was_training)


def check_options(warmup: Any, repeats: Any, min_seconds: Any, min_repeats: Any, max_repeats: Any) -> None:
    """Raise a :class:`TorchSlimError` naming the first bad :func:`measure_latency` option."""
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise TorchSlimError(f"warmup must be a non-negative integer, got {warmup!r}.")
    if repeats is not None:
        check_positive_int("repeats", repeats)
    if isinstance(min_seconds, bool) or not isinstance(min_seconds, (int, float)) or not min_seconds >= 0:
        raise TorchSlimError(f"min_seconds must be a non-negative number, got {min_seconds!r}.")
    check_positive_int("min_repeats", min_repeats)
    check_positive_int("max_repeats", max_repeats)
    if max_repeats < min_repeats:
        raise TorchSlimError(f"max_repeats ({max_repeats}) must be at least min_repeats ({min_repeats}).")


def measure_latency(
    fn: Callable[[torch.Tensor], Any],
    example_input: torch.Tensor,
    *,
    batch_size: int,
    threads: int,
    warmup: int = 5,
    repeats: int | None = None,
    min_seconds: float = 0.5,
    min_repeats: int = 10,
    max_repeats: int = 1000,
    set_threads: Callable[[int], None] | None = None,
    runtime: str | None = None,
) -> LatencyStat:
    """Time ``fn`` on a batch of ``batch_size`` built from ``example_input``.

    Args:
        fn: an ``nn.Module`` (run in eval mode, its mode restored afterwards) or any callable taking
            one tensor, such as a deployed-runtime wrapper. Every call runs under
            ``torch.inference_mode``.
        example_input: a batch ``(N, ...)`` on the device ``fn`` expects; its samples are repeated
            to ``batch_size`` before any timing.
        batch_size: the batch size measured.
        threads: the thread count measured. ``torch.set_num_threads(threads)`` is applied for the
            measurement and the previous value restored afterwards, whatever ``fn`` is.
        warmup: untimed calls first (they pay for allocation, kernel choice and lazy init).
        repeats: timed calls; None chooses enough to last about ``min_seconds``, clamped to
            [``min_repeats``, ``max_repeats``], from the warm-up calls' times.
        set_threads: called with ``threads`` before timing, for runtimes with their own thread
            pools (ONNX Runtime). When None and ``fn`` has a callable ``set_threads`` attribute,
            that is used. It is not undone afterwards: the runtime keeps the last setting.
        runtime: the name recorded in the result; "torch-eager" for a module, "callable" otherwise.

    Returns:
        A :class:`LatencyStat` in milliseconds per batch, with every repetition's time.

    Raises:
        TorchSlimError: ``fn`` not callable, or a non-positive batch size, thread count or option.
    """
    if not callable(fn):
        raise TorchSlimError(f"fn must be an nn.Module or a callable, got {type(fn).__name__}.")
    check_positive_int("batch_size", batch_size)
    check_positive_int("threads", threads)
    check_options(warmup, repeats, min_seconds, min_repeats, max_repeats)
    batch = make_batch(example_input, batch_size)
    sync = torch.cuda.synchronize if batch.device.type == "cuda" else None
    with timing_mode({"fn": fn}, threads, {"fn": set_threads} if set_threads is not None else None):
        warm = [timed_call(fn, batch, sync) for _ in range(warmup)]
        if repeats is None:
            estimate = statistics.median(warm) if warm else timed_call(fn, batch, sync)
            repeats = repeat_count(estimate, min_seconds, min_repeats, max_repeats)
        times = [timed_call(fn, batch, sync) for _ in range(repeats)]
    name = runtime or runtime_name(fn)
    return LatencyStat.from_times(times, batch_size=batch_size, threads=threads, runtime=name)


def interleaved_latency(
    candidates: Mapping[str, Callable[[torch.Tensor], Any]],
    example_input: torch.Tensor,
    *,
    batch_sizes: Sequence[int] = (1, 64),
    threads: Sequence[int] = (1,),
    rounds: int = 3,
    runtimes: Mapping[str, str] | None = None,
    **latency_kwargs: Any,
) -> dict[str, list[LatencyStat]]:
    """Time every candidate at every (batch size, threads) in alternating rounds (A B, B A, ...).

    Each round is one :func:`measure_latency` call per candidate with ``latency_kwargs`` (so
    ``min_seconds`` and ``repeats`` apply per round); a candidate's rounds are merged into one
    :class:`LatencyStat` whose ``repeats`` is their total. Alternating the order cancels a drift
    in machine load, so ratios between candidates are fair.

    Returns:
        ``{name: [LatencyStat for each threads, batch size]}`` in the order of ``candidates``.

    Raises:
        TorchSlimError: no candidates, or bad batch sizes, thread counts, rounds or options.
    """
    if not candidates:
        raise TorchSlimError("interleaved_latency needs at least one candidate to time.")
    batch_sizes = check_positive_ints("batch_sizes", batch_sizes, allow_empty=True)
    threads = check_positive_ints("threads", threads)
    check_positive_int("rounds", rounds)
    runtimes = runtimes or {}
    names = list(candidates)
    out: dict[str, list[LatencyStat]] = {name: [] for name in names}
    for t in threads:
        for b in batch_sizes:
            times: dict[str, list[float]] = {name: [] for name in names}
            runtime_of: dict[str, str] = {}
            for r in range(rounds):
                for name in names if r % 2 == 0 else reversed(names):
                    stat = measure_latency(candidates[name], example_input, batch_size=b, threads=t,
                                           runtime=runtimes.get(name), **latency_kwargs)
                    times[name] += stat.times_ms
                    runtime_of[name] = stat.runtime
            for name in names:
                out[name].append(LatencyStat.from_times(times[name], batch_size=b, threads=t,
                                                        runtime=runtime_of[name]))
    return out
