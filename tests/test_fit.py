"""fit: training works, is deterministic, resumes bit-exactly after SIGKILL, stops on NaN."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from torchslim import data, models
from torchslim.core.errors import NonFiniteLossError, TorchSlimError
from torchslim.core.tensors import read_tensors
from torchslim.core.training_state import find_training_state
from torchslim.train import evaluate, fit
from torchslim.train.schedule import lr_factor

SCRIPT = Path(__file__).parent / "scripts" / "train_synthetic.py"


@pytest.fixture
def bundle():
    return data.load("synthetic", batch_size=32, noise=2.0, seed=1)


def test_fit_learns_and_reports(bundle):
    torch.manual_seed(0)
    model = models.create("cnn-tiny", num_classes=4)
    before = evaluate(model, bundle.test)["accuracy"]
    history = fit(model, bundle, 3, lr=0.05, progress=False)
    assert len(history.epochs) == 3
    assert history.test["accuracy"] > max(before, 60.0)
    assert history.test["n"] == 256
    assert {"train_loss", "train_accuracy", "val_accuracy", "lr", "seconds"} <= set(history.epochs[0])


def test_fit_is_deterministic(bundle):
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        model = models.create("cnn-tiny", num_classes=4)
        fit(model, bundle, 2, seed=5, progress=False)
        states.append(model.state_dict())
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_non_positive_epochs_rejected(bundle, bad):
    with pytest.raises(TorchSlimError, match=r"fit: epochs = .* is invalid"):
        fit(models.create("cnn-tiny", num_classes=4), bundle, bad, progress=False)


def test_bad_options_named(bundle):
    model = models.create("cnn-tiny", num_classes=4)
    with pytest.raises(TorchSlimError, match="Did you mean 'optimizer'"):
        fit(model, bundle, 1, optimiser="sgd", progress=False)
    with pytest.raises(TorchSlimError, match=r"schedule = \"cosin\" is invalid: Input should be 'onecycle', 'cosine' or 'constant'"):
        fit(model, bundle, 1, schedule="cosin", progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(bundle, tmp_path):
    class Exploding(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = models.create("cnn-tiny", num_classes=4)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            out = self.net(x)
            return out * float("nan") if self.calls > 20 else out  # 16 steps + 1 val batch per epoch

    model = Exploding()
    with pytest.raises(NonFiniteLossError, match=r"nan at epoch 2, step 4.*kept in .*last"):
        fit(model, bundle, 3, checkpoint_dir=tmp_path, progress=False)
    state = find_training_state(tmp_path)
    info = json.loads((state / "state.json").read_text())
    assert info["epoch"] == 0  # epoch 1 finished and was kept; epoch 2 was never saved
    assert all(torch.isfinite(t).all() for t in read_tensors(state / "state.safetensors").values()
               if t.is_floating_point())


def test_resume_refuses_changed_config(bundle, tmp_path):
    fit(models.create("cnn-tiny", num_classes=4), bundle, 1, checkpoint_dir=tmp_path, lr=0.05, progress=False)
    with pytest.raises(TorchSlimError, match="configuration changed.*lr"):
        fit(models.create("cnn-tiny", num_classes=4), bundle, 1, checkpoint_dir=tmp_path, lr=0.01,
            resume=True, progress=False)


def test_schedules_shape():
    assert lr_factor("cosine", 0, 100) == pytest.approx(1.0)
    assert lr_factor("cosine", 99, 100) < 0.01
    assert lr_factor("cosine", 0, 100, warmup=10) == pytest.approx(0.1)
    assert lr_factor("onecycle", 0, 100) == pytest.approx(1 / 25)
    assert max(lr_factor("onecycle", s, 100) for s in range(100)) == pytest.approx(1.0)
    assert lr_factor("constant", 50, 100) == 1.0


def _run(out: Path, epochs: int, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(SCRIPT), str(out), str(epochs), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    proc = _run(straight, 4)
    assert proc.wait(timeout=120) == 0, proc.stderr.read()

    proc = _run(killed, 4)
    for line in proc.stdout:  # kill it partway through epoch 3
        if line.startswith("epoch 2 done"):
            time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "final-rank0.safetensors").exists()
    assert find_training_state(killed / "ckpt") is not None

    proc = _run(killed, 4, "--resume")
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    history = json.loads((killed / "history-rank0.json").read_text())
    assert history["resumed_from_epoch"] in (1, 2)
    assert len(history["epochs"]) == 4
    a = read_tensors(straight / "final-rank0.safetensors")
    b = read_tensors(killed / "final-rank0.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"
