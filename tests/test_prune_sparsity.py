"""Unstructured magnitude sparsity: exact fractions per layer or globally, the AGP schedule during
training, zeros that stay zero, and a record that reports compressed size and no speed-up."""

import math

import pytest
import torch

from torchslim import data, models, prune
from torchslim.options import OptionsError
from torchslim.prune.unstructured import weights_to_sparsify


def tiny_data():
    return data.load("synthetic", batch_size=16, num_classes=4, shape=(1, 12, 12), train_size=64,
                     val_size=0, test_size=32)


def test_layer_and_global_masks_zero_exact_fractions():
    torch.manual_seed(0)
    model = models.create("cnn-tiny")
    weights = weights_to_sparsify(model)
    with torch.no_grad():
        weights["features.3.0"].mul_(0.001)  # a weak layer: a global ranking empties most of it
    per_layer = prune.magnitude_masks(weights, 0.6, "layer")
    for path, mask in per_layer.items():
        assert int((~mask).sum()) == math.floor(0.6 * mask.numel()), path
    ranked = prune.magnitude_masks(weights, 0.6, "global")
    total = sum(m.numel() for m in ranked.values())
    assert sum(int((~m).sum()) for m in ranked.values()) == math.floor(0.6 * total)
    assert (~ranked["features.3.0"]).float().mean() > 0.95 > (~ranked["features.1.0"]).float().mean()
    # The kept weights are the largest ones.
    w, keep = weights["features.1.0"].abs(), per_layer["features.1.0"]
    assert w[keep].min() >= w[~keep].max()


def test_one_shot_sparsify_record_and_untouched_input():
    torch.manual_seed(0)
    model = models.create("resnet8")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sparse, record = prune.sparsify(model, 0.8, scope="layer")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert record.target == 0.8 and record.ramp == "oneshot" and record.scope == "layer"
    assert all(abs(layer.sparsity - 0.8) < 0.01 for layer in record.layers.values())
    assert 0.79 < record.sparsity <= 0.8 and record.sparsity_all_parameters < record.sparsity  # BN, biases dense
    assert record.csr_bytes < 0.5 * record.dense_bytes and record.zipped_bytes < 0.5 * record.dense_bytes
    assert "runs no faster" in record.note
    assert sum(int((p == 0).sum()) for p in sparse.parameters()) == record.parameters - record.nonzero_parameters
    assert prune.SparsityRecord.from_dict(record.to_dict()) == record


def test_agp_schedule_is_cubic_between_start_and_end():
    schedule = prune.GradualSparsity(models.create("cnn-tiny"), 0.8, start=0.2, end=0.6, initial=0.1)
    assert schedule.target(0.1) == 0.0 and schedule.target(0.2) == pytest.approx(0.1)
    assert schedule.target(0.4) == pytest.approx(0.8 + (0.1 - 0.8) * 0.5**3)
    assert schedule.target(0.6) == schedule.target(1.0) == pytest.approx(0.8)
    values = [schedule.target(i / 100) for i in range(20, 61)]
    assert values == sorted(values)


@pytest.mark.parametrize("ramp", ["agp", "oneshot"])
def test_sparsity_during_training_keeps_the_zeros(ramp):
    torch.manual_seed(0)
    model = models.create("cnn-tiny", num_classes=4)
    sparse, record = prune.sparsify(model, 0.7, ramp=ramp, data=tiny_data(), epochs=2, lr=0.05)
    assert record.epochs == 2 and record.accuracy_before is not None and record.accuracy_after is not None
    assert record.ramp == ramp and (record.accuracy_pruned is None) == (ramp == "agp")  # one-shot: measured before training
    assert record.sparsity == pytest.approx(0.7, abs=0.002)  # reached, and not undone by the last steps
    weights = weights_to_sparsify(sparse)
    assert sum(int((w == 0).sum()) for w in weights.values()) == sum(x.zeros for x in record.layers.values())


def test_gradual_sparsity_in_a_hand_written_loop():
    torch.manual_seed(0)
    model = models.create("cnn-tiny", num_classes=4)
    schedule = prune.GradualSparsity(model, 0.5, scope="layer", end=0.5, updates=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    seen = []
    for step in range(1, 21):
        x, y = torch.randn(8, 1, 12, 12), torch.randint(0, 4, (8,))
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad()
        schedule(step, 20)
        seen.append(schedule.current)
    schedule.finalize()
    assert seen == sorted(seen) and seen[0] < 0.5 and seen[-1] == pytest.approx(0.5)
    weight = model.features[2][0].weight
    assert (weight == 0).float().mean() == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"sparsity": 1.0}, OptionsError, r"prune.sparsify: sparsity = 1.0 is invalid: Input should be less than 1"),
    ({"sparsity": 0.5, "scope": "net"}, OptionsError, r"scope = \"net\" is invalid: Input should be 'global' or 'layer'"),
    ({"sparsity": 0.5, "ramp": "agp"}, OptionsError, r"ramp='agp' raises sparsity while training: it needs epochs > 0"),
    ({"sparsity": 0.5, "ramp": "agp", "epochs": 1}, prune.PruneError, r"ramp='agp' with epochs=1 needs data="),
    ({"sparsity": 0.5, "schedule": "agp"}, OptionsError, r"schedule = \"agp\" is invalid: .*'onecycle', 'cosine'"),
    ({"sparsity": 0.5, "ignore": ["features.9"]}, prune.PruneError, "no module at path 'features.9'"),
])
def test_sparsify_bad_input(kwargs, error, message):
    with pytest.raises(error, match=message):
        prune.sparsify(models.create("cnn-tiny"), **kwargs)
