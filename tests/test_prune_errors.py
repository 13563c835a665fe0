"""Bad input to pruning fails at once with a message naming the value, where it came from and what
would be valid — never a traceback from inside torch-pruning."""

import numpy as np
import pytest
import torch
from torch import nn

from torchslim import load_model, models, prune, save_model
from torchslim.core.errors import CheckpointError, TorchSlimError
from torchslim.options import OptionsError

X = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("ratio", [0, 1, 1.5, -0.2, float("nan"), True, "0.5"])
def test_ratio_outside_zero_one(ratio):
    with pytest.raises(OptionsError, match=r"^prune.channels: ratio = .* is invalid: Input should be"):
        prune.channels(models.create("cnn-tiny"), X, ratio)
    with pytest.raises(OptionsError, match=r"ratios(\['features.1'\]|.features.1) = .*(\(0, 1\)|Input should be)"):
        prune.channels(models.create("cnn-tiny"), X, 0.5, ratios={"features.1": ratio})


def test_ignored_path_that_does_not_exist_names_the_closest():
    with pytest.raises(prune.PruneError) as info:
        prune.channels(models.create("resnet8"), X, 0.5, ignore=["layer1.0.conv3"])
    message = str(info.value)
    assert "ignore='layer1.0.conv3'" in message and "no module at path 'layer1.0.conv3'" in message
    assert "'layer1.0.conv1'" in message  # a real path close to the typo


class ToNumpy(nn.Module):
    """Works at inference, but leaves autograd (which torch-pruning traces with)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.maximum(x.numpy(), 0))


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.post = ToNumpy()
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.post(self.conv(x)).mean((2, 3)))


class CountingOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)

    def forward(self, x: torch.Tensor) -> dict:
        return {"logits": self.conv(x).mean((2, 3)), "n": 3}


def test_model_torch_pruning_cannot_trace_names_the_module():
    model = Untraceable().eval()
    with torch.no_grad():
        assert model(X).shape == (2, 10)  # it runs; it only cannot be traced
    with pytest.raises(prune.PruneError) as info:
        prune.channels(model, X, 0.5)
    message = str(info.value)
    assert message.startswith("Tracing Untraceable for pruning failed in module 'post' (ToNumpy): RuntimeError")
    assert "requires grad" in message and "ignore=" in message and "\n" not in message
    with pytest.raises(prune.PruneError, match=r"output\['n'\] is a int, not a tensor"):
        prune.channels(CountingOutput(), X, 0.5)


@pytest.mark.parametrize(("options", "message"), [
    ({"ratios": {"features.0": 0.9}}, r"Pruning 0.9 of layer 'features.0.0' \(8 output channels\) would remove "
                                      r"every channel \(it would keep 0\)"),
    ({"round_to": 16}, r"'features.3.0' \(16 output channels\) would remove every channel \(it would keep 0 "
                       r"rounded down to a multiple of round_to=16\)"),
])
def test_pruning_every_channel_of_a_layer_is_refused(options, message):
    with pytest.raises(prune.PruneError, match=message):
        prune.channels(models.create("cnn-tiny"), X, 0.5, **options)


def test_steps_loaded_onto_another_architecture(tmp_path):
    pruned, record = prune.channels(models.create("cnn-tiny"), X, 0.5)
    with pytest.raises(prune.ReplayError, match=r"recorded on a PlainCNN with 26 tensors .* loaded onto is a "
                                                r"PlainCNN with 26 tensors"):
        prune.replay(models.create("cnn-tiny", width=2.0), record.steps)
    with pytest.raises(prune.ReplayError, match="recorded on a PlainCNN .* loaded onto is a ResNet"):
        prune.replay(models.create("resnet8"), record.steps.to_dict())
    save_model(pruned, tmp_path)
    with pytest.raises(CheckpointError, match="loaded onto is a ResNet"):
        load_model(tmp_path, model=models.create("resnet8"))
    # Same signature but a step that does not fit (a hand-edited record) names the module.
    edited = record.steps.to_dict()
    edited["ops"][0]["size"] = 9
    with pytest.raises(prune.ReplayError, match=r"step 1 of \d+ .* slices out channels of '[\w.]+' from 9"):
        prune.replay(models.create("cnn-tiny"), edited)


def test_unknown_criterion_and_option():
    with pytest.raises(OptionsError, match="importance = \"l22\" is invalid: .*Did you mean 'l2'"):
        prune.channels(models.create("cnn-tiny"), X, 0.5, "l22")
    with pytest.raises(OptionsError, match="unknown option 'epoch'. Did you mean 'epochs'"):
        prune.channels(models.create("cnn-tiny"), X, 0.5, epoch=3)
    with pytest.raises(prune.PruneError, match="needs data="):
        prune.channels(models.create("cnn-tiny"), X, 0.5, recover="kd", epochs=1)
    assert issubclass(prune.PruneError, TorchSlimError) and issubclass(OptionsError, TorchSlimError)
