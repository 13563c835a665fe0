"""Speed-ups with their intervals: interleaved rounds, pinned to fixed cores, until each is narrow.

:func:`confident_latency` times several candidates against a baseline at each (batch size,
threads): the process is pinned to as many fixed cores as threads, every candidate is warmed up,
then rounds run in a seeded shuffled order (A C B, B A C, ...) so that load on the machine hits
every candidate alike and no candidate always follows another. After a minimum number of rounds
a round is added until each speed-up's 95% interval (:mod:`torchslim.measure.confidence`) lies
within +-5% of it, or the setting's time cap is reached; the result says which converged, after
how many rounds, and gives one verdict on the machine's noise for the whole run.

Use it from a comparison as::

    records = measure_many(models, loader, batch_sizes=())      # accuracy, size, MACs: no timing
    run = confident_latency(runnables, example, baseline="teacher", batch_sizes=(1, 64))
    attach_timing(records, run)                                  # latency + speed-ups per record
    print(run.verdict)                                           # once per run, not per row
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import torch

from torchslim.core.errors import TorchSlimError
from torchslim.core.macs import batch_size_of
from torchslim.measure import confidence as conf
from torchslim.measure.latency import (
    check_positive_int,
    check_positive_ints,
    make_batch,
    repeat_count,
    runtime_name,
    timed_call,
    timing_mode,
)
from torchslim.measure.record import LatencyStat, MeasureRecord, RatioStat, SettingTiming, TimingRun
from torchslim.measure.system import check_cores, cores_for, pinned

ROUND_REPEATS = (3, 200)  # calls of one candidate per round: enough for a median, few enough to interleave


def _check_number(name: str, value: Any, *, low: float, what: str) -> float:
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if not (number and math.isfinite(value) and value > low):
        raise TorchSlimError(f"{name} must be a finite number above {low:g} ({what}), got {value!r}.")
    return float(value)


def _check_baselines(candidates: Any, baseline: Any, baselines: Mapping[str, str] | None) -> dict[str, str]:
    """``{candidate: its baseline}`` for every candidate but ``baseline``; each name checked."""
    if not isinstance(candidates, Mapping) or not candidates:
        raise TorchSlimError("confident_latency needs a non-empty mapping {name: model or callable}, "
                             f"got {candidates!r}.")
    for name, fn in candidates.items():
        if not callable(fn):
            raise TorchSlimError(f"Candidate {name!r} must be an nn.Module or a callable, "
                                 f"got {type(fn).__name__}.")
    valid = ", ".join(map(repr, candidates))
    if not isinstance(baseline, str) or baseline not in candidates:
        raise TorchSlimError(f"baseline {baseline!r} is not among the candidates; candidates: {valid}.")
    pairs = {name: baseline for name in candidates if name != baseline}
    if baselines is not None and not isinstance(baselines, Mapping):
        raise TorchSlimError(f"baselines must be a mapping {{candidate: its baseline}}, got {baselines!r}.")
    for name, base in (baselines or {}).items():
        if name not in pairs or base not in candidates or base == name:
            raise TorchSlimError(
                f"baselines[{name!r}] = {base!r}: both must be candidates, the key neither the run's "
                f"baseline {baseline!r} nor its own baseline; candidates: {valid}.")
        pairs[name] = base
    return pairs


def _check_options(min_rounds: Any, max_rounds: Any, max_seconds: Any, target_width: Any, confidence: Any,
                   resamples: Any, seed: Any, warmup: Any, round_seconds: Any, pin: Any) -> dict[str, Any]:
    """The options of :func:`confident_latency` as a dict, or a :class:`TorchSlimError` naming the
    first bad one and what is valid."""
    check_positive_int("min_rounds", min_rounds)
    check_positive_int("max_rounds", max_rounds)
    if max_rounds < min_rounds:
        raise TorchSlimError(f"max_rounds ({max_rounds}) must be at least min_rounds ({min_rounds}).")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise TorchSlimError(f"warmup must be a non-negative integer, got {warmup!r}.")
    if not isinstance(pin, bool):
        raise TorchSlimError(f"pin must be True or False, got {pin!r}.")
    return {"min_rounds": min_rounds, "max_rounds": max_rounds,
            "max_seconds": _check_number("max_seconds", max_seconds, low=0, what="the time cap per setting"),
            "target_width": conf.check_fraction("target_width", target_width, high=1.0),
            "confidence": conf.check_fraction("confidence", confidence),
            "resamples": conf.check_resamples(resamples), "seed": conf.check_seed(seed), "warmup": warmup,
            "round_seconds": _check_number("round_seconds", round_seconds, low=0,
                                           what="time per candidate per round"),
            "pin": pin}


def _warm_repeats(fns: Mapping[str, Callable], batch: torch.Tensor, warmup: int, round_seconds: float,
                  sync: Callable | None) -> dict[str, int]:
    """Untimed warm-up calls, then each candidate's calls per round (about ``round_seconds``)."""
    out = {}
    for name, fn in fns.items():
        warm = [timed_call(fn, batch, sync) for _ in range(max(warmup, 1))]
        out[name] = repeat_count(statistics.median(warm), round_seconds, *ROUND_REPEATS)
    return out


