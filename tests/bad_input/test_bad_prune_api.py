"""Bad input to the pruning API (``prune.channels``) and to feature taps (``Taps``): each case fails
before any pruning with a torchslim error naming the bad value and what is valid, and writes
nothing outside the output directory."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchslim import models, prune
from torchslim.core.errors import TorchSlimError
from torchslim.core.taps import Taps
from torchslim.options import OptionsError

X = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
IMAGES = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))


class Attention(nn.Module):
    """q/k/v/o and a head size; the head count follows from the width (no attribute)."""

    def __init__(self, dim: int, heads: int, num_heads: int | None = None) -> None:
        super().__init__()
        if num_heads is not None:
            self.num_heads = num_heads
        self.head_dim = dim // heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, -1, self.head_dim).transpose(1, 2) for t in (self.q(x), self.k(x), self.v(x)))
        attn = (q @ k.transpose(-2, -1)).softmax(-1)
        return self.o((attn @ v).transpose(1, 2).reshape(b, n, -1))


class ViT(nn.Module):
    """A root with ``heads``, two blocks of attention and an MLP, and a MultiheadAttention."""

    def __init__(self, num_heads: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.heads = 4
        self.embed = nn.Conv2d(1, 32, 7, 7)
        self.attn = nn.ModuleList(Attention(32, 4, num_heads) for _ in range(2))
        self.fc1, self.fc2 = nn.Linear(32, 64), nn.Linear(64, 32)
        self.mha = nn.MultiheadAttention(32, 4, batch_first=True)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)
        for attn in self.attn:
            x = x + attn(x)
        x = x + self.fc2(self.fc1(x).relu()) + self.mha(x, x, x, need_weights=False)[0]
        return self.head(x.mean(1))


class OnlyClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return models.create("cnn-tiny", num_classes=4)


HEADS = {"attn.0": 4, "attn.1": 4}
E, OE = prune.PruneError, OptionsError

# id -> (model factory, example input, keyword arguments of channels, error type, message needles)
CHANNELS = {
    "ratio-zero": (cnn, X, {"ratio": 0}, OE, ["prune.channels: ratio = 0 is invalid", "greater than 0"]),
    "ratio-one": (cnn, X, {"ratio": 1.0}, OE, ["ratio = 1.0 is invalid", "less than 1"]),
    "ratio-negative": (cnn, X, {"ratio": -0.3}, OE, ["ratio = -0.3 is invalid", "greater than 0"]),
    "ratio-nan": (cnn, X, {"ratio": float("nan")}, OE, ["ratio = NaN is invalid", "finite number"]),
    "ratio-inf": (cnn, X, {"ratio": float("inf")}, OE, ["ratio = Infinity is invalid", "finite number"]),
    "ratio-string": (cnn, X, {"ratio": "0.5"}, OE, ["ratio = \"0.5\" is invalid", "valid number"]),
    "ratio-bool": (cnn, X, {"ratio": True}, OE, ["ratio = true is invalid", "valid number"]),
    "head-ratio-over-one": (ViT, IMAGES, {"head_ratio": 1.5, "heads": HEADS}, OE,
                            ["head_ratio = 1.5 is invalid", "less than 1"]),
    "importance-unknown": (cnn, X, {"importance": "l3"}, OE,
                           ["importance = \"l3\" is invalid", "did you mean 'l2'", "bn_scale", "taylor"]),
    "ignore-missing-path": (cnn, X, {"ignore": ["features.0.conv"]}, E,
                            ["ignore='features.0.conv'", "no module at path", "'features.0.0'"]),
    "ignore-not-a-path": (cnn, X, {"ignore": [3]}, OE, ["ignore[0] = 3 is invalid", "valid string"]),
    "ratios-unknown-layer": (cnn, X, {"ratios": {"features.9": 0.5}}, E,
                             ["ratios['features.9']", "no module at path 'features.9'", "'features.0'"]),
    "ratios-bad-value": (cnn, X, {"ratios": {"features.1": 1.2}}, OE, ["ratios['features.1'] = 1.2", "(0, 1)"]),
    "ratios-not-a-mapping": (cnn, X, {"ratios": [0.5]}, OE, ["ratios = [0.5] is invalid", "valid dictionary"]),
    "round-to-zero": (cnn, X, {"round_to": 0}, OE, ["round_to = 0 is invalid", "greater than 0"]),
    "round-to-negative": (cnn, X, {"round_to": -8}, OE, ["round_to = -8 is invalid", "greater than 0"]),
    "iterations-zero": (cnn, X, {"iterations": 0}, OE, ["iterations = 0 is invalid", "greater than 0"]),
    "recover-unknown": (cnn, X, {"recover": "fine"}, OE, ["recover = \"fine\" is invalid", "'finetune'", "'kd'"]),
    "recovery-option-unknown": (cnn, X, {"epoch": 3}, OE, ["unknown option 'epoch'", "did you mean 'epochs'"]),
    "input-wrong-channels": (cnn, torch.randn(2, 3, 16, 16), {}, E,
                             ["shape (2, 3, 16, 16)", "'features.0.0' (Conv2d)", "expects (N, 1, H, W)"]),
    "input-missing-batch-dim": (cnn, torch.randn(16, 16), {}, E, ["shape (16, 16)", "expects (N, 1, H, W)"]),
    "input-wrong-features": (OnlyClassifier, torch.randn(2, 5), {"ignore_classifier": False}, E,
                             ["shape (2, 5)", "'fc' (Linear)", "in_features=8"]),
    "input-empty-batch": (cnn, torch.randn(0, 1, 16, 16), {}, E, ["at least 1 sample", "(0, 1, 16, 16)"]),
    "input-not-a-tensor": (cnn, [[0.0]], {}, E, ["example_input must be a torch.Tensor", "got list"]),
    "nothing-prunable": (OnlyClassifier, torch.randn(2, 8), {}, E,
                         ["Nothing to prune in OnlyClassifier", "fc (classifier)", "ignore fewer layers"]),
    "everything-ignored": (cnn, X, {"ignore": ["features"]}, E, ["Nothing to prune in PlainCNN", "features"]),
    "heads-unknown-count": (ViT, IMAGES, {}, E,
                            ["head count of attention block(s) 'attn.0', 'attn.1' is unknown",
                             "heads={'attn.0': n, 'attn.1': n}", "ignore=['attn.0', 'attn.1']"]),
    "heads-missing-path": (ViT, IMAGES, {"heads": {"attn.2": 4}}, E,
                           ["heads['attn.2']", "no module at path 'attn.2'", "'attn.0'"]),
    "heads-zero": (ViT, IMAGES, {"heads": {"attn.0": 0, "attn.1": 4}}, OE,
                   ["heads['attn.0'] = 0", "positive number of attention heads"]),
    "heads-negative": (ViT, IMAGES, {"heads": {"attn.0": -4, "attn.1": 4}}, OE,
                       ["heads['attn.0'] = -4", "positive number of attention heads"]),
    "heads-float": (ViT, IMAGES, {"heads": {"attn.0": 4.0, "attn.1": 4}}, OE,
                    ["heads.attn.0 = 4.0 is invalid", "valid integer"]),
    "heads-bool": (ViT, IMAGES, {"heads": {"attn.0": True, "attn.1": 4}}, OE,
                   ["heads.attn.0 = true is invalid", "valid integer"]),
    "heads-not-dividing": (ViT, IMAGES, {"heads": {"attn.0": 3, "attn.1": 4}}, E,
                           ["heads['attn.0']=3 does not divide", "'attn.0.q' (32 channels)", "1, 2, 4, 8, 16, 32"]),
    "heads-not-attention": (ViT, IMAGES, {"heads": {**HEADS, "fc1": 4}}, E,
                            ["heads['fc1']", "Linear, which owns no q/k/v projections", "'attn.0', 'attn.1'"]),
    "heads-on-multihead-attention": (ViT, IMAGES, {"heads": {**HEADS, "mha": 4}}, E,
                                     ["heads['mha']", "nn.MultiheadAttention, whose heads are left alone"]),
    "heads-root": (ViT, IMAGES, {"heads": {"": 4}}, E, ["heads['']", "ViT) itself is never pruned as one attention block"]),
    "heads-not-a-mapping": (ViT, IMAGES, {"heads": 4}, OE, ["heads = 4 is invalid", "valid dictionary"]),
    "heads-contradict-attribute": (lambda: ViT(num_heads=4), IMAGES, {"heads": {"attn.0": 2}}, E,
                                   ["heads['attn.0']=2 contradicts the module's own num_heads=4"]),
}


@pytest.mark.parametrize("case", CHANNELS.values(), ids=CHANNELS.keys())
def test_bad_channels_argument(sandbox, case):
    factory, example, options, error, needles = case
    model = factory()
    options = {"ratio": 0.5, **options}
    exc = sandbox.call(lambda: prune.channels(model, example, **options), error)
    sandbox.expect_message(exc, *needles)
    assert "\n" not in str(exc)  # one line, no traceback from inside torch


# id -> (Taps keyword arguments, message needles)
TAPS = {
    "tap-missing-path": ({"paths": ["layer9"]}, ["no module at path 'layer9'", "'features'"]),
    "tap-typo-path": ({"paths": ["features.1.O"]}, ["'features.1.O'", "'features.1.0'"]),
    "tap-root-path": ({"paths": [""]}, ["no module at path ''"]),
    "tap-path-not-a-string": ({"paths": [1]}, ["strings such as 'layer2.1'", "got 1"]),
    "tap-calls-unknown": ({"paths": ["fc"], "calls": "first"}, ["calls='first' is not a mode", "'warn'", "'all'"]),
    "tap-calls-typo": ({"paths": ["fc"], "calls": "al"}, ["did you mean 'all'"]),
}


@pytest.mark.parametrize("case", TAPS.values(), ids=TAPS.keys())
def test_bad_tap(sandbox, case):
    options, needles = case
    exc = sandbox.call(lambda: Taps(cnn(), **options), TorchSlimError)
    sandbox.expect_message(exc, *needles)
