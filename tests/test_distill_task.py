"""DistillTask: losses combine, teachers stay frozen, taps and connectors, multi-teacher, cache."""

import pytest
import torch
from torch import nn

from torchslim import data, models
from torchslim.core.errors import TorchSlimError
from torchslim.core.taps import Taps
from torchslim.distill import DistillTask, Schedule
from torchslim.distill import losses as L
from torchslim.train import fit
from torchslim.train.batch import as_batch


@pytest.fixture(scope="module")
def bundle():
    return data.load("synthetic", batch_size=32, num_classes=4, shape=(1, 16, 16), noise=2.0, seed=2)


def make(name, seed, **kw):
    torch.manual_seed(seed)
    return models.create(name, num_classes=4, **kw)


def first_batch(bundle):
    return as_batch(next(iter(bundle.train)))


def test_task_returns_total_and_parts_and_keeps_teacher_frozen(bundle):
    teacher = make("resnet8", 1)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    task = DistillTask(make("cnn-tiny", 2), teacher, [L.create("kd", T=4.0), (L.create("ce"), 0.5)])
    batch = first_batch(bundle)
    out = task(batch["x"], batch["y"])
    assert set(out) == {"loss", "kd", "ce", "logits"}
    assert out["loss"].item() == pytest.approx(out["kd"].item() + 0.5 * out["ce"].item(), rel=1e-5)
    out["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None for p in task.student.parameters())
    task.train()
    assert not teacher.training  # teachers never leave eval mode
    fit(task, bundle, 1, lr=0.05, progress=False)
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_fit_and_hand_written_loop_agree(bundle):
    def build():
        torch.manual_seed(0)
        student = models.create("cnn-tiny", num_classes=4)
        return student, DistillTask(student, make("resnet8", 1), [L.create("kd", T=4.0), (L.create("ce"), 0.1)])

    student_a, task_a = build()
    torch.manual_seed(0)
    # contiguous like the hand-written loop (fit's default is channels-last, which rounds differently)
    fit(task_a, bundle, 1, schedule="constant", lr=0.05, seed=0, channels_last=False, progress=False)

    student_b, task_b = build()
    torch.manual_seed(0)
    opt = torch.optim.SGD([p for p in task_b.parameters() if p.requires_grad], lr=0.05, momentum=0.9,
                          nesterov=True, weight_decay=5e-4)
    bundle.train.sampler.set_epoch(0)
    task_b.train()
    for x, y, index in bundle.train:
        loss = task_b(x, y, index)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    for k, v in student_a.state_dict().items():
        assert torch.equal(v, student_b.state_dict()[k]), k


def test_wrong_tap_path_fails_before_training_with_closest_paths():
    with pytest.raises(TorchSlimError, match=r"no module at path 'layer2\.9'.*'layer2\.0'"):
        DistillTask(make("cnn-tiny", 0), make("resnet8", 0),
                    [L.create("fitnet", student_tap="features.2", teacher_tap="layer2.9")])


def test_taps_are_removed_on_close():
    model = make("resnet8", 0)
    with Taps(model, ["layer1.0", "layer3"]) as taps:
        model(torch.randn(2, 1, 16, 16))
        assert set(taps.outputs) == {"layer1.0", "layer3"}
    assert not any(m._forward_hooks for m in model.modules())


def test_connectors_are_probed_trained_and_not_exported(bundle):
    student = make("cnn-tiny", 0)  # features.3: 16 channels at 4x4
    task = DistillTask(student, make("resnet8", 1),  # layer3: 64 channels at 4x4
                       [L.create("fitnet", student_tap="features.3", teacher_tap="layer3"), L.create("ce")])
    fit(task, bundle, 1, lr=0.05, progress=False)
    connector_params = {n for n, _ in task.named_parameters() if n.startswith("losses.")}
    assert connector_params, "fitnet built no connector"
    assert not any(k.startswith("losses") for k in student.state_dict())
    task.close()


def test_class_count_mismatch_named():
    teacher = models.create("resnet8", num_classes=10)
    with pytest.raises(TorchSlimError, match="10 classes but the student predicts 4"):
        DistillTask(make("cnn-tiny", 0), teacher, [L.create("kd")], example_input=torch.randn(2, 1, 16, 16))


def test_bad_loss_lists():
    with pytest.raises(TorchSlimError, match="at least one loss"):
        DistillTask(make("cnn-tiny", 0), make("resnet8", 0), [])
    with pytest.raises(TorchSlimError, match="must not be negative"):
        DistillTask(make("cnn-tiny", 0), make("resnet8", 0), [(L.create("kd"), -1.0)])


def test_two_teachers_mean_of_softened_distributions(bundle):
    t1, t2, student = make("resnet8", 1), make("cnn-small", 2), make("cnn-tiny", 3)
    kd = L.create("kd", T=2.0)
    task = DistillTask(student, {"a": t1, "b": t2}, [kd], teacher_weights=[3, 1])
    batch = first_batch(bundle)
    got = task(batch)["kd"]
    with torch.no_grad():
        p = 0.75 * torch.softmax(t1(batch["x"]) / 2, 1) + 0.25 * torch.softmax(t2(batch["x"]) / 2, 1)
        s = torch.log_softmax(student(batch["x"]) / 2, 1)
        expected = (p * (p.log() - s)).sum(1).mean() * 4
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)
    each = DistillTask(student, {"a": t1, "b": t2}, [kd], teacher_weights=[3, 1], multi_teacher="each")
    assert each(batch)["kd"].item() != pytest.approx(got.item(), rel=1e-4)
    fit(task, bundle, 1, lr=0.05, progress=False)


