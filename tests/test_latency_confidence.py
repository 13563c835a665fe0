"""Speed-ups with intervals (torchslim.measure.rounds and .confidence), pinning, records, ties and
accuracy standard errors.

The timed callables spin on the clock for a known time, so their true ratios are known (2x the
time: a speed-up of 2 against it). Tests check intervals, stopping, orders and bookkeeping, never
absolute speed.
"""

from __future__ import annotations

import os
import random
import threading
import time

import pytest
import torch
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.measure import confidence as conf
from torchslim.measure.record import LatencyStat, MeasureRecord, RatioStat, TimingRun
from torchslim.measure.rounds import attach_timing, confident_latency
from torchslim.measure.system import pinned, usable_cores

X = torch.zeros(1, 4)
QUICK = {"batch_sizes": (1,), "warmup": 1, "round_seconds": 0.002, "max_seconds": 2.0}
QUICK_TEXT = {k: v for k, v in QUICK.items() if k != "batch_sizes"}
needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")


def spin(ms: float):
    """A callable that takes ``ms`` milliseconds of wall time, whatever else the machine does."""
    def fn(_x: torch.Tensor) -> None:
        end = time.perf_counter() + ms / 1000.0
        while time.perf_counter() < end:
            pass
    return fn


def noisy(rng: random.Random):
    """A callable whose cost jumps between 0.2 and 2 ms at random: its ratio never settles."""
    def fn(_x: torch.Tensor) -> None:
        spin(rng.choice((0.2, 2.0)))(_x)
    return fn


def covers(stat: RatioStat, true: float, slack: float = 0.005) -> bool:
    """Whether ``stat``'s interval holds ``true`` give or take ``slack`` (0.5%): each call pays a
    microsecond or so for the call itself and for switching candidates, which moves a spin's ratio
    by a few hundredths of a percent, far below the 5% the intervals are narrowed to."""
    return stat.low <= true * (1 + slack) and stat.high >= true * (1 - slack)


# -- the engine ------------------------------------------------------------------------------------

def converged_after(setting, rounds: int) -> bool:
    """Whether every ratio of ``setting`` was within +-5% after its first ``rounds`` rounds."""
    base = setting.latency["base"].round_medians_ms[:rounds]
    for name in setting.ratios:
        ratios = conf.per_round_ratios(base, setting.latency[name].round_medians_ms[:rounds])
        if not conf.is_narrow(*conf.bootstrap_interval(ratios)):
            return False
    return True


def test_intervals_contain_the_true_ratios_and_stop_early():
    run = confident_latency({"base": spin(1.0), "half": spin(0.5), "same": spin(1.0)}, X, baseline="base",
                            **QUICK)
    (setting,) = run.settings
    half, same = setting.ratios["half"], setting.ratios["same"]
    assert covers(half, 2.0) and covers(same, 1.0), (half, same)
    assert half.converged and same.converged and run.quiet and setting.seconds < 2.0
    # Stopped at the first round after the minimum where every interval was narrow (on a quiet
    # machine that is round 5; a burst of load on a shared one may need a few more).
    assert setting.rounds >= 5 and half.rounds == setting.rounds
    assert converged_after(setting, setting.rounds)
    assert not any(converged_after(setting, r) for r in range(5, setting.rounds))
    assert run.verdict.startswith("machine quiet: all 2 speed-ups within +-5%")
    assert set(setting.ratios) == {"half", "same"}  # the baseline has no ratio to itself
    assert len(setting.latency["half"].round_medians_ms) == setting.latency["half"].rounds == setting.rounds


def test_rounds_stop_at_the_cap_when_the_ratio_does_not_settle():
    run = confident_latency({"base": spin(0.5), "noisy": noisy(random.Random(0))}, X, baseline="base",
                            **{**QUICK, "max_seconds": 1.0})
    (setting,) = run.settings
    stat = setting.ratios["noisy"]
    assert not stat.converged and stat.half_width > 0.05
    assert setting.seconds >= 1.0 and setting.rounds > 5
    assert run.ratios_not_converged == 1 and not run.quiet
    assert run.verdict.startswith("machine busy: 1 of 1 speed-ups wider than +-5%")


def test_rounds_stop_at_max_rounds():
    run = confident_latency({"base": spin(0.3), "noisy": noisy(random.Random(1))}, X, baseline="base",
                            min_rounds=3, max_rounds=7, **{**QUICK, "max_seconds": 30.0})
    assert run.settings[0].rounds == 7 and run.settings[0].seconds < 30.0


def test_each_candidate_against_its_own_baseline():
    run = confident_latency({"a": spin(1.0), "b": spin(0.5), "c": spin(0.25)}, X, baseline="a",
                            baselines={"c": "b"}, **QUICK)
    ratios = run.settings[0].ratios
    assert (ratios["b"].baseline, ratios["c"].baseline) == ("a", "b")
    assert covers(ratios["c"], 2.0) and covers(ratios["b"], 2.0), ratios


