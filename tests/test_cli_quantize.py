"""`torchslim quantize` and `torchslim eval` on INT8 artifacts, end to end on tiny synthetic data."""

from __future__ import annotations

import json

import pytest

from onnx_cases import CLASSES, SHAPE, cnn, cnn_onnx
from torchslim.cli import main
from torchslim.models.checkpoint import save_model

DATA = {"name": "synthetic", "kwargs": {"batch_size": 32, "num_classes": CLASSES, "shape": list(SHAPE),
                                        "train_size": 256, "val_size": 0, "test_size": 128, "seed": 0}}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_model(cnn(), tmp_path_factory.mktemp("ckpt"), {"data": DATA})


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory):
    """The FP32 export with a sidecar naming its data, as `torchslim quantize` reads it."""
    path = tmp_path_factory.mktemp("fp32") / "fp32.onnx"
    path.write_bytes(cnn_onnx().read_bytes())
    path.with_suffix(".json").write_text(json.dumps({"data": DATA}))
    return path


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, " ".join(out.err.split())


@pytest.mark.slow
def test_quantize_static_then_eval_beside_the_source(checkpoint, tmp_path, capsys):
    out = tmp_path / "int8"
    code, text, err = run(capsys, "quantize", checkpoint, "--mode", "static", "--calibration-batches", 2,
                          "--calibration-method", "percentile", "--keep-fp32", "fc", "--out", out)
    assert code == 0, err
    assert "INT8 QDQ U8S8 per-channel" in text and "test accuracy on onnxruntime" in text
    info = json.loads((out / "model.json").read_text())
    assert info["data"] == DATA and info["quantization"]["calibration"]["method"] == "percentile"
    assert info["accuracy"]["int8"]["n"] == 128 and info["quantization"]["keep_fp32"]["requested"] == ["fc"]

    code, text, err = run(capsys, "eval", checkpoint, out, "--json", "--batch-sizes", 1, "--thread-counts", 1,
                          "--rounds", 2, "--max-seconds", 2)
    assert code == 0, err
    source, int8 = json.loads(text)
    assert (source["runtime"], int8["runtime"]) == ("torch-eager", "onnxruntime")
    assert int8["bytes"] == (out / "model.onnx").stat().st_size and int8["extra"]["kernel"].startswith("INT8")
    assert int8["accuracy"] == pytest.approx(info["accuracy"]["int8"]["accuracy"]) and int8["test_samples"] == 128
    assert int8["macs"] == source["macs"]


def test_quantize_an_onnx_file_dynamically(fp32_onnx, tmp_path, capsys):
    code, text, err = run(capsys, "quantize", fp32_onnx, "--mode", "dynamic", "--no-eval", "--out", tmp_path / "dyn")
    assert code == 0, err
    assert "left in FP32 by dynamic INT8: 4 Conv" in text  # only the classifier is a MatMul
    assert json.loads((tmp_path / "dyn" / "model.json").read_text())["accuracy"] is None


@pytest.mark.parametrize(("extra", "message"), [
    (["--calibration-batches", "0"], "--calibration-batches = 0 is invalid: Input should be greater than 0"),
    (["--mode", "qat"], "--mode qat: quantization-aware training is its own command, `torchslim qat"),
    (["--keep-fp32", "fcc"], "Did you mean 'fc'"),
    (["--calibration-method", "minmix"], "did you mean 'minmax'"),
    (["--mode", "dynamic", "--percentile", "99"], "--percentile applies to --mode static, but this is --mode dynamic"),
])
def test_bad_input_exits_2(fp32_onnx, tmp_path, capsys, extra, message):
    code, _, err = run(capsys, "quantize", fp32_onnx, "--out", tmp_path / "bad", *extra)
    assert code == 2 and message in err, err
    assert not (tmp_path / "bad" / "model.onnx").exists()


def test_an_existing_artifact_is_not_overwritten(fp32_onnx, tmp_path, capsys):
    (tmp_path / "model.onnx").write_bytes(b"keep")
    code, _, err = run(capsys, "quantize", fp32_onnx, "--out", tmp_path)
    assert code == 2 and "--force" in err and (tmp_path / "model.onnx").read_bytes() == b"keep"


def test_a_loader_of_other_data_is_named(tmp_path, capsys):
    code, _, err = run(capsys, "quantize", cnn_onnx(), "--data", "synthetic", "--out", tmp_path)  # 16x16 images
    assert code == 2 and "shape (64, 1, 16, 16), but the model's input 'input' takes (N, 1, 12, 12)" in err


def test_s8s8_warns_on_this_cpu_when_slow(fp32_onnx, tmp_path, capsys, monkeypatch):
    from torchslim.quantize import operands

    monkeypatch.setattr(operands, "_cpu", lambda: {"arch": "x86", "flags": ["avx2"], "model": "no VNNI"})
    code, text, err = run(capsys, "quantize", fp32_onnx, "--operand-types", "s8s8", "--calibration-batches", 1,
                          "--no-eval", "--out", tmp_path / "s8")
    assert code == 0 and "warning: INT8 operands S8S8 were asked for, but S8S8 on x86 with no VNNI" in err
    assert "INT8 QDQ S8S8" in text


@pytest.mark.slow
def test_quantize_qat_with_the_source_as_teacher(checkpoint, tmp_path, capsys):
    out = tmp_path / "qat"
    code, text, err = run(capsys, "qat", checkpoint, "--epochs", 1, "--teacher", "source",
                          "--calibration-batches", 2, "--threads", 1, "--out", out)
    assert code == 0, err
    info = json.loads((out / "model.json").read_text())
    assert info["mode"] == "qat" and info["qat"]["training"]["teacher"] == str(checkpoint)
    assert info["qat"]["training"]["epochs"] == 1 and "distilled from" in text
    assert info["qat"]["training"]["losses"] == "0.9 kd(T=4) + 0.1 ce"  # the KD term's defaults


@pytest.mark.parametrize(("extra", "message"), [
    (["--kd-weight", "0.5"], "kd_weight sets the distillation term, but teacher is none"),
    (["--teacher", "no-such-teacher"], "--teacher = 'no-such-teacher' is neither source"),
    (["--teacher", "source"], "torchslim qat trains the torch model"),
], ids=["kd-without-teacher", "teacher-unknown", "onnx-source"])
def test_qat_refuses_bad_input_before_training(fp32_onnx, tmp_path, capsys, extra, message):
    code, _, err = run(capsys, "qat", fp32_onnx, "--out", tmp_path / "bad", *extra)
    assert code == 2 and message in err, err
    assert not (tmp_path / "bad" / "model.onnx").exists()
