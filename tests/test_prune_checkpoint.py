"""A pruned model round-trips through a checkpoint without pickle: the applied steps are saved in
model.json and replayed on a fresh instance of the original architecture by ``load_model``."""

import json

import pytest
import torch

from torchslim import load_model, models, prune, save_model
from torchslim.core.state import applied_steps

X = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(2))


def test_load_model_replays_the_steps_and_outputs_are_identical(tmp_path):
    torch.manual_seed(0)
    model = models.create("resnet8", width=0.5)
    pruned, record = prune.channels(model, X, 0.5, "l1", round_to=2)
    save_model(pruned, tmp_path, metadata={"prune": record.to_dict()})
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["model"]["name"] == "resnet8"  # the original architecture's recipe
    (steps,) = meta["applied_steps"]
    assert steps["kind"] == "prune.channels" and steps == record.steps.to_dict()
    assert {"module", "dim", "kept", "size"} <= set(steps["ops"][0])
    loaded, _ = load_model(tmp_path)
    pruned.eval(), loaded.eval()
    assert torch.equal(loaded(X), pruned(X))
    assert applied_steps(loaded) == meta["applied_steps"]
    for path in tmp_path.iterdir():
        assert b"\x80\x04" not in path.read_bytes()[:2]  # no pickle


def test_a_pruned_model_pruned_again_round_trips(tmp_path):
    torch.manual_seed(0)
    once, _ = prune.channels(models.create("cnn-small"), X, 0.25, "l2")
    save_model(once, tmp_path / "once")
    reloaded, _ = load_model(tmp_path / "once")
    twice, record = prune.channels(reloaded, X, 0.5, "fpgm")
    assert record.before.parameters == sum(p.numel() for p in once.parameters())
    save_model(twice, tmp_path / "twice")
    loaded, meta = load_model(tmp_path / "twice")
    assert [s["kind"] for s in meta["applied_steps"]] == ["prune.channels"] * 2
    assert torch.equal(loaded.eval()(X), twice.eval()(X))
    assert loaded.features[1][0].out_channels == twice.features[1][0].out_channels == 9  # 24 -> 18 -> 9


def test_replay_from_json_then_load_weights():
    torch.manual_seed(0)
    pruned, record = prune.channels(models.create("cnn-tiny"), X, 0.5, "random", seed=3)
    as_json = json.loads(record.steps.model_dump_json())
    fresh = prune.replay(models.create("cnn-tiny"), as_json)
    fresh.load_state_dict(pruned.state_dict())
    assert torch.equal(fresh.eval()(X), pruned.eval()(X))


@pytest.mark.slow
def test_a_reloaded_pruned_model_exports_to_onnx_with_the_same_outputs(tmp_path):
    import numpy as np
    import onnxruntime as ort

    from torchslim import export

    torch.manual_seed(0)
    pruned, _ = prune.channels(models.create("resnet8", width=0.5), X, 0.5, "l2")
    save_model(pruned, tmp_path / "pruned")
    loaded, _ = load_model(tmp_path / "pruned")
    report = export.onnx(loaded, X, tmp_path / "pruned.onnx")
    session = ort.InferenceSession(str(tmp_path / "pruned.onnx"), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"input": X.numpy()})
    np.testing.assert_allclose(onnx_out, pruned.eval()(X).detach().numpy(), rtol=1e-5, atol=1e-5)
    assert report.max_abs_error <= 1e-4
