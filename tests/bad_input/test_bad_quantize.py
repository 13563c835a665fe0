"""Bad input to INT8 quantization: ``static_int8`` / ``dynamic_int8`` and ``torchslim quantize``.

Each is refused with the value and what is valid, before any export or calibration where the value
alone is wrong, and nothing is written. (Covered elsewhere: NaN calibration inputs in
test_bad_data.py; --mode, --operand-types, --calibration-batches 0 and --out that is a file in
test_bad_cli.py; calibration_batches 0 in recipes in test_bad_recipe.py; the options added with the
typed configs, in every front end, in test_bad_quantize_options.py.)
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.export import ExportError
from torchslim.options import OptionsError
from torchslim.quantize import CalibrationError, dynamic_int8, static_int8

SHAPE = (1, 8, 8)


def batches(n: int = 2, size: int = 4, bad: tuple[int, int, float] | None = None) -> list:
    """``n`` batches of random images; ``bad = (batch, sample, value)`` plants one value."""
    out = []
    for i in range(n):
        x = torch.randn(size, *SHAPE, generator=torch.Generator().manual_seed(i))
        if bad is not None and bad[0] == i:
            x[bad[1], 0, 3, 3] = bad[2]
        out.append((x, torch.zeros(size, dtype=torch.long)))
    return out


@functools.cache
def tiny_onnx(folder: Path) -> Path:
    """Conv -> Relu -> pool -> Gemm on (N, 1, 8, 8), built directly (no export)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32), "conv.weight"),
             numpy_helper.from_array(rng.normal(0, 0.5, (3, 4)).astype(np.float32), "fc.weight")]
    nodes = [helper.make_node("Conv", ["input", "conv.weight"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc.weight"], ["output"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *SHAPE])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "fp32.onnx"))
    return folder / "fp32.onnx"


@pytest.fixture(scope="module")
def graph(tmp_path_factory) -> Path:
    return tiny_onnx(tmp_path_factory.mktemp("bad-quantize"))


class Branchy(nn.Module):
    """Branches on a tensor's value: torch.export cannot capture it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.sum() > 0 else x - 1


class Exportless(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.gate = Branchy()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gate(self.stem(x)))


# (id, call(graph, out) -> None, error type, needles)
API_CASES = [
    ("static-batches-zero", lambda g, o: static_int8(g, batches(), out=o, calibration_batches=0), OptionsError,
     ["quantize.static_int8", "calibration_batches = 0", "greater than 0"]),
    ("static-batches-negative", lambda g, o: static_int8(g, batches(), out=o, calibration_batches=-3), OptionsError,
     ["calibration_batches = -3", "greater than 0"]),
    ("static-batches-nan", lambda g, o: static_int8(g, batches(), out=o, calibration_batches=float("nan")),
     OptionsError, ["calibration_batches = NaN", "valid integer"]),
    ("static-batches-bool", lambda g, o: static_int8(g, batches(), out=o, calibration_batches=True), OptionsError,
     ["calibration_batches = true", "valid integer"]),
    ("static-method-unknown", lambda g, o: static_int8(g, batches(), out=o, calibration_method="minmaxx"),
     OptionsError, ['calibration_method = "minmaxx"', "did you mean 'minmax'", "'entropy' or 'percentile'"]),
    ("static-operands-unknown", lambda g, o: static_int8(g, batches(), out=o, operand_types="u8u8"), OptionsError,
     ['operand_types = "u8u8"', "'auto', 'u8s8' or 's8s8'"]),
    ("static-percentile-over-100", lambda g, o: static_int8(g, batches(), out=o, calibration_method="percentile",
                                                            percentile=150),
     OptionsError, ["percentile = 150", "less than or equal to 100"]),
    ("static-percentile-nan", lambda g, o: static_int8(g, batches(), out=o, calibration_method="percentile",
                                                       percentile=float("nan")),
     OptionsError, ["percentile = NaN", "finite number"]),
    ("static-per-channel-text", lambda g, o: static_int8(g, batches(), out=o, per_channel="no"), OptionsError,
     ['per_channel = "no"', "valid boolean"]),
    ("static-calibration-inf", lambda g, o: static_int8(g, batches(3, bad=(2, 1, float("inf"))), out=o,
                                                        calibration_batches=3),
     CalibrationError, ["Calibration batch 2", "NaN or Inf", "sample 1"]),
    ("static-calibration-none", lambda g, o: static_int8(g, None, out=o), CalibrationError,
     ["needs calibration data", "DataLoader"]),
    ("static-calibration-not-iterable", lambda g, o: static_int8(g, 42, out=o), CalibrationError,
     ["iterable of batches", "DataLoader", "of type int"]),
    ("static-calibration-shape", lambda g, o: static_int8(g, [(torch.randn(4, 3, 8, 8), torch.zeros(4))], out=o),
     CalibrationError, ["shape (4, 3, 8, 8)", "takes (N, 1, 8, 8)"]),
    ("static-keep-fp32-unknown", lambda g, o: static_int8(g, batches(), out=o, keep_fp32=["fcc"]), TorchSlimError,
     ["keep_fp32", "'fcc'", "Did you mean 'fc'"]),
    ("static-not-exportable", lambda g, o: static_int8(Exportless(), batches(), out=o), ExportError,
     ["gate", "Branchy"]),
    ("static-not-a-model", lambda g, o: static_int8(42, batches(), out=o), TorchSlimError,
     ["Cannot quantize a int", "nn.Module", ".onnx"]),
    ("dynamic-op-type-unknown", lambda g, o: dynamic_int8(g, out=o, op_types=["Conv2d"]), OptionsError,
     ['op_types[0] = "Conv2d"', "did you mean 'Conv'", "'MatMul', 'Conv'"]),
    ("dynamic-op-types-empty", lambda g, o: dynamic_int8(g, out=o, op_types=[]), OptionsError,
     ["op_types = []", "at least 1 item"]),
    ("dynamic-per-channel-number", lambda g, o: dynamic_int8(g, out=o, per_channel=2), OptionsError,
     ["per_channel = 2", "valid boolean"]),
]


@pytest.mark.parametrize(("call", "error", "needles"), [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_bad_quantize_argument(sandbox, graph, call, error, needles):
    exc = sandbox.call(lambda: call(graph, sandbox.out), error)
    sandbox.expect_message(exc, *needles)
    assert not sandbox.out.exists(), "a refused call must not create its output"


@pytest.mark.parametrize("quantize", ["static", "dynamic"])
def test_out_is_a_file_before_any_work(sandbox, graph, quantize):
    blocker = sandbox.inputs / "taken"
    blocker.write_text("x")
    calls = {"static": lambda out: static_int8(graph, batches(), out=out),
             "dynamic": lambda out: dynamic_int8(graph, out=out)}
    sandbox.expect_message(sandbox.call(lambda: calls[quantize](blocker), TorchSlimError),
                           "out=", "taken", "is a file", "directory")
    sandbox.expect_message(sandbox.call(lambda: calls[quantize](blocker / "int8.onnx"), TorchSlimError),
                           "cannot be created", "is a file")
    assert blocker.read_text() == "x"


@pytest.mark.parametrize(("argv", "needles"), [
    (["--calibration-batches", "-3"], ["--calibration-batches = -3", "greater than 0"]),
    (["--calibration-batches", "nan"], ["--calibration-batches = NaN", "valid integer"]),
    (["--calibration-method", "minmaxx"], ['--calibration-method = "minmaxx"', "did you mean 'minmax'", "'percentile'"]),
    (["--mode", "dynamic", "--calibration-method", "percentile"], ["--calibration-method", "--mode dynamic"]),
], ids=["cli-batches-negative", "cli-batches-nan", "cli-calibration-unknown", "cli-dynamic-percentile"])
def test_bad_quantize_flag(sandbox, graph, argv, needles):
    sandbox.expect_exit_2(sandbox.cli("quantize", graph, *argv, "--out", sandbox.out), *needles)
    assert not sandbox.out.exists()