def test_every_setting_is_timed_and_modules_keep_their_mode():
    model = nn.Linear(4, 4).train()
    run = confident_latency({"linear": model, "spin": spin(0.1)}, X, baseline="linear",
                            **{**QUICK, "batch_sizes": (1, 3), "max_seconds": 0.5})
    assert [(s.batch_size, s.threads) for s in run.settings] == [(1, 1), (3, 1)]
    assert model.training
    assert run.latency_of("linear")[1].batch_size == 3 and run.latency_of("linear")[0].runtime == "torch-eager"
    assert run.speedups_of("linear") == [] and len(run.speedups_of("spin")) == 2


class Deployed:
    """A deployed-runtime stand-in with its own thread pool setting, as ONNX Runtime's wrapper has."""

    runtime = "onnxruntime"

    def __init__(self) -> None:
        self.threads: list[int] = []

    def set_threads(self, threads: int) -> None:
        self.threads.append(threads)

    def __call__(self, x: torch.Tensor) -> None:
        spin(0.2)(x)


def test_runtimes_get_the_thread_count_and_torch_gets_its_own_back():
    deployed, before = Deployed(), torch.get_num_threads()
    run = confident_latency({"torch": spin(0.2), "ort": deployed}, X, baseline="torch", threads=(2, 1),
                            pin=False, **QUICK)
    assert deployed.threads == [2, 1] and torch.get_num_threads() == before
    assert run.settings[0].latency["ort"].runtime == "onnxruntime" == run.speedups_of("ort")[0].runtime
    assert run.settings[0].latency["torch"].runtime == "callable"


def test_round_orders_are_seeded_balanced_and_recorded():
    names = ["a", "b", "c"]
    orders = conf.round_orders(names, 12, seed=3)
    assert orders == conf.round_orders(names, 12, seed=3)
    assert orders != conf.round_orders(names, 12, seed=4)
    for block in range(0, 12, 3):  # every candidate takes every position once per block
        for position in range(3):
            assert sorted(o[position] for o in orders[block:block + 3]) == names
    followers = {tuple(o[i:i + 2]) for o in orders for i in range(2)}
    assert len(followers) > 3  # blocks are reshuffled: no candidate always follows the same one
    run = confident_latency(dict(zip(names, (spin(0.2),) * 3, strict=True)), X, baseline="a", seed=3, **QUICK)
    assert run.settings[0].orders == conf.round_orders(names, run.settings[0].rounds, seed=3)


def test_sentences_per_second_with_speed_ups():
    from torchslim.text.speed import confident_throughput

    ids = torch.tensor([[5, 6, 7, 0], [5, 6, 0, 0], [8, 0, 0, 0]])
    encoders = {"teacher": lambda x: spin(0.4)(x), "student": lambda x: spin(0.2)(x)}
    speed, runs = confident_throughput(encoders, ids, 0, baseline="teacher", batch_sizes=(2, 1), **QUICK_TEXT)
    assert [r.settings[0].batch_size for r in runs] == [2, 1]
    assert speed["teacher"]["b2"]["speedup"] is None and speed["teacher"]["b2"]["tokens"] == 3
    student = RatioStat.from_dict(speed["student"]["b1"]["speedup"])
    assert student.baseline == "teacher" and covers(student, 2.0) and speed["student"]["b1"]["tokens"] == 3
    with pytest.raises(TorchSlimError, match="batch size 4 needs at least 4 sample sentences"):
        confident_throughput(encoders, ids, 0, baseline="teacher", batch_sizes=(1, 4))


# -- pinning ---------------------------------------------------------------------------------------

@needs_affinity
def test_pinning_moves_every_thread_and_restores_each():
    before = os.sched_getaffinity(0)
    core = usable_cores()[-1]
    seen, release = {}, threading.Event()
    worker = threading.Thread(target=lambda: (seen.setdefault("tid", threading.get_native_id()), release.wait(5)))
    worker.start()
    while "tid" not in seen:
        time.sleep(0.001)
    worker_before = os.sched_getaffinity(seen["tid"])
    with pinned([core]) as cores:
        assert cores == [core]
        assert os.sched_getaffinity(0) == {core} and os.sched_getaffinity(seen["tid"]) == {core}
    assert os.sched_getaffinity(0) == before and os.sched_getaffinity(seen["tid"]) == worker_before
    release.set()
    worker.join()


@needs_affinity
def test_timing_records_its_cores_and_restores_affinity():
    before = os.sched_getaffinity(0)
    run = confident_latency({"a": spin(0.2), "b": spin(0.2)}, X, baseline="a", cores=[usable_cores()[-1]], **QUICK)
    assert run.settings[0].cores == [usable_cores()[-1]]
    assert run.settings[0].latency["a"].cores == [usable_cores()[-1]]
    assert os.sched_getaffinity(0) == before
    unpinned = confident_latency({"a": spin(0.2)}, X, baseline="a", pin=False, **QUICK)
    assert unpinned.settings[0].cores is None and "not pinned: pin=False" in unpinned.notes


