"""torchslim.measure: exact MACs and parameters, accuracy, bytes, latency records, JSON, tables.

Latency tests check the record's shape and bookkeeping (order of percentiles, repeats, threads
restored), never speed.
"""

from __future__ import annotations

import io
import json

import pytest
import torch
from rich.console import Console
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.core.tensors import save_tensors
from torchslim.measure import (
    LatencyStat,
    MeasureRecord,
    count_macs,
    count_parameters,
    interleaved_latency,
    machine_info,
    measure,
    measure_latency,
    measure_many,
    print_records,
    records_markdown,
    records_table,
)
from torchslim.measure.system import cpuinfo

FAST = {"warmup": 1, "repeats": 3}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bundle(tiny_images):
    return tiny_images()


# --- MACs and parameters -----------------------------------------------------------------------


@pytest.mark.parametrize("groups", [1, 2])
def test_conv_macs_match_formula(groups):
    conv = nn.Conv2d(4, 8, kernel_size=3, stride=2, padding=1, groups=groups)
    x = torch.randn(1, 4, 16, 16)
    h_out = w_out = 8  # (16 + 2*1 - 3) // 2 + 1
    assert count_macs(conv, x) == 8 * h_out * w_out * (4 // groups) * 3 * 3


def test_linear_macs_match_formula():
    assert count_macs(nn.Linear(20, 7), torch.randn(1, 20)) == 20 * 7


def test_macs_are_per_sample_and_mode_is_restored():
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Flatten(), nn.Linear(3 * 6 * 6, 5)).train()
    one = count_macs(model, torch.randn(1, 1, 8, 8))
    assert count_macs(model, torch.randn(6, 1, 8, 8)) == one == 3 * 6 * 6 * 9 + 3 * 6 * 6 * 5
    assert model.training


def test_count_parameters_counts_shared_weights_once(tiny_cnn):
    a = nn.Linear(20, 7)
    assert count_parameters(a) == 20 * 7 + 7
    assert count_parameters(nn.Sequential(a, nn.ReLU(), a)) == 20 * 7 + 7
    model = tiny_cnn()
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


# --- measure: accuracy, bytes, example input ---------------------------------------------------


def test_accuracy_matches_an_independent_count(bundle, tiny_cnn):
    model = tiny_cnn().eval()
    correct = total = 0
    with torch.no_grad():
        for x, y, _ in bundle.test:
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    record = measure(model, bundle.test, batch_sizes=(1,), latency_kwargs=FAST)
    assert record.test_samples == total == 40
    assert record.accuracy == pytest.approx(100.0 * correct / total)
    assert record.loss is not None and record.loss > 0
    assert record.parameters == count_parameters(model)
    assert record.macs == count_macs(model, torch.randn(1, 1, 8, 8))


def test_bytes_of_file_directory_and_default(tmp_path, tiny_cnn):
    model = tiny_cnn()
    x = torch.randn(1, 1, 8, 8)
    weights = save_tensors(tmp_path / "art" / "model.safetensors", model.state_dict())
    (tmp_path / "art" / "model.json").write_text("{}")
    on_file = measure(model, example_input=x, artifact=weights, batch_sizes=())
    on_dir = measure(model, example_input=x, artifact=tmp_path / "art", batch_sizes=())
    default = measure(model, example_input=x, batch_sizes=())
    assert on_file.bytes == weights.stat().st_size == default.bytes
    assert on_dir.bytes == weights.stat().st_size + 2
    assert on_file.accuracy is None and on_file.latency == []


def test_missing_artifact_is_an_error(tmp_path, tiny_cnn):
    with pytest.raises(TorchSlimError, match="No artifact"):
        measure(tiny_cnn(), example_input=torch.randn(1, 1, 8, 8), artifact=tmp_path / "nope")


def test_every_setting_is_timed(bundle, tiny_cnn):
    record = measure(tiny_cnn(), bundle.test, name="cnn", batch_sizes=(1, 4), threads=(1,),
                     latency_kwargs=FAST)
    assert [(s.batch_size, s.threads, s.repeats) for s in record.latency] == [(1, 1, 3), (4, 1, 3)]
    assert record.name == "cnn" and record.runtime == "torch-eager"
    assert record.extra["input_shape"] == [1, 8, 8]


