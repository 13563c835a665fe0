"""Bad input to confident timing (``confident_latency``) and to the confidence helpers (speed-up
intervals, ties, accuracy standard errors): each case is a torchslim error naming the bad value and
what is valid, raised before any candidate is called, and nothing is written anywhere."""

from __future__ import annotations

import math
import os

import pytest
import torch

from torchslim.core.errors import TorchSlimError
from torchslim.measure import confidence as conf
from torchslim.measure.record import RatioStat, TimingRun
from torchslim.measure.rounds import confident_latency
from torchslim.measure.system import usable_cores

CORES = usable_cores() or [0]
AFFINITY = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")


class Counting:
    """A candidate that counts its calls: a bad option must fail before any of them."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x


def run_case(sandbox, needles: tuple[str, ...], candidates: dict | None = None, **options) -> None:
    a, b = Counting(), Counting()
    candidates = {"a": a, "b": b} if candidates is None else candidates
    kwargs = {"baseline": "a", "batch_sizes": (1,), "max_seconds": 1.0, **options}
    exc = sandbox.call(lambda: confident_latency(candidates, torch.zeros(1, 2), **kwargs), TorchSlimError)
    sandbox.expect_message(exc, *needles)
    assert a.calls == b.calls == 0, "a candidate ran before the bad input was refused"


TIMING_CASES = {
    "rounds zero": ({"min_rounds": 0}, ("min_rounds must be a positive integer", "got 0")),
    "rounds negative": ({"min_rounds": -3}, ("min_rounds", "got -3")),
    "rounds not an int": ({"min_rounds": 2.5}, ("min_rounds", "2.5")),
    "max below min": ({"min_rounds": 5, "max_rounds": 2}, ("max_rounds (2)", "at least min_rounds (5)")),
    "width nan": ({"target_width": math.nan}, ("target_width", "nan", "between 0 and 1")),
    "width inf": ({"target_width": math.inf}, ("target_width", "inf", "between 0 and 1")),
    "width zero": ({"target_width": 0}, ("target_width", "got 0", "between 0 and 1")),
    "width as percent": ({"target_width": 5}, ("target_width", "got 5", "between 0 and 1")),
    "cap negative": ({"max_seconds": -1}, ("max_seconds", "above 0", "got -1")),
    "cap nan": ({"max_seconds": math.nan}, ("max_seconds", "got nan")),
    "cap zero": ({"max_seconds": 0}, ("max_seconds", "above 0", "got 0")),
    "confidence above one": ({"confidence": 1.5}, ("confidence", "between 0 and 1", "1.5")),
    "confidence as percent": ({"confidence": 95}, ("confidence", "95")),
    "resamples zero": ({"resamples": 0}, ("resamples must be a positive integer", "got 0")),
    "seed text": ({"seed": "7"}, ("seed must be an integer", "'7'")),
    "warmup negative": ({"warmup": -1}, ("warmup must be a non-negative integer", "-1")),
    "round seconds negative": ({"round_seconds": -0.1}, ("round_seconds", "-0.1")),
    "pin text": ({"pin": "yes"}, ("pin must be True or False", "'yes'")),
    "batch size zero": ({"batch_sizes": (1, 0)}, ("batch_sizes", "got 0")),
    "no batch sizes": ({"batch_sizes": ()}, ("batch_sizes must be a non-empty sequence", "()")),
    "threads zero": ({"threads": (0,)}, ("threads", "got 0")),
    "baseline missing": ({"baseline": "teacher"}, ("baseline 'teacher' is not among the candidates", "'a', 'b'")),
    "baseline not a name": ({"baseline": ["a"]}, ("baseline ['a']", "'a', 'b'")),
    "own baseline unknown": ({"baselines": {"b": "zzz"}}, ("baselines['b'] = 'zzz'", "candidates: 'a', 'b'")),
    "own baseline itself": ({"baselines": {"b": "b"}}, ("baselines['b'] = 'b'", "nor its own baseline")),
    "own baseline of the baseline": ({"baselines": {"a": "b"}}, ("baselines['a'] = 'b'", "run's baseline 'a'")),
}


@pytest.mark.parametrize("options, needles", list(TIMING_CASES.values()), ids=list(TIMING_CASES))
def test_bad_timing_option(sandbox, options, needles):
    run_case(sandbox, needles, **options)


CORE_CASES = {
    "core that does not exist": ({"cores": [9999]}, ("Core(s) [9999]", f"usable cores: {CORES}")),
    "negative core": ({"cores": [-1]}, ("Core(s) [-1]", "usable cores")),
    "core as text": ({"cores": "0"}, ("cores must be a list of CPU core numbers", "'0'")),
    "core repeated": ({"cores": [CORES[0], CORES[0]], "threads": (2,)}, ("distinct", "usable cores")),
    "fewer cores than threads": ({"cores": [CORES[0]], "threads": (1, 2)}, ("at least 2 distinct core(s)",
                                                                            f"[{CORES[0]}]")),
}


@AFFINITY
@pytest.mark.parametrize("options, needles", list(CORE_CASES.values()), ids=list(CORE_CASES))
def test_bad_cores(sandbox, options, needles):
    run_case(sandbox, needles, **options)


def test_no_candidates(sandbox):
    run_case(sandbox, ("non-empty mapping", "got {}"), candidates={})


def test_candidate_not_callable(sandbox):
    run_case(sandbox, ("Candidate 'b' must be an nn.Module or a callable", "int"), candidates={"a": Counting(), "b": 3})


def test_example_without_batch_dimension(sandbox):
    a = Counting()
    exc = sandbox.call(lambda: confident_latency({"a": a}, torch.tensor(1.0), baseline="a"), TorchSlimError)
    sandbox.expect_message(exc, "example_input")
    assert a.calls == 0


STAT = {"name": "s", "baseline": "t", "ratio": 2.0, "low": 1.9, "high": 2.1, "rounds": 5, "converged": True,
        "runtime": "onnxruntime", "batch_size": 1, "threads": 1}
HELPER_CASES = {
    "accuracy above 100": (lambda: conf.accuracy_standard_error(101.0, 100), ("accuracy must be in percent",
                                                                               "[0, 100]", "101")),
    "accuracy as a fraction string": (lambda: conf.accuracy_standard_error("0.9", 100), ("'0.9'",)),
    "test set of zero": (lambda: conf.accuracy_standard_error(90.0, 0), ("test-set size", "positive integer",
                                                                         "got 0")),
    "sample points of negative n": (lambda: conf.sample_points(-5), ("test-set size", "-5")),
    "differ with nan z": (lambda: conf.accuracies_differ(90.0, 100, 91.0, 100, z=math.nan), ("z must be", "nan")),
    "no ratios": (lambda: conf.bootstrap_interval([]), ("non-empty list of positive finite numbers", "[]")),
    "negative ratio": (lambda: conf.bootstrap_interval([2.0, -1.0]), ("positive finite", "-1.0")),
    "infinite ratio": (lambda: conf.bootstrap_interval([2.0, math.inf]), ("positive finite", "inf")),
    "rounds of unequal length": (lambda: conf.per_round_ratios([1.0, 2.0], [1.0]), ("got 2 and 1",)),
    "round time zero": (lambda: conf.per_round_ratios([1.0], [0.0]), ("positive finite number of ms", "0.0")),
    "interval upside down": (lambda: conf.intervals_overlap((2.0, 1.0), (1.0, 2.0)), ("low <= high",
                                                                                       "(2.0, 1.0)")),
    "tie across batch sizes": (lambda: RatioStat(**STAT).ties_with(RatioStat(**{**STAT, "batch_size": 64})),
                               ("not comparable", "64")),
    "ratio record missing fields": (lambda: RatioStat.from_dict({"name": "s"}), ("Not a valid RatioStat",
                                                                                 "baseline")),
    "ratio record unknown key": (lambda: RatioStat.from_dict({**STAT, "speedup": 2}), ("Not a valid RatioStat",
                                                                                        "speedup")),
    "timing run not a dict": (lambda: TimingRun.from_dict({"baseline": 3}), ("Not a valid TimingRun",
                                                                             "baseline")),
}


@pytest.mark.parametrize("call, needles", list(HELPER_CASES.values()), ids=list(HELPER_CASES))
def test_bad_confidence_helper(sandbox, call, needles):
    sandbox.expect_message(sandbox.call(call, TorchSlimError), *needles)