@needs_affinity
def test_more_threads_than_cores_is_noted_once_per_run():
    many = len(usable_cores()) + 1
    run = confident_latency({"a": spin(0.2)}, X, baseline="a", threads=(many,), **QUICK)
    assert run.settings[0].cores == usable_cores()
    assert len(run.notes) == 1 and "oversubscribed" in run.notes[0]


# -- records ---------------------------------------------------------------------------------------

def test_timing_run_and_records_round_trip_through_json():
    run = confident_latency({"a": spin(0.2), "b": spin(0.1)}, X, baseline="a", **QUICK)
    assert TimingRun.from_dict(run.to_dict()) == run
    records = [MeasureRecord(name=n, parameters=1, macs=1, bytes=1) for n in ("a", "b")]
    attach_timing(records, run)
    assert records[1].speedups == run.speedups_of("b") and records[0].latency == run.latency_of("a")
    assert MeasureRecord.from_json(records[1].to_json()) == records[1]
    stat = records[1].speedups[0]
    assert RatioStat.from_dict(stat.to_dict()) == stat
    with pytest.raises(TorchSlimError, match="'zzz' was not timed"):
        attach_timing([MeasureRecord(name="zzz", parameters=1, macs=1, bytes=1)], run)


def test_json_written_before_intervals_still_reads():
    old_stat = {"batch_size": 1, "threads": 1, "median_ms": 2.0, "p10_ms": 1.0, "p90_ms": 3.0,
                "per_sample_ms": 2.0, "throughput": 500.0, "repeats": 3, "runtime": "torch-eager",
                "times_ms": [1.0, 2.0, 3.0]}
    old = {"name": "m", "runtime": "torch-eager", "parameters": 1, "macs": 1, "bytes": 1, "accuracy": None,
           "test_samples": None, "loss": None, "latency": [old_stat], "notes": [], "extra": {}}
    record = MeasureRecord.from_dict(old)
    assert record.speedups == [] and record.latency[0] == LatencyStat(**old_stat)
    assert record.latency[0].rounds is None and record.latency[0].cores is None


# -- intervals and ties ----------------------------------------------------------------------------

def test_bootstrap_interval_is_seeded_and_narrows_with_rounds():
    rng = random.Random(0)
    few = [2.0 * rng.uniform(0.9, 1.1) for _ in range(6)]
    many = few + [2.0 * rng.uniform(0.9, 1.1) for _ in range(200)]
    assert conf.bootstrap_interval(few, seed=1) == conf.bootstrap_interval(few, seed=1)
    median, low, high = conf.bootstrap_interval(few)
    assert low <= median <= high
    _, low_many, high_many = conf.bootstrap_interval(many)
    assert high_many - low_many < high - low
    assert low_many <= 2.0 <= high_many
    assert conf.per_round_ratios([2.0, 4.0], [1.0, 1.0]) == [2.0, 4.0]
    assert conf.is_narrow(2.0, 1.92, 2.08) and not conf.is_narrow(2.0, 1.8, 2.05)


def stat_of(name: str, low: float, high: float, batch: int = 1) -> RatioStat:
    return RatioStat(name=name, baseline="base", ratio=(low + high) / 2, low=low, high=high, rounds=5,
                     converged=True, runtime="torch-eager", batch_size=batch, threads=1)


def test_ties_are_overlapping_intervals():
    a, b, c = stat_of("a", 1.9, 2.1), stat_of("b", 2.05, 2.3), stat_of("c", 2.2, 2.4)
    assert a.ties_with(b) and b.ties_with(a) and not a.ties_with(c)
    assert conf.tied_pairs([a, b, c]) == [("a", "b"), ("b", "c")]
    assert conf.intervals_overlap((1.0, 2.0), (2.0, 3.0)) and not conf.intervals_overlap((1.0, 1.5), (1.6, 2))
    with pytest.raises(TorchSlimError, match="not comparable"):
        a.ties_with(stat_of("d", 1.9, 2.1, batch=64))


# -- accuracy --------------------------------------------------------------------------------------

def test_accuracy_standard_errors():
    assert conf.sample_points(10_000) == pytest.approx(0.01)
    assert conf.accuracy_standard_error(90.0, 10_000) == pytest.approx(0.30)
    assert conf.accuracy_standard_error(50.0, 100) == pytest.approx(5.0)
    assert conf.accuracy_standard_error(100.0, 10_000) == 0.0
    assert not conf.accuracies_differ(90.0, 10_000, 90.5, 10_000)  # 0.5 < 2 x 0.42
    assert conf.accuracies_differ(90.0, 10_000, 91.0, 10_000)  # 1.0 > 2 x 0.42
    assert conf.accuracies_differ(90.0, 10_000, 90.5, 10_000, z=1.0)
