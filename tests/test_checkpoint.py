"""Checkpoints: safetensors + JSON, atomic, hash-checked, mismatches named, no pickle."""

import json
import os
from pathlib import Path

import pytest
import torch

from torchslim import models
from torchslim.core import io as ts_io
from torchslim.core.errors import CheckpointError
from torchslim.core.training_state import find_training_state, load_training_state, save_training_state
from torchslim.models.checkpoint import load_model, save_model


def test_model_round_trip_rebuilds_from_spec(tmp_path):
    model = models.create("resnet8", num_classes=7, in_channels=3, width=0.5)
    save_model(model, tmp_path, {"metrics": {"accuracy": 12.5}})
    loaded, meta = load_model(tmp_path)
    assert meta["model"]["name"] == "resnet8" and meta["metrics"]["accuracy"] == 12.5
    x = torch.randn(2, 3, 28, 28)
    model.eval(), loaded.eval()
    assert torch.equal(model(x), loaded(x))
    assert json.loads((tmp_path / "model.json").read_text())["bytes"] == (tmp_path / "model.safetensors").stat().st_size


def test_other_architecture_names_mismatched_tensors(tmp_path):
    save_model(models.create("cnn-small"), tmp_path)
    with pytest.raises(CheckpointError, match=r"shape mismatch .*features\.0\.0\.weight"):
        load_model(tmp_path, model=models.create("cnn-small", width=2.0))
    with pytest.raises(CheckpointError, match=r"missing .*layer1"):
        load_model(tmp_path, model=models.create("resnet8"))


def test_corrupted_weights_refused(tmp_path):
    save_model(models.create("cnn-tiny"), tmp_path)
    weights = tmp_path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_model(tmp_path)


def test_expected_hash_checked(tmp_path):
    save_model(models.create("cnn-tiny"), tmp_path)
    with pytest.raises(CheckpointError, match="the expected value"):
        load_model(tmp_path, expected_sha256="0" * 64)


def test_missing_checkpoint_is_clear(tmp_path):
    with pytest.raises(CheckpointError, match="No model checkpoint"):
        load_model(tmp_path / "nope")


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    model = models.create("cnn-tiny")
    save_model(model, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ts_io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        save_model(models.create("cnn-tiny", width=2.0), tmp_path)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # the old checkpoint is intact and no temporary file is left


def test_training_state_round_trip(tmp_path):
    torch.manual_seed(0)
    model = models.create("cnn-tiny", num_classes=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    opt.step()
    save_training_state(tmp_path, model, opt, {"epoch": 4, "config": {}, "history": []})
    rng_after_save = torch.rand(3)

    model2 = models.create("cnn-tiny", num_classes=3)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    info = load_training_state(find_training_state(tmp_path), model2, opt2)
    assert info["epoch"] == 4
    assert torch.equal(torch.rand(3), rng_after_save)  # RNG restored
    for a, b in zip(opt.state_dict()["state"].values(), opt2.state_dict()["state"].values(), strict=True):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, model2.state_dict()[k])


def test_interrupted_swap_falls_back_to_previous_state(tmp_path):
    model = models.create("cnn-tiny")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    save_training_state(tmp_path, model, opt, {"epoch": 0, "config": {}, "history": []})
    os.replace(tmp_path / "last", tmp_path / "last.old")  # as if killed between the two renames
    assert find_training_state(tmp_path) == tmp_path / "last.old"


def test_no_pickle_in_artifacts(tmp_path):
    save_model(models.create("cnn-tiny"), tmp_path)
    for path in Path(tmp_path).iterdir():
        assert b"\x80\x04" not in path.read_bytes()[:2]  # no pickle protocol header


def test_own_architecture_saved_with_its_factory_and_reloaded_into_a_fresh_instance(tmp_path):
    from torch import nn

    from torchslim.models.checkpoint import load_model, read_meta

    def tiny(num_classes, in_channels, width=4):
        return nn.Sequential(nn.Conv2d(in_channels, width, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(width, num_classes))

    model = tiny(3, 2, width=6)
    save_model(model, tmp_path, factory="tiny", factory_kwargs={"width": 6})
    meta = read_meta(tmp_path)
    assert meta["model"] == {"factory": "tiny", "kwargs": {"width": 6}}
    assert meta["class"] == "torch.nn.modules.container:Sequential"
    with pytest.raises(CheckpointError, match=r"factory 'tiny'.*models=\{name: factory\}"):
        load_model(tmp_path)
    loaded, _ = load_model(tmp_path, model=tiny(3, 2, width=6))
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


def test_a_given_model_already_carrying_the_first_recorded_steps_gets_only_the_rest(tmp_path):
    from torchslim.core.state import applied_steps
    from torchslim.models.checkpoint import load_model
    from torchslim.prune import channels

    torch.manual_seed(0)
    base = models.create("cnn-tiny", num_classes=4)
    x = torch.randn(2, 1, 28, 28)
    once, _ = channels(base, x, 0.25, "l2")
    twice, _ = channels(once, x, 0.25, "l2")
    save_model(twice, tmp_path)
    assert len(applied_steps(twice)) == 2
    fresh_once, _ = channels(base, x, 0.25, "l2")  # the same first step, as a teacher that was pruned
    loaded, _ = load_model(tmp_path, model=fresh_once)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in twice.state_dict().items())
    with pytest.raises(CheckpointError, match="not the first ones recorded"):
        other, _ = channels(base, x, 0.5, "l2")
        load_model(tmp_path, model=other)