def test_hugging_face_style_outputs_are_adapted(bundle):
    class DictOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = make("resnet8", 1)

        def forward(self, x):
            return {"logits": self.net(x), "hidden": None}

    task = DistillTask(make("cnn-tiny", 0), DictOut(), [L.create("kd")])
    assert torch.isfinite(task(first_batch(bundle))["loss"])


def test_weight_schedule_follows_progress(bundle):
    task = DistillTask(make("cnn-tiny", 0), make("resnet8", 1),
                       [(L.create("kd"), Schedule("linear", 0.0, 1.0)), L.create("ce")])
    batch = first_batch(bundle)
    task.set_progress(0.0)
    out = task(batch)
    assert out["loss"].item() == pytest.approx(out["ce"].item(), rel=1e-5)
    task.set_progress(1.0)
    out = task(batch)
    assert out["loss"].item() == pytest.approx(out["ce"].item() + out["kd"].item(), rel=1e-5)
    assert out["weight_kd"].item() == 1.0 and "weight_ce" not in out


def test_schedules_are_recorded_in_the_history(bundle):
    task = DistillTask(make("cnn-tiny", 0), make("resnet8", 1),
                       [(L.create("kd"), Schedule("linear", 0.0, 1.0)), L.create("ce")],
                       temperature=Schedule("linear", 8.0, 2.0))
    history = fit(task, bundle, 2, lr=0.05, progress=False)
    first, second = history.epochs
    assert first["train_weight_kd"] < 0.5 < second["train_weight_kd"]  # epoch means of a ramp
    assert first["train_temperature"] > 5.0 > second["train_temperature"]


def test_temperature_schedule_sets_T(bundle):
    kd = L.create("kd", T=4.0)
    task = DistillTask(make("cnn-tiny", 0), make("resnet8", 1), [kd], temperature=Schedule("linear", 8.0, 2.0))
    task.set_progress(0.5)
    assert kd.T == pytest.approx(5.0)


def test_mixup_is_seen_identically_and_labels_mixed(bundle):
    task = DistillTask(make("cnn-tiny", 0), make("resnet8", 1), [L.create("kd"), L.create("ce")], mix="mixup")
    task.train()
    out = task(first_batch(bundle))
    assert torch.isfinite(out["loss"])
    with pytest.raises(TorchSlimError, match="cannot be used with mix"):
        task.use_cache(bundle.train)


def test_cached_teacher_matches_live_teacher(bundle):
    teacher = make("resnet8", 1)
    aug = data.load("synthetic", batch_size=32, num_classes=4, shape=(1, 16, 16), noise=2.0, seed=2, augment=True)
    live = DistillTask(make("cnn-tiny", 0), teacher, [L.create("kd")])
    cached = DistillTask(make("cnn-tiny", 0), teacher, [L.create("kd")])
    cached.use_cache(aug.train, draws=2, log=lambda m: None)
    live.train(), cached.train()
    for epoch in (0, 1, 2, 3):  # epoch 2 and 3 replay draws 0 and 1
        aug.train.sampler.set_epoch(epoch)
        cached.set_epoch(epoch)
        batch = as_batch(next(iter(aug.train)))
        assert torch.allclose(live(batch)["kd"], cached(batch)["kd"], atol=1e-5)
    aug.train.sampler.cycle = None


def test_stale_disk_cache_is_rebuilt_with_a_message(bundle, tmp_path):
    messages = []
    teacher = make("resnet8", 1)
    task = DistillTask(make("cnn-tiny", 0), teacher, [L.create("kd")])
    task.use_cache(bundle.train, directory=tmp_path, log=messages.append)
    assert list((tmp_path / "teacher").iterdir())
    with torch.no_grad():
        teacher.fc.bias.add_(1.0)  # the teacher changed: its old cache is stale
    task.use_cache(bundle.train, directory=tmp_path, log=messages.append)
    assert any("building a fresh cache" in m for m in messages)
    batch = first_batch(bundle)
    task.train()
    task.set_epoch(0)
    cached = task(batch)["kd"]
    live = DistillTask(make("cnn-tiny", 0), teacher, [L.create("kd")])(batch)["kd"]
    assert torch.allclose(cached, live, atol=1e-5)


def test_crd_without_indices_is_an_error():
    task = DistillTask(make("cnn-tiny", 0), make("resnet8", 1), [L.create("crd", num_data=64)],
                       example_input=torch.randn(2, 1, 16, 16))
    with pytest.raises(TorchSlimError, match="CRD needs dataset indices"):
        task(torch.randn(4, 1, 16, 16), torch.zeros(4, dtype=torch.long))