def _ratio_stats(medians: Mapping[str, list[float]], pairs: Mapping[str, str], runtimes: Mapping[str, str],
                 b: int, t: int, opts: Mapping[str, Any], seconds: float) -> dict[str, RatioStat]:
    out = {}
    for name, base in pairs.items():
        ratios = conf.per_round_ratios(medians[base], medians[name])
        ratio, low, high = conf.bootstrap_interval(ratios, confidence=opts["confidence"],
                                                   resamples=opts["resamples"], seed=opts["seed"])
        out[name] = RatioStat(name=name, baseline=base, ratio=ratio, low=low, high=high, rounds=len(ratios),
                              converged=conf.is_narrow(ratio, low, high, opts["target_width"]),
                              runtime=runtimes[name], batch_size=b, threads=t, confidence=opts["confidence"],
                              target_width=opts["target_width"], seconds=round(seconds, 3))
    return out


def _time_setting(fns: Mapping[str, Callable], example_input: torch.Tensor, b: int, t: int, baseline: str,
                  pairs: Mapping[str, str], runtimes: Mapping[str, str], cores: list[int] | None,
                  notes: list[str], opts: Mapping[str, Any]) -> SettingTiming:
    """Rounds at one (batch size, threads) until every ratio is narrow, the cap, or max_rounds."""
    batch = make_batch(example_input, b)
    sync = torch.cuda.synchronize if batch.device.type == "cuda" else None
    times: dict[str, list[float]] = {name: [] for name in fns}
    medians: dict[str, list[float]] = {name: [] for name in fns}
    orders, stream = [], conf.order_stream(list(fns), opts["seed"])
    with ExitStack() as stack:
        stack.enter_context(timing_mode(fns, t))
        stack.enter_context(pinned(cores))
        repeats = _warm_repeats(fns, batch, opts["warmup"], opts["round_seconds"], sync)
        start = time.perf_counter()
        while True:
            orders.append(next(stream))
            for name in orders[-1]:
                round_times = [timed_call(fns[name], batch, sync) for _ in range(repeats[name])]
                times[name] += round_times
                medians[name].append(statistics.median(round_times))
            seconds = time.perf_counter() - start
            if len(orders) < opts["min_rounds"]:
                continue
            ratios = _ratio_stats(medians, pairs, runtimes, b, t, opts, seconds)
            if (all(r.converged for r in ratios.values()) or seconds >= opts["max_seconds"]
                    or len(orders) >= opts["max_rounds"]):
                break
    latency = {name: LatencyStat.from_times(times[name], batch_size=b, threads=t, runtime=runtimes[name],
                                            rounds=len(orders),
                                            round_medians_ms=[round(m, 6) for m in medians[name]],
                                            cores=cores)
               for name in fns}
    return SettingTiming(batch_size=b, threads=t, cores=cores, rounds=len(orders), seconds=round(seconds, 3),
                         orders=orders, latency=latency, ratios=ratios,
                         baseline_spread=conf.spread(medians[baseline]), notes=notes)


def _verdict(settings: list[SettingTiming], width: float) -> tuple[int, int, float, str]:
    total = sum(len(s.ratios) for s in settings)
    wide = sum(not r.converged for s in settings for r in s.ratios.values())
    spread = max((s.baseline_spread for s in settings), default=0.0)
    noise = f"baseline's round medians vary by {spread:.1%} of their median (p10 to p90)"
    if total == 0:
        return 0, 0, spread, f"no speed-ups: only the baseline was timed; {noise}"
    if wide == 0:
        return total, 0, spread, f"machine quiet: all {total} speed-ups within +-{width:.0%}; {noise}"
    return total, wide, spread, f"machine busy: {wide} of {total} speed-ups wider than +-{width:.0%}; {noise}"


