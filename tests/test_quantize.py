"""torchslim.quantize (post-training): static and dynamic INT8 artifacts that plain onnxruntime runs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import onnx
import pytest
import torch

from onnx_cases import SHAPE, bundle, cnn, cnn_onnx, mlp, static_artifact, workdir
from torchslim import evaluate
from torchslim.core.errors import CorruptFileError, TorchSlimError
from torchslim.options import OptionsError, StaticInt8Config
from torchslim.quantize import CalibrationError, SlowKernelWarning, choose, dynamic_int8, static_int8
from torchslim.runtime import OnnxModel

pytestmark = pytest.mark.usefixtures("one_thread")


def ops_of(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_static_artifact_is_qdq_int8_with_a_full_record():
    art = OnnxModel(static_artifact())
    assert art.kernel == "INT8 QDQ U8S8 per-channel" and art.runtime == "onnxruntime"
    ops = ops_of(art.path)
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    weights = [i for i in onnx.load(str(art.path)).graph.initializer if i.name.endswith("weight_quantized")]
    assert weights and all(w.data_type == onnx.TensorProto.INT8 for w in weights)
    info = json.loads((static_artifact() / "model.json").read_text())
    q = info["quantization"]
    assert (info["format"], info["mode"], q["format"], q["per_channel"]) == ("torchslim-int8/1", "static", "QDQ", True)
    calibration = dict(q["calibration"])
    assert calibration.pop("samples_per_run") >= 32  # a tiny model's batch of 32 is one calibration run
    assert calibration == {"method": "minmax", "batches": 2, "samples": 64}
    assert (q["operands"], q["activation"], q["weight"]) == ("U8S8", "uint8", "int8") and q["reason"]
    assert info["cpu"]["machine"] and isinstance(info["cpu"]["flags"], list)
    assert info["source"]["kind"] == "onnx" and info["onnx"]["sha256"] and info["versions"]["onnxruntime"]
    assert info["sizes"]["int8_onnx_bytes"] == art.path.stat().st_size < info["sizes"]["fp32_onnx_bytes"]
    acc = info["accuracy"]
    assert acc["int8"]["n"] == acc["fp32_onnx"]["n"] == 128
    assert abs(acc["delta_points"]) <= 5.0  # a trained model keeps its accuracy within a few samples
    assert evaluate(art, bundle().test)["accuracy"] == pytest.approx(acc["int8"]["accuracy"])


def test_plain_onnxruntime_runs_the_artifact_without_torchslim(tmp_path):
    x = torch.randn(3, *SHAPE)
    np.save(tmp_path / "x.npy", x.numpy())
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import onnxruntime as ort
        session = ort.InferenceSession({str(static_artifact() / 'model.onnx')!r}, providers=["CPUExecutionProvider"])
        (out,) = session.run(None, {{"input": np.load({str(tmp_path / 'x.npy')!r})}})
        np.save({str(tmp_path / 'out.npy')!r}, out)
        assert not any(m.startswith(("torch", "torchslim")) for m in sys.modules), "torch was imported"
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    out = np.load(tmp_path / "out.npy")
    assert out.shape == (3, 4)
    np.testing.assert_allclose(out, OnnxModel(static_artifact())(x).numpy(), atol=1e-5)


@pytest.mark.slow
def test_static_from_a_module_exports_and_records_the_check(tmp_path):
    art = static_int8(cnn(), bundle().train, out=tmp_path / "int8.onnx", calibration_batches=1,
                      calibration_method="percentile", keep_fp32=["fc"])
    info = art.info
    assert art.path == tmp_path / "int8.onnx" and (tmp_path / "int8.json").is_file()
    assert info["source"]["kind"] == "torch" and info["source"]["export"]["max_abs_error"] < 1e-4
    assert info["quantization"]["calibration"]["percentile"] == 99.999
    graph = onnx.load(str(art.path)).graph
    fc = [n for n in graph.node if n.op_type == "Gemm"]
    assert len(fc) == 1 and fc[0].name in info["quantization"]["keep_fp32"]["nodes"]
    inits = {i.name for i in graph.initializer}
    assert any(name in inits for name in fc[0].input[1:2])  # the classifier's weight stayed an FP32 initializer


def test_entropy_calibration_runs():
    art = static_int8(cnn_onnx(), bundle().train, out=workdir() / "entropy", calibration_batches=1,
                      calibration_method="entropy")
    assert art.info["quantization"]["calibration"]["method"] == "entropy" and art.kernel.startswith("INT8 QDQ")


def test_calibration_with_zero_batches_is_refused(tmp_path):
    with pytest.raises(OptionsError, match="calibration_batches = 0 is invalid: Input should be greater than 0"):
        static_int8(cnn_onnx(), bundle().train, out=tmp_path, calibration_batches=0)
    with pytest.raises(CalibrationError, match="yielded no batches"):
        static_int8(cnn_onnx(), [], out=tmp_path, calibration_batches=4)
    assert list(tmp_path.iterdir()) == []


def test_a_calibration_loader_that_does_not_fit_the_model_is_named(tmp_path):
    wrong = [(torch.randn(8, 3, 12, 12), torch.zeros(8, dtype=torch.long))]
    with pytest.raises(CalibrationError, match=r"shape \(8, 3, 12, 12\), but the model's input 'input' takes "
                                               r"\(N, 1, 12, 12\)"):
        static_int8(cnn_onnx(), wrong, out=tmp_path, calibration_batches=1)
    with pytest.raises(CalibrationError, match=r"\(8, 3, 12, 12\)"):  # a torch model: checked before export
        static_int8(cnn(), wrong, out=tmp_path, calibration_batches=1, example_input=torch.randn(2, *SHAPE))
    assert list(tmp_path.iterdir()) == []


def test_a_corrupted_onnx_source_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(cnn_onnx().read_bytes()[:500])
    with pytest.raises(CorruptFileError, match="not a valid ONNX model"):
        static_int8(bad, bundle().train, out=tmp_path / "out", calibration_batches=1)
    assert not (tmp_path / "out").exists()


def test_unknown_names_are_named(tmp_path):
    with pytest.raises(TorchSlimError, match="'fcc' names no module.*Did you mean 'fc'"):
        static_int8(cnn_onnx(), bundle().train, out=tmp_path, calibration_batches=1, keep_fp32=["fcc"])
    with pytest.raises(OptionsError, match="did you mean 'entropy'"):
        static_int8(cnn_onnx(), bundle().train, out=tmp_path, calibration_method="entropi")
    with pytest.raises(TorchSlimError, match="already quantized"):
        static_int8(static_artifact(), bundle().train, out=tmp_path)


def test_s8s8_where_it_is_slow_is_allowed_with_a_warning(tmp_path, monkeypatch):
    from torchslim.quantize import operands

    cpu = {"arch": "x86", "flags": ["avx2", "fma"], "model": "a CPU without VNNI"}
    monkeypatch.setattr(operands, "_cpu", lambda: dict(cpu))
    with pytest.warns(SlowKernelWarning, match="S8S8 on x86 with no VNNI.*has no fast ONNX Runtime kernel"):
        art = static_int8(cnn_onnx(), bundle().train, out=tmp_path, calibration_batches=1, operand_types="s8s8")
    q = art.info["quantization"]
    assert art.kernel == "INT8 QDQ S8S8 per-channel" and q["operands"] == "S8S8"
    assert q["reason"].startswith("asked for; slow here") and q["reduce_range"] is True


@pytest.mark.parametrize(("cpu", "label", "reduce", "warns"), [
    ({"arch": "x86", "flags": ["avx2"]}, "U8S8", True, False),
    ({"arch": "x86", "flags": ["avx2", "avx512_vnni"]}, "U8S8", False, False),
    ({"arch": "arm", "flags": ["asimddp"]}, "S8S8", False, False),
])
def test_operand_types_follow_the_cpu(cpu, label, reduce, warns):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ops = choose("auto", cpu)
    assert (ops.label, ops.reduce_range) == (label, reduce) and ops.reason


@pytest.mark.slow
def test_dynamic_int8_quantizes_every_linear_of_an_mlp(tmp_path):
    art = dynamic_int8(mlp(), out=tmp_path, data=bundle().train, test_data=bundle().test)
    ops = ops_of(art.path)
    assert ops.count("MatMulInteger") == 3 and "Gemm" not in ops  # three Linears, Gemm rewritten first
    q = art.info["quantization"]
    assert art.kernel == "INT8 dynamic U8S8 per-channel" and q["gemm_rewritten_to_matmul"] == 3
    assert q["int8_layers"] == {"MatMulInteger": 3} and q["fp32_layers"] == {}
    assert art.info["sizes"]["ratio"] > 2.5
    assert abs(art.info["accuracy"]["delta_points"]) <= 3.0
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        assert (art(x).argmax(1) == mlp()(x).argmax(1)).float().mean() >= 0.75


def _initializers(path) -> dict[str, np.ndarray]:
    return {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def _sample_bytes() -> int:
    from torchslim.quantize import ranges

    return ranges.activation_bytes(onnx.shape_inference.infer_shapes(onnx.load(str(cnn_onnx()))), SHAPE)


def test_calibration_in_small_runs_gives_the_same_minmax_ranges(tmp_path, monkeypatch):
    from torchslim.quantize import ranges

    whole = static_int8(cnn_onnx(), bundle().train, out=tmp_path / "whole", calibration_batches=3)
    monkeypatch.setattr(ranges, "RUN_BYTES", 7 * _sample_bytes())  # about 7 samples per run: 5 runs a batch
    pieces = static_int8(cnn_onnx(), bundle().train, out=tmp_path / "pieces", calibration_batches=3)
    assert pieces.info["quantization"]["calibration"]["samples_per_run"] < 16
    assert whole.info["quantization"]["calibration"]["samples_per_run"] >= 32
    a, b = _initializers(whole.path), _initializers(pieces.path)
    assert a.keys() == b.keys() and any(name.endswith("_scale") for name in a)
    for name in a:  # every scale and zero point: a minimum of minima is the minimum
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_a_one_shot_iterator_calibrates_like_its_list(tmp_path):
    listed = list(bundle().train)[:2]
    from_list = static_int8(cnn_onnx(), listed, out=tmp_path / "list", calibration_batches=2)
    from_iterator = static_int8(cnn_onnx(), iter(listed), out=tmp_path / "iter", calibration_batches=2)
    assert from_iterator.info["quantization"]["calibration"]["samples"] == 64
    a, b = _initializers(from_list.path), _initializers(from_iterator.path)
    assert all(np.array_equal(a[name], b[name]) for name in a)


def test_entropy_calibration_folds_each_run_into_its_histograms(tmp_path, monkeypatch):
    from torchslim.quantize import ranges

    monkeypatch.setattr(ranges, "RUN_BYTES", 16 * _sample_bytes())
    art = static_int8(cnn_onnx(), bundle().train, out=tmp_path, calibration_batches=2, calibration_method="entropy")
    assert art.info["quantization"]["calibration"]["samples_per_run"] < 32  # several runs per batch, each folded in
    fp32 = json.loads((static_artifact() / "model.json").read_text())["accuracy"]["fp32_onnx"]["accuracy"]
    assert art.kernel.startswith("INT8 QDQ") and abs(evaluate(art, bundle().test)["accuracy"] - fp32) <= 5.0


def test_a_config_and_its_keywords_build_the_same_artifact(tmp_path):
    config = StaticInt8Config(calibration_batches=2, calibration_method="percentile", percentile=99.9)
    by_config = static_int8(cnn_onnx(), bundle().train, out=tmp_path / "config", config=config)
    by_keywords = static_int8(cnn_onnx(), bundle().train, out=tmp_path / "keywords", calibration_batches=2,
                              calibration_method="percentile", percentile=99.9)
    overlaid = static_int8(cnn_onnx(), bundle().train, out=tmp_path / "overlaid", config=config, calibration_batches=1)
    assert by_config.info["quantization"]["calibration"]["percentile"] == 99.9
    a, b = _initializers(by_config.path), _initializers(by_keywords.path)
    assert a.keys() == b.keys() and all(np.array_equal(a[name], b[name]) for name in a)
    calibration = overlaid.info["quantization"]["calibration"]  # the keyword laid over the config's options
    assert (calibration["batches"], calibration["method"], calibration["percentile"]) == (1, "percentile", 99.9)
