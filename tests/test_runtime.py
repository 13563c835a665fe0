"""torchslim.runtime: torch and ONNX Runtime behind one interface, measured like modules."""

from __future__ import annotations

import json

import pytest
import torch

from onnx_cases import SHAPE, bundle, cnn, cnn_onnx
from torchslim import evaluate, runtime
from torchslim.core.errors import CorruptFileError, TorchSlimError
from torchslim.measure import count_macs, measure_many
from torchslim.runtime import OnnxModel, TorchModel

FAST = {"warmup": 1, "repeats": 2}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_onnx_model_runs_tensors_like_the_torch_model():
    model = OnnxModel(cnn_onnx(), threads=1)
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        expected = cnn()(x)
    out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 4)
    assert torch.allclose(out, expected, atol=1e-4)
    assert (model.runtime, model.kernel, model.threads) == ("onnxruntime", "FP32", 1)
    assert evaluate(model, bundle().test) == pytest.approx(evaluate(cnn(), bundle().test), abs=1e-3)


def test_changing_threads_creates_a_new_session():
    model = OnnxModel(cnn_onnx(), threads=1)
    first = model._session
    model.set_threads(1)
    assert model._session is first
    model.set_threads(2)
    assert model._session is not first and model.threads == 2
    assert model._session.get_session_options().intra_op_num_threads == 2


def test_save_and_load_round_trip(tmp_path):
    onnx_model = OnnxModel(cnn_onnx())
    saved = onnx_model.save(tmp_path / "copy")
    assert saved == tmp_path / "copy" / "model.onnx"
    record = json.loads((tmp_path / "copy" / "model.json").read_text())
    assert record["onnx"]["bytes"] == saved.stat().st_size
    again = runtime.load(tmp_path / "copy", threads=1)
    assert isinstance(again, OnnxModel)
    x = torch.randn(2, *SHAPE)
    assert torch.equal(again(x), onnx_model(x))

    torch_model = TorchModel(cnn())
    torch_model.save(tmp_path / "torch")
    loaded = runtime.load(tmp_path / "torch")
    assert isinstance(loaded, TorchModel) and loaded.runtime == "torch-eager"
    assert torch.equal(loaded(x), torch_model(x))


def test_nothing_loadable_is_named(tmp_path):
    with pytest.raises(TorchSlimError, match="Nothing to load at"):
        runtime.load(tmp_path)
    with pytest.raises(TorchSlimError, match="No ONNX model at"):
        OnnxModel(tmp_path / "missing.onnx")
    with pytest.raises(TorchSlimError, match="training mode"):
        OnnxModel(cnn_onnx()).train()


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_corrupted_onnx_is_a_clear_error(tmp_path, damage):
    path = tmp_path / "bad.onnx"
    good = cnn_onnx().read_bytes()
    path.write_bytes(good[: len(good) // 2] if damage == "truncate" else b"\x08\x07not an onnx model" * 50)
    with pytest.raises(CorruptFileError, match="bad.onnx is not a valid ONNX model"):
        runtime.load(path)


def test_an_onnx_changed_after_its_record_was_written_is_refused(tmp_path):
    saved = OnnxModel(cnn_onnx()).save(tmp_path / "art")
    data = bytearray(saved.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the weights: still parses, no longer what was recorded
    saved.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="SHA-256"):
        runtime.load(tmp_path / "art")


def test_measure_takes_modules_runtimes_and_paths_alike():
    records = measure_many({"torch": cnn(), "ort": OnnxModel(cnn_onnx()), "path": str(cnn_onnx())},
                           bundle().test, batch_sizes=(1, 4), threads=(1,), rounds=2, latency_kwargs=FAST)
    torch_rec, ort_rec, path_rec = records
    assert [r.runtime for r in records] == ["torch-eager", "onnxruntime", "onnxruntime"]
    assert ort_rec.macs == torch_rec.macs == count_macs(cnn(), torch.randn(1, *SHAPE))
    assert ort_rec.bytes == path_rec.bytes == cnn_onnx().stat().st_size
    assert ort_rec.extra["kernel"] == "FP32" and ort_rec.extra["macs_of"] == "onnx graph"
    assert ort_rec.accuracy == pytest.approx(torch_rec.accuracy) and ort_rec.test_samples == 128
    # BatchNorm folds into the convs: one bias per channel replaces BatchNorm's scale and shift.
    assert 0 < ort_rec.parameters < torch_rec.parameters
    for record in records:
        assert {(s.batch_size, s.threads, s.repeats) for s in record.latency} == {(1, 1, 4), (4, 1, 4)}
        assert all(s.runtime == record.runtime for s in record.latency)