def confident_latency(
    candidates: Mapping[str, Callable[[torch.Tensor], Any]],
    example_input: torch.Tensor,
    *,
    baseline: str,
    baselines: Mapping[str, str] | None = None,
    batch_sizes: Sequence[int] = (1, 64),
    threads: Sequence[int] = (1,),
    min_rounds: int = 5,
    max_rounds: int = 1000,
    max_seconds: float = 60.0,
    target_width: float = conf.TARGET_WIDTH,
    confidence: float = conf.CONFIDENCE,
    resamples: int = conf.RESAMPLES,
    seed: int = 0,
    cores: Sequence[int] | None = None,
    pin: bool = True,
    warmup: int = 5,
    round_seconds: float = 0.05,
    runtimes: Mapping[str, str] | None = None,
) -> TimingRun:
    """Time candidates against a baseline in shuffled interleaved rounds until every speed-up is sure.

    At each (threads, batch size) the process is pinned to fixed cores, every candidate is warmed
    up, then rounds run: in each, every candidate (in a seeded shuffled order) is called about
    ``round_seconds`` worth of times, at least 3. After ``min_rounds`` rounds, a round is added
    until each speed-up's interval (the median of per-round ratios and its bootstrap interval,
    :mod:`torchslim.measure.confidence`) lies within ``+-target_width`` of it, or the rounds of
    this setting have taken ``max_seconds``, or ``max_rounds`` ran.

    Args:
        candidates: ``{name: nn.Module or callable taking one tensor}``, the baseline among them;
            a runtime's ``set_threads`` is called with each thread count.
        example_input: a batch ``(N, ...)``; its samples are repeated to each batch size.
        baseline: the name every speed-up is against (``baseline time / candidate time``).
        baselines: ``{candidate: another candidate}`` to compare some against their own baseline,
            e.g. an INT8 ONNX model against the FP32 ONNX model, so like is compared with like.
        batch_sizes, threads: every (batch size, threads) is a setting with its own rounds.
        min_rounds: rounds that always run, even past the cap (an interval from fewer says little).
        max_rounds: rounds at most per setting.
        max_seconds: the time cap per setting (warm-up excluded): once the rounds have taken this
            long, no round is added and the wide ratios are recorded as not converged.
        target_width: half-width of the interval, as a fraction of the ratio, that ends the rounds.
        confidence, resamples, seed: the bootstrap's level, resample count and seed; ``seed`` also
            seeds the round orders.
        cores: cores to pin to, in order of preference (a setting of t threads uses the first t);
            default: this process's usable cores. ``pin=False`` pins nothing.
        warmup: untimed calls per candidate and setting.
        runtimes: the runtime recorded per name (default: the object's ``runtime``, else
            "torch-eager" for a module, "callable" otherwise).

    Returns:
        A :class:`TimingRun`: each setting's latencies (with round medians and cores), speed-ups
        (ratio, interval, rounds, converged), round orders, and one noise verdict for the run.

    Raises:
        TorchSlimError: before any timing, for an empty mapping, a candidate that is not
            callable, a baseline that is not a candidate, a bad batch size, thread count, round
            count, width, confidence, cap, seed or core.
    """
    pairs = _check_baselines(candidates, baseline, baselines)
    batch_sizes = check_positive_ints("batch_sizes", batch_sizes)
    threads = check_positive_ints("threads", threads)
    opts = _check_options(min_rounds, max_rounds, max_seconds, target_width, confidence, resamples, seed,
                          warmup, round_seconds, pin)
    batch_size_of(example_input)
    preferred = check_cores(list(cores) if isinstance(cores, range) else cores, max(threads))
    names = {name: (runtimes or {}).get(name) or runtime_name(fn) for name, fn in candidates.items()}
    settings = []
    for t in threads:
        chosen, notes = cores_for(t, preferred) if pin else (None, ["not pinned: pin=False"])
        for b in batch_sizes:
            settings.append(_time_setting(candidates, example_input, b, t, baseline, pairs, names, chosen,
                                          notes, opts))
    total, wide, spread, verdict = _verdict(settings, opts["target_width"])
    notes = list(dict.fromkeys(n for s in settings for n in s.notes))
    return TimingRun(baseline=baseline, options={**opts, "cores": preferred}, settings=settings,
                     ratios_total=total, ratios_not_converged=wide, baseline_spread=spread, verdict=verdict,
                     notes=notes)


def attach_timing(records: Sequence[MeasureRecord], run: TimingRun) -> None:
    """Put ``run``'s latencies and speed-ups into ``records``, matched by name.

    The run's verdict and notes (pinning, oversubscription) stay on ``run``: they describe the
    machine once for the whole run, not each row.

    Raises:
        TorchSlimError: a record whose name the run did not time (nothing is changed then).
    """
    timed = set(run.settings[0].latency) if run.settings else set()
    for record in records:
        if record.name not in timed:
            raise TorchSlimError(f"Record {record.name!r} was not timed in this run; "
                                 f"timed: {', '.join(sorted(timed))}.")
    for record in records:
        record.latency = run.latency_of(record.name)
        record.speedups = run.speedups_of(record.name)
