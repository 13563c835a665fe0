"""Static INT8 calibration's memory follows the model and the batch, not the calibration set.

One fresh interpreter runs ``static_int8`` several times and reports each call's peak anonymous
resident memory (sampled every 2 ms: held batches and ONNX Runtime's arena live for the whole
calibration); the first call, two small batches, is the reference the others are compared with.
The graph is built with ``onnx.helper`` (no export): ten 1x1 convolutions with ReLU on 8 x 32 x 32
inputs, 32 KiB per activation per sample, 0.6 MiB of activations per sample, little arithmetic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

CHANNELS, SIDE, LAYERS, CLASSES = 8, 32, 10, 4
MIB = 2**20

MEASURE = textwrap.dedent("""
    import json, sys, threading, warnings
    from pathlib import Path
    import torch
    from torchslim.quantize import static_int8

    path, out, runs = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])

    def batches_of(count, size):
        class Batches:
            # Made on the fly from a seed per batch, so the data is never all in memory here.
            def __iter__(self):
                for i in range(count):
                    g = torch.Generator().manual_seed(i)
                    yield (torch.randn(size, %(channels)d, %(side)d, %(side)d, generator=g),
                           torch.zeros(size, dtype=torch.long))
        return Batches()

    def anon():
        # Anonymous resident memory only: shared-library pages paged in or out by other processes'
        # memory pressure would otherwise move the numbers by tens of MiB.
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024

    def peak_of(count, size, where):
        peak, stop = [anon()], threading.Event()

        def sample():
            while not stop.wait(0.002):
                peak[0] = max(peak[0], anon())

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            art = static_int8(path, batches_of(count, size), out=where, calibration_batches=count)
        finally:
            stop.set()
            sampler.join()
        return {"peak": max(peak[0], anon()), "calibration": art.info["quantization"]["calibration"]}

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    print(json.dumps([peak_of(count, size, out / str(i)) for i, (count, size) in enumerate(runs)]))
""") % {"channels": CHANNELS, "side": SIDE}


def deep_pointwise_graph(path: Path) -> Path:
    """Conv 1x1 + ReLU x LAYERS, global average pool, Gemm: a graph with many wide activations."""
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "input"
    for i in range(LAYERS):
        w = rng.normal(0, 0.4, (CHANNELS, CHANNELS, 1, 1)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(CHANNELS, np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}"),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        x = f"r{i}"
    inits += [numpy_helper.from_array(rng.normal(0, 0.4, (CLASSES, CHANNELS)).astype(np.float32), "fc_w"),
              numpy_helper.from_array(np.zeros(CLASSES, np.float32), "fc_b")]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"),
              helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["output"], name="fc", transB=1)]
    graph = helper.make_graph(
        nodes, "deep-pointwise",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", CHANNELS, SIDE, SIDE])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def measure(graph: Path, out: Path, runs: list[tuple[int, int]]) -> list[dict]:
    """Peak anonymous memory of ``static_int8`` on ``graph`` for each ``(batches, batch size)``, in
    that order in one interpreter (the first run pays for the lazy imports)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", MEASURE, str(graph), str(out), json.dumps(runs)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def lowest(graph: Path, where: Path, run: tuple[int, int], repeats: int = 3) -> dict:
    """The lowest peak of ``repeats`` fresh interpreters calibrating ``run``: one interpreter's peak
    also holds what its allocator kept from earlier work (tens of MiB, differing run to run), the
    lowest of a few is what the calibration itself needs."""
    results = [measure(graph, where / f"{run[0]}x{run[1]}-{i}", [run])[0] for i in range(repeats)]
    return min(results, key=lambda r: r["peak"])


@pytest.fixture(scope="module")
def peaks(tmp_path_factory) -> dict[str, dict]:
    """Two batches of 128 samples (the reference), 32 batches of 128, and 2 batches of 512."""
    where = tmp_path_factory.mktemp("memory")
    graph = deep_pointwise_graph(where / "fp32.onnx")
    return {"few": lowest(graph, where, (2, 128)), "many": lowest(graph, where, (32, 128)),
            "big": lowest(graph, where, (2, 512))}


def test_peak_memory_does_not_grow_with_the_number_of_calibration_batches(peaks):
    # 30 more batches of 128 samples are 120 MiB of inputs: holding them (or their activations)
    # would show (it did: +120 MiB); streaming them one at a time must not (+13 to +20 MiB).
    few, many = peaks["few"], peaks["many"]
    assert (few["calibration"]["batches"], many["calibration"]["batches"]) == (2, 32)
    assert many["calibration"]["samples"] == 32 * 128
    grew = (many["peak"] - few["peak"]) / MIB
    assert grew < 48, f"32 calibration batches peaked {grew:.0f} MiB above 2 batches ({few}, {many})"


def test_a_large_calibration_batch_is_calibrated_in_runs_of_bounded_memory(peaks):
    # Two batches of 512 samples, 320 MiB of activations each: calibrated whole, ONNX Runtime's
    # augmented graph holds all of one batch's at once (twice, with its arena: it peaked 530 MiB
    # above batches of 128). In runs of bounded size the peak stays within two runs' worth of
    # that (+35 MiB).
    from torchslim.quantize import ranges

    few, big = peaks["few"], peaks["big"]
    grew = (big["peak"] - few["peak"]) / MIB
    assert grew < 2 * ranges.RUN_BYTES / MIB, f"batches of 512 peaked {grew:.0f} MiB above batches of 128 ({few}, {big})"
    assert 1 <= big["calibration"]["samples_per_run"] < 512 and big["calibration"]["samples"] == 1024