def test_measure_many_interleaves_and_keeps_order(bundle, tiny_cnn):
    records = measure_many({"a": tiny_cnn(), "b": nn.Sequential(nn.Flatten(), nn.Linear(64, 4))},
                           bundle.test, batch_sizes=(2,), rounds=2, latency_kwargs=FAST)
    assert [r.name for r in records] == ["a", "b"]
    assert all(r.latency[0].repeats == 6 for r in records)


# --- latency -------------------------------------------------------------------------------------


def test_latency_record_is_sane_and_threads_restored(tiny_cnn):
    model = tiny_cnn().train()
    stat = measure_latency(model, torch.randn(1, 1, 8, 8), batch_size=3, threads=2, warmup=1, repeats=7)
    assert torch.get_num_threads() == 1
    assert model.training
    assert stat.repeats == len(stat.times_ms) == 7
    assert stat.p10_ms <= stat.median_ms <= stat.p90_ms
    assert (stat.batch_size, stat.threads, stat.runtime) == (3, 2, "torch-eager")
    assert stat.per_sample_ms == pytest.approx(stat.median_ms / 3)
    assert stat.throughput == pytest.approx(3000.0 / stat.median_ms)


def test_callable_gets_the_built_batch_and_the_thread_hook():
    shapes, hooked = [], []

    def fn(x):
        shapes.append(tuple(x.shape))
        assert not torch.is_grad_enabled()

    example = torch.arange(3.0).view(3, 1)
    stat = measure_latency(fn, example, batch_size=5, threads=1, warmup=2, repeats=4,
                           set_threads=hooked.append)
    assert shapes == [(5, 1)] * 6 and hooked == [1]
    assert stat.runtime == "callable" and stat.repeats == 4


def test_thread_hook_taken_from_the_callable():
    class Runtime:
        def __init__(self):
            self.threads = None

        def set_threads(self, n):
            self.threads = n

        def __call__(self, x):
            return x

    runtime = Runtime()
    measure_latency(runtime, torch.zeros(1, 2), batch_size=1, threads=1, warmup=0, repeats=2, runtime="ort")
    assert runtime.threads == 1


def test_adaptive_repeats_are_clamped():
    x = torch.zeros(1, 2)
    low = measure_latency(lambda t: t, x, batch_size=1, threads=1, min_seconds=0, min_repeats=4)
    high = measure_latency(lambda t: t, x, batch_size=1, threads=1, min_seconds=60, max_repeats=12)
    assert (low.repeats, high.repeats) == (4, 12)


def test_interleaved_rounds_alternate_order():
    calls = []
    candidates = {"a": lambda x: calls.append("a"), "b": lambda x: calls.append("b")}
    out = interleaved_latency(candidates, torch.zeros(1, 1), batch_sizes=(1,), threads=(1,), rounds=2,
                              warmup=0, repeats=1)
    assert calls == ["a", "b", "b", "a"]
    assert [s.repeats for s in out["a"]] == [2]


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0, "threads": 1}, "batch_size must be a positive integer, got 0"),
    ({"batch_size": 1, "threads": 0}, "threads must be a positive integer, got 0"),
    ({"batch_size": 1.5, "threads": 1}, "batch_size"),
    ({"batch_size": 1, "threads": 1, "repeats": 0}, "repeats"),
    ({"batch_size": 1, "threads": 1, "warmup": -1}, "warmup"),
    ({"batch_size": 1, "threads": 1, "min_repeats": 5, "max_repeats": 2}, "max_repeats"),
])
def test_latency_rejects_bad_settings(kwargs, message):
    with pytest.raises(TorchSlimError, match=message):
        measure_latency(lambda x: x, torch.zeros(1, 1), **kwargs)


# --- errors of measure ---------------------------------------------------------------------------


