"""Bad INT8, QAT and export options, in each front end: the library (``OptionsError``), the CLI
(exit 2, the flag named) and a recipe (``recipe.yaml:<line>``), with the same words.

Covers the options the typed configs added or renamed (``calibration_method``, ``operand_types``,
``preprocess_graph``, ``percentile`` with its method, ``op_types``, the QAT training and KD options,
the export tolerances) and the old names, which are refused with the new one suggested. Every case
fails validation before any export, calibration or training, and writes nothing.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from torchslim import export, models, save_model
from torchslim.options import DynamicInt8Config, OptionsError
from torchslim.pipeline import RecipeError, load_recipe
from torchslim.quantize import dynamic_int8, prepare_qat, qat_int8, run_qat, static_int8


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return models.create("cnn-tiny", num_classes=4, in_channels=1)


def _batches() -> list:
    return [(torch.randn(4, 1, 12, 12), torch.zeros(4, dtype=torch.long)) for _ in range(2)]


# (id, call(out) -> None, needles): each refused with OptionsError before any work
API_CASES = [
    ("static-old-batches", lambda o: static_int8(_cnn(), _batches(), out=o, batches=2),
     ["quantize.static_int8", "unknown option 'batches'", "Did you mean 'calibration_batches'"]),
    ("static-old-method", lambda o: static_int8(_cnn(), _batches(), out=o, method="entropy"),
     ["unknown option 'method'", "Did you mean 'calibration_method'"]),
    ("static-old-preprocess", lambda o: static_int8(_cnn(), _batches(), out=o, preprocess=False),
     ["unknown option 'preprocess'", "Did you mean 'preprocess_graph'"]),
    ("static-preprocess-graph-text", lambda o: static_int8(_cnn(), _batches(), out=o, preprocess_graph="yes"),
     ['preprocess_graph = "yes" is invalid', "valid boolean"]),
    ("static-percentile-without-method", lambda o: static_int8(_cnn(), _batches(), out=o, percentile=99.0),
     ["percentile = 99.0 is used by calibration_method percentile only", "calibration_method is minmax"]),
    ("static-config-of-another-method", lambda o: static_int8(_cnn(), _batches(), out=o, config=DynamicInt8Config()),
     ["config must be a StaticInt8Config", "got DynamicInt8Config"]),
    ("dynamic-calibration-batches", lambda o: dynamic_int8(_cnn(), out=o, calibration_batches=2),
     ["quantize.dynamic_int8", "unknown option 'calibration_batches'", "op_types"]),
    ("dynamic-op-type-gemm", lambda o: dynamic_int8(_cnn(), out=o, op_types="Gemm"),
     ['op_types[0] = "Gemm" is invalid', "'MatMul', 'Conv', 'Attention', 'LSTM' or 'Gather'"]),
    ("qat-old-momentum", lambda o: prepare_qat(_cnn(), momentum=0.1),
     ["quantize.prepare_qat", "unknown option 'momentum'", "Did you mean 'range_momentum'"]),
    ("qat-range-momentum-zero", lambda o: prepare_qat(_cnn(), range_momentum=0),
     ["range_momentum = 0 is invalid", "greater than 0"]),
    ("qat-range-momentum-learned", lambda o: prepare_qat(_cnn(), ranges="learn", range_momentum=0.1),
     ["range_momentum = 0.1 averages observed ranges", "ranges is learn"]),
    ("qat-int8-old-batches", lambda o: qat_int8(prepare_qat(_cnn()), _batches(), out=o, batches=2),
     ["quantize.qat_int8", "unknown option 'batches'", "Valid:", "calibration_batches"]),
    ("qat-epochs-zero", lambda o: run_qat(_cnn(), _batches(), _batches(), out=o, epochs=0),
     ["quantize.run_qat", "epochs = 0 is invalid", "greater than 0"]),
    ("qat-lr-negative", lambda o: run_qat(_cnn(), _batches(), _batches(), out=o, lr=-0.1),
     ["lr = -0.1 is invalid", "greater than 0"]),
    ("qat-schedule-unknown", lambda o: run_qat(_cnn(), _batches(), _batches(), out=o, schedule="cosin"),
     ['schedule = "cosin" is invalid', "did you mean 'cosine'"]),
    ("qat-kd-weight-over-1", lambda o: run_qat(_cnn(), _batches(), _batches(), out=o, teacher="source",
                                               kd_weight=1.5),
     ["kd_weight = 1.5 is invalid", "less than or equal to 1"]),
    ("qat-kd-temperature-zero", lambda o: run_qat(_cnn(), _batches(), _batches(), out=o, teacher="source",
                                                  T=0),
     ["T = 0 is invalid", "greater than 0"]),
    ("qat-kd-without-teacher", lambda o: run_qat(_cnn(), _batches(), _batches(), out=o, T=2.0),
     ["T sets the distillation term, but teacher is none"]),
    ("qat-teacher-unknown", lambda o: run_qat(_cnn(), _batches(), _batches(), out=o, teacher="no-such-teacher"),
     ["teacher = 'no-such-teacher' is neither source", "shipped model", "checkpoint directory"]),
    ("export-opset-zero", lambda o: export.onnx(_cnn(), torch.randn(2, 1, 12, 12), o / "m.onnx", opset=0),
     ["export.onnx", "opset = 0 is invalid", "greater than 0"]),
    ("export-check-batches-negative", lambda o: export.onnx(_cnn(), torch.randn(2, 1, 12, 12), o / "m.onnx",
                                                            check_batches=-1),
     ["check_batches = -1 is invalid", "greater than or equal to 0"]),
    ("export-atol-nan", lambda o: export.onnx(_cnn(), torch.randn(2, 1, 12, 12), o / "m.onnx", atol=float("nan")),
     ["atol = NaN is invalid", "finite number"]),
    ("export-old-tolerance", lambda o: export.onnx(_cnn(), torch.randn(2, 1, 12, 12), o / "m.onnx", tolerance=1),
     ["unknown option 'tolerance'", "Valid: opset, check_batches, atol, rtol"]),
]


@pytest.mark.parametrize(("call", "needles"), [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_bad_option_in_the_library(sandbox, call, needles):
    sandbox.expect_message(sandbox.call(lambda: call(sandbox.out), OptionsError), *needles)
    assert not sandbox.out.exists()


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """An untrained cnn-tiny checkpoint on the synthetic data (nothing is trained or exported)."""
    data = {"name": "synthetic", "kwargs": {"batch_size": 8, "num_classes": 4, "shape": [1, 12, 12],
                                            "train_size": 16, "val_size": 0, "test_size": 16}}
    return save_model(_cnn(), tmp_path_factory.mktemp("bad-quantize-options") / "ckpt", {"data": data})


# (id, argv after the command's SOURCE, needles): exit 2 naming the flag
CLI_CASES = [
    ("quantize-old-calibration", ["quantize", "--calibration", "minmax"],
     ["ambiguous option: --calibration", "--calibration-method"]),
    ("quantize-old-operands", ["quantize", "--operands", "u8s8"], ["unrecognized arguments: --operands"]),
    ("quantize-percentile-zero", ["quantize", "--calibration-method", "percentile", "--percentile", "0"],
     ["--percentile = 0 is invalid", "greater than 0"]),
    ("quantize-percentile-without-method", ["quantize", "--percentile", "99"],
     ["percentile = 99.0 is used by calibration_method percentile only"]),
    ("quantize-op-type-gemm", ["quantize", "--mode", "dynamic", "--op-types", "Gemm"],
     ['--op-types[0] = "Gemm" is invalid', "'MatMul', 'Conv'"]),
    ("quantize-dynamic-operand-types", ["quantize", "--mode", "dynamic", "--operand-types", "u8s8"],
     ["--operand-types applies to --mode static", "--mode dynamic"]),
    ("quantize-static-op-types", ["quantize", "--op-types", "Conv"], ["--op-types applies to --mode dynamic"]),
    ("qat-epochs-zero", ["qat", "--epochs", "0"], ["--epochs = 0 is invalid", "greater than 0"]),
    ("qat-schedule-unknown", ["qat", "--schedule", "linear"], ['--schedule = "linear" is invalid', "'cosine'"]),
    ("qat-ranges-unknown", ["qat", "--ranges", "learnt"], ['--ranges = "learnt" is invalid', "did you mean 'learn'"]),
    ("qat-range-momentum-over-1", ["qat", "--range-momentum", "2"],
     ["--range-momentum = 2 is invalid", "less than or equal to 1"]),
    ("qat-range-momentum-learned", ["qat", "--ranges", "learn", "--range-momentum", "0.1"],
     ["range_momentum = 0.1 averages observed ranges"]),
    ("qat-kd-weight-over-1", ["qat", "--teacher", "source", "--kd-weight", "1.5"],
     ["--kd-weight = 1.5 is invalid", "less than or equal to 1"]),
    ("qat-kd-temperature-zero", ["qat", "--teacher", "source", "--T", "0"],
     ["--T = 0 is invalid", "greater than 0"]),
    ("qat-kd-without-teacher", ["qat", "--T", "2"], ["T sets the distillation term"]),
    ("qat-teacher-unknown", ["qat", "--teacher", "no-such-teacher"],
     ["--teacher = 'no-such-teacher' is neither source"]),
    ("qat-dynamic-flag", ["qat", "--op-types", "MatMul"], ["unrecognized arguments: --op-types"]),
    ("export-opset-zero", ["export", "--opset", "0"], ["--opset = 0 is invalid", "greater than 0"]),
    ("export-atol-negative", ["export", "--atol", "-1"], ["--atol = -1 is invalid", "greater than or equal to 0"]),
    ("export-rtol-nan", ["export", "--rtol", "nan"], ["--rtol = NaN is invalid", "finite number"]),
    ("export-check-batches-text", ["export", "--check-batches", "two"],
     ['--check-batches = "two" is invalid', "valid integer"]),
]


@pytest.mark.parametrize(("argv", "needles"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_bad_option_on_the_command_line(sandbox, source, argv, needles):
    command, *flags = argv
    sandbox.expect_exit_2(sandbox.cli(command, source, *flags, "--out", sandbox.out), *needles)
    assert not sandbox.out.exists()


HEAD = "version: 1\nname: bad\ndata: {name: synthetic, batch_size: 32}\nteacher: TEACHER\nstrategies:\n  s:\n    - load\n"

# (id, the last step's YAML, needles): refused at the step's line
RECIPE_CASES = [
    ("quantize-old-calibration", "quantize: {calibration: minmax}",
     ["unknown key", "quantize.calibration'", "Did you mean 'calibration_method'"]),
    ("quantize-old-operands", "quantize: {operands: u8s8}",
     ["unknown key", "quantize.operands'", "Did you mean 'operand_types'"]),
    ("quantize-dynamic-with-calibration", "quantize: {mode: dynamic, calibration_method: entropy}",
     ["calibration_method applies to mode static, but mode is dynamic"]),
    ("quantize-static-with-op-types", "quantize: {op_types: [Conv]}", ["op_types applies to mode dynamic"]),
    ("quantize-percentile-without-method", "quantize: {percentile: 99.0}",
     ["percentile = 99.0 is used by calibration_method percentile only"]),
    ("quantize-preprocess-graph-text", "quantize: {preprocess_graph: maybe}",
     ['preprocess_graph = "maybe" is invalid', "valid boolean"]),
    ("qat-epochs-zero", "qat: {epochs: 0}", ["qat.epochs = 0 is invalid", "greater than 0"]),
    ("qat-kd-weight-over-1", "qat: {teacher: source, kd_weight: 1.5}",
     ["qat.kd_weight = 1.5 is invalid", "less than or equal to 1"]),
    ("qat-kd-without-teacher", "qat: {T: 2}", ["T sets the distillation term"]),
    ("qat-ranges-unknown", "qat: {ranges: learnt}", ['qat.ranges = "learnt" is invalid', "did you mean 'learn'"]),
    ("qat-old-momentum", "qat: {momentum: 0.1}", ["unknown key", "qat.momentum'", "Did you mean 'range_momentum'"]),
    ("export-atol-negative", "export: {atol: -1}", ["export.atol = -1 is invalid", "greater than or equal to 0"]),
    ("export-check-batches-float", "export: {check_batches: 1.5}",
     ["export.check_batches = 1.5 is invalid", "valid integer"]),
]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return save_model(_cnn(), tmp_path_factory.mktemp("bad-quantize-options-teacher") / "teacher")


@pytest.mark.parametrize(("step", "needles"), [c[1:] for c in RECIPE_CASES], ids=[c[0] for c in RECIPE_CASES])
def test_bad_option_in_a_recipe(sandbox, teacher, step, needles):
    path = sandbox.inputs / "recipe.yaml"
    path.write_text(textwrap.dedent(HEAD).replace("TEACHER", str(teacher)) + f"    - {step}\n")
    where = f"recipe.yaml:{HEAD.count(chr(10)) + 1}"
    sandbox.expect_message(sandbox.call(lambda: load_recipe(path), RecipeError), where, *needles)
    sandbox.expect_exit_2(sandbox.cli("run", path, "--out", sandbox.out, "--quiet"), where, *needles)
    assert not sandbox.out.exists()
