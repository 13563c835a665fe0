"""Channel pruning: every criterion shrinks the model for real, settings do what they say, the
record holds the kept channels, and recovery trains between iterative steps."""

import copy

import pytest
import torch
from torch import nn

from torchslim import data, models, prune
from torchslim.prune.record import ChannelPruneRecord

X = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))


def trained_like(name: str, **kwargs) -> nn.Module:
    """A model with non-trivial BatchNorm statistics (as a trained one has)."""
    torch.manual_seed(0)
    model = models.create(name, **kwargs)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def slices(record: ChannelPruneRecord, module: str, dim: str = "out") -> list[prune.Slice]:
    return [op for op in record.steps.ops if op.op == "slice" and op.module == module and op.dim == dim]


@pytest.mark.parametrize("criterion", prune.IMPORTANCE.list())
def test_every_criterion_shrinks_a_residual_network(criterion):
    model = trained_like("resnet8", width=0.5)
    pruned, record = prune.channels(model, X, 0.5, criterion)
    assert record.criterion == criterion
    assert record.after.parameters < 0.4 * record.before.parameters  # about (1 - 0.5)^2 of the weights
    assert record.after.macs < 0.4 * record.before.macs and record.after.bytes < record.before.bytes
    assert pruned.stem[0].out_channels == 4 and pruned.layer3[0].conv1.out_channels == 16
    assert pruned.fc.out_features == 10  # the classifier's outputs are left alone, its inputs shrink
    assert pruned.fc.in_features == pruned.layer3[-1].bn2.num_features == 16
    assert pruned.eval()(X).shape == (2, 10)
    # Replaying the record on a fresh model gives the same architecture.
    fresh = prune.replay(models.create("resnet8", width=0.5), record.steps)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in pruned.state_dict().items()}


@pytest.mark.parametrize("criterion", ["l1", "l2", "taylor", "bn_scale", "lamp"])
def test_magnitude_criteria_remove_a_dead_channel_first(criterion):
    model = trained_like("cnn-tiny")
    with torch.no_grad():  # channel 3 of the first layer contributes nothing
        model.features[0][0].weight[3] = 0
        model.features[0][1].weight[3] = 0
        model.features[0][1].bias[3] = 0
        model.features[1][0].weight[:, 3] = 0
    _, record = prune.channels(model, X, 0.25, criterion)
    (op,) = slices(record, "features.0.0")
    assert op.size == 8 and len(op.kept) == 6 and 3 not in op.kept


def test_record_names_kept_channels_and_the_input_model_is_untouched():
    model = trained_like("cnn-tiny")
    before = copy.deepcopy(model.state_dict())
    pruned, record = prune.channels(model, X, 0.5, "l2")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    (out,) = slices(record, "features.0.0")
    (bn,) = slices(record, "features.0.1")
    (into,) = slices(record, "features.1.0", "in")
    assert out.layer == "CONV" and bn.layer == "BN" and into.layer == "CONV"
    assert out.kept == bn.kept == into.kept and len(out.kept) == 4
    # The kept filters are the original ones at those indices.
    assert torch.equal(pruned.features[0][0].weight, model.features[0][0].weight[out.kept])
    assert record.classifier == "fc" and "fc (classifier)" in record.ignored
    assert record.widths["features.0.0"] == [8, 4]
    again = ChannelPruneRecord.from_dict(record.to_dict())
    assert again.steps == record.steps and again.after == record.after


def test_global_ranking_prunes_layers_unevenly():
    model = trained_like("cnn-small")
    with torch.no_grad():  # 24 of the last layer's 32 channels are weak: a global ranking takes them all
        model.features[3][0].weight[:24].mul_(0.01)
        model.features[3][1].weight[:24].mul_(0.01)
        model.fc.weight[:, :24].mul_(0.01)
    pruned, record = prune.channels(model, X, 0.5, "l2", global_ranking=True)
    widths = [pruned.features[i][0].out_channels for i in range(4)]
    assert record.global_ranking and widths[3] == 8 and widths[0] > 8
    _, uniform = prune.channels(model, X, 0.5, "l2")
    assert uniform.widths["features.3.0"] == [32, 16]


def test_per_layer_ratios_round_to_and_ignore():
    model = trained_like("cnn-medium")
    pruned, record = prune.channels(model, X, 0.3, "l1", ratios={"features.1": 0.75}, round_to=8,
                                    ignore=["features.2"])
    widths = [pruned.features[i][0].out_channels for i in range(4)]
    assert widths[1] == 16  # 64 * (1 - 0.75)
    assert widths[2] == 64  # ignored: output channels kept
    assert all(w % 8 == 0 for w in widths) and widths[0] == 16  # int(32 * 0.7) = 22 -> 16
    assert record.ratios == {"features.1": 0.75} and "features.2" in record.ignored