def test_measure_needs_a_loader_or_an_example(tiny_cnn):
    with pytest.raises(TorchSlimError, match="neither"):
        measure(tiny_cnn())


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_sizes": (1, 0)}, "positive integer, got 0"),
    ({"threads": (0,)}, "positive integer, got 0"),
    ({"threads": ()}, "non-empty"),
    ({"latency_kwargs": {"repeat": 3}}, "Did you mean 'repeats'"),
    ({"latency_kwargs": {"warmup": -2}}, "warmup"),
    ({"example_input": [1.0]}, "torch.Tensor"),
])
def test_measure_rejects_bad_input(kwargs, message, tiny_cnn):
    kwargs.setdefault("example_input", torch.randn(1, 1, 8, 8))
    with pytest.raises(TorchSlimError, match=message):
        measure(tiny_cnn(), **kwargs)


# --- records, tables, machine --------------------------------------------------------------------


def stat(median: float, p10: float, p90: float, batch_size: int = 1) -> LatencyStat:
    return LatencyStat(batch_size=batch_size, threads=1, median_ms=median, p10_ms=p10, p90_ms=p90,
                       per_sample_ms=median / batch_size, throughput=1000 * batch_size / median,
                       repeats=10, runtime="torch-eager")


def record(name: str, median: float, accuracy: float | None = 90.0) -> MeasureRecord:
    return MeasureRecord(name=name, parameters=1234, macs=5_600_000, bytes=48_000, accuracy=accuracy,
                         test_samples=100, loss=0.3, latency=[stat(median, median * 0.9, median * 1.1)],
                         notes=["a [bracketed] note"], extra={"k": [1, 2]})


def test_json_round_trip():
    original = record("teacher", 2.0)
    assert MeasureRecord.from_json(original.to_json()) == original
    assert MeasureRecord.from_dict(json.loads(json.dumps(original.to_dict()))) == original


def test_from_json_rejects_unknown_keys():
    bad = {**record("x", 1.0).to_dict(), "acuracy": 1.0}
    with pytest.raises(TorchSlimError, match="acuracy"):
        MeasureRecord.from_json(json.dumps(bad))


def test_spread_warning_only_for_wide_spread():
    quiet = record("quiet", 1.0)
    busy = record("busy", 1.0)
    busy.latency = [stat(1.0, 0.5, 2.0)]
    assert quiet.spread_warning() == []
    [note] = busy.spread_warning()
    assert "busy" in note and "4.00" in note


def test_table_renders_with_speedups():
    teacher, student = record("teacher", 2.0), record("student", 1.0, accuracy=88.5)
    console = Console(file=io.StringIO(), width=250, color_system=None)
    print_records([teacher, student], baseline=teacher, console=console)
    text = console.file.getvalue()
    assert "teacher" in text and "student" in text and "a [bracketed] note" in text
    assert "1.00×" in text and "2.00×" in text and "-1.50" in text
    assert "5.6 M" in text and "48 kB" in text and "1,234" in text
    assert records_table([teacher]).row_count == 1


def test_markdown_table():
    teacher, student = record("teacher", 2.0), record("student", 1.0, accuracy=None)
    lines = records_markdown([teacher, student], baseline=teacher).splitlines()
    assert lines[0].startswith("| model | runtime |") and lines[1].startswith("|---|")
    assert "2.00×" in lines[3] and "—" in lines[3]


def test_machine_info_fields():
    info = machine_info()
    assert {"cpu", "cpu_flags", "logical_cores", "python", "versions", "torch_threads"} <= set(info)
    assert info["versions"]["torch"] and set(info["versions"]) >= {"onnxruntime", "torch_pruning"}
    assert info["torch_threads"] == 1
    json.dumps(info)


def test_cpuinfo_parses_model_and_flags(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nmodel name\t: Test CPU @ 1GHz\nflags\t\t: fpu avx2 fma\n\n"
                    "processor\t: 1\nmodel name\t: Other\nflags\t\t: sse\n")
    assert cpuinfo(path) == ("Test CPU @ 1GHz", {"fpu", "avx2", "fma"})
    assert cpuinfo(tmp_path / "missing") == (None, set())