@pytest.mark.parametrize("kind", [nn.Conv2d, "Conv2d"])
def test_ignore_by_type(kind):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    pruned, record = prune.channels(model, X, 0.5, "l2", ignore=[kind])
    assert pruned[0].out_channels == 8 and pruned[5].out_features == 16 and pruned[7].out_features == 10
    assert record.ignored[0] == "Conv2d (1 modules)" and record.classifier == "7"


@pytest.mark.parametrize("mode", ["finetune", "kd"])
def test_iterative_pruning_recovers_between_steps(mode):
    bundle = data.load("synthetic", batch_size=16, num_classes=4, shape=(1, 12, 12), train_size=64,
                       val_size=0, test_size=32, augment=True)
    model = trained_like("cnn-tiny", num_classes=4)
    pruned, record = prune.channels(model, bundle.example_batch(2), 0.5, "l2", iterations=2, recover=mode, epochs=3,
                                    data=bundle, lr=0.05, bn_batches=2)
    assert record.recover == mode and record.epochs == 3 and record.iterations == 2
    assert [h.target_ratio for h in record.history] == [0.25, 0.5]
    assert [h.recovery_epochs for h in record.history] == [1, 2]  # the later step gets the extra epoch
    assert record.history[0].size.parameters > record.history[1].size.parameters == record.after.parameters
    for h in record.history:
        assert 0 <= h.accuracy_pruned <= 100 and 0 <= h.accuracy_recovered <= 100
        assert ("train_kd" in h.recovery_history[-1]) == (mode == "kd")
    assert record.accuracy_before is not None and pruned.features[0][0].out_channels == 4  # 8 -> 6 -> 4
    assert all(p.requires_grad for p in model.parameters())  # the unpruned model served as teacher untouched
    assert bundle.train.sampler.cycle is None  # the teacher cache no longer replays the loader
    fresh = prune.replay(models.create("cnn-tiny", num_classes=4), record.steps)
    fresh.load_state_dict(pruned.state_dict())
    assert torch.equal(fresh.eval()(bundle.example_batch(2)), pruned.eval()(bundle.example_batch(2)))


class Coupled(nn.Module):
    """A depthwise-separable block, two branches concatenated, and a residual add."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.ReLU())
        self.left = nn.Conv2d(16, 8, 1)
        self.right = nn.Conv2d(16, 8, 3, padding=1)
        self.mix = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dw(self.stem(x))
        y = torch.cat([self.left(x), self.right(x)], 1)
        return self.fc((x + self.mix(y)).mean((2, 3)))


def test_depthwise_concat_and_residual_stay_consistent():
    torch.manual_seed(0)
    model = Coupled().eval()
    pruned, record = prune.channels(model, X, 0.5, "l2")
    assert pruned.dw[0].groups == pruned.dw[0].out_channels == pruned.stem[0].out_channels == 8
    assert pruned.left.out_channels == pruned.right.out_channels == 4 and pruned.mix.in_channels == 8
    assert pruned.mix.out_channels == 8 == pruned.fc.in_features  # the residual add keeps them equal
    assert {op.layer for op in record.steps.ops} >= {"CONV", "DEPTHWISE_CONV", "BN", "LINEAR"}
    fresh = prune.replay(Coupled().eval(), record.steps)
    fresh.load_state_dict(pruned.state_dict())
    assert torch.equal(fresh(X), pruned(X))


class Scaled(nn.Module):
    """A bare per-channel parameter (not inside any layer) on a pruned dimension."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3)
        self.scale = nn.Parameter(torch.linspace(0.5, 2.0, 16).view(1, 16, 1, 1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((self.conv(x) * self.scale).relu().mean((2, 3)))


def test_bare_parameters_are_sliced_and_replayed_over_iterations():
    torch.manual_seed(0)
    pruned, record = prune.channels(Scaled(), X, 0.5, "l1", iterations=2)
    assert pruned.scale.shape == (1, 8, 1, 1) and pruned.conv.out_channels == 8
    assert [op.size for op in record.steps.ops if op.module == "scale"] == [16, 12]  # one slice per step
    assert any("Unwrapped parameters" in note for note in record.notes)
    fresh = prune.replay(Scaled(), record.steps)
    fresh.load_state_dict(pruned.state_dict())
    assert torch.equal(fresh(X), pruned(X))
