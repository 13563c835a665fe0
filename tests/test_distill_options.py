"""DistillConfig: the one definition of distillation's options (recipe step, CLI flags, library),
its loss items checked against each loss's own typed options, and the losses, teachers and task
built from it in one place."""

import argparse
from pathlib import Path

import pytest
import torch

from torchslim import data, models
from torchslim.cli import build_parser, subcommands
from torchslim.core.errors import TorchSlimError
from torchslim.distill import build_losses, distill, make_task
from torchslim.distill import losses as L
from torchslim.distill.config import DistillConfig, LossItem, parse_loss
from torchslim.options import OptionsError
from torchslim.train.batch import as_batch


@pytest.fixture(scope="module")
def bundle():
    return data.load("synthetic", batch_size=32, num_classes=4, shape=(1, 16, 16), noise=2.0, seed=2)


def make(name, seed):
    torch.manual_seed(seed)
    return models.create(name, num_classes=4)


def test_defaults_are_the_recipe_steps_and_valid():
    cfg = DistillConfig(epochs=1)
    assert [i.model_dump() for i in cfg.losses] == [{"name": "kd", "weight": 0.9, "teacher": None, "T": 4.0},
                                                    {"name": "ce", "weight": 0.1, "teacher": None}]
    for item in cfg.losses:  # built unvalidated (so --help needs no torch): they must validate
        assert LossItem.model_validate(item.model_dump()) == item
    assert (cfg.teachers, cfg.teacher_weights, cfg.multi_teacher, cfg.cache, cfg.cache_draws, cfg.mix) == \
        (["teacher"], None, "mean", "memory", None, None)
    assert (cfg.student, cfg.width, cfg.model_kwargs, cfg.temperature) == (None, None, {}, None)


def test_the_default_recipe_distill_steps_parse_to_their_values():
    from torchslim.pipeline import load_recipe

    recipe = load_recipe(Path(__file__).parents[1] / "recipes" / "fashion-mnist.yaml")
    steps = {name: spec.params for name, specs in recipe.strategies.items() for spec in specs if spec.name == "distill"}
    kd = [{"name": "kd", "weight": 0.9, "teacher": None, "T": 4.0}, {"name": "ce", "weight": 0.1, "teacher": None}]
    student = steps["student-distilled"]
    assert isinstance(student, DistillConfig)
    assert (student.student, student.epochs, student.lr, student.cache, student.cache_draws) == \
        ("cnn-small", 8, 0.2, "memory", 2)
    pruned = steps["teacher-pruned-distilled"]
    assert (pruned.student, pruned.epochs, pruned.lr, pruned.schedule, pruned.cache_draws) == \
        (None, 8, 0.02, "cosine", 4)
    for params in steps.values():
        assert [i.model_dump() for i in params.losses] == kd
        assert (params.teachers, params.optimizer, params.weight_decay, params.multi_teacher, params.mix) == \
            (["teacher"], "sgd", 5e-4, "mean", None)


@pytest.mark.parametrize(("text", "item"), [
    ("kd", {"name": "kd"}),
    ("kd:T=4,weight=0.9", {"name": "kd", "T": 4, "weight": 0.9}),
    ("at:student_tap=features.3,teacher_tap=layer3,teacher=t1", {
        "name": "at", "student_tap": "features.3", "teacher_tap": "layer3", "teacher": "t1"}),
    ("crd: num_data=100 , nce_k=none", {"name": "crd", "num_data": 100, "nce_k": None}),
    ("kd:T=true", {"name": "kd", "T": True}),  # read as written; the item's validation refuses it
])
def test_the_flag_syntax_of_a_loss(text, item):
    assert parse_loss(text) == item


@pytest.mark.parametrize(("text", "message"), [
    (":T=4", "needs a name"), ("kd:T", "must be KEY=VALUE"), ("kd:=4", "must be KEY=VALUE"),
    ("kd:T=4,T=5", "given twice"),
])
def test_the_flag_syntax_refuses(text, message):
    with pytest.raises(ValueError, match=message):
        parse_loss(text)


def test_every_option_is_a_flag_of_torchslim_distill():
    parser = subcommands(build_parser())["distill"]
    assert parser.get_default("options") is DistillConfig
    dests = {action.dest: action for action in parser._actions}
    for name in DistillConfig.model_fields:
        assert name in dests, name
        assert dests[name].default is argparse.SUPPRESS  # the config's default is the only one
    assert dests["losses"].option_strings == ["--losses"] and dests["losses"].metavar == "NAME[:KEY=VALUE,...]"


def test_crd_takes_the_training_set_size_unless_given():
    items = DistillConfig(epochs=1, losses=[{"name": "crd"}, {"name": "crd", "num_data": 50}]).losses
    (first, _), (second, _) = build_losses(items, num_data=128)
    assert first.num_data == 128 and second.num_data == 50
    with pytest.raises(TorchSlimError, match="crd.*num_data"):
        build_losses(items[:1])


def test_a_task_from_the_config_builds_every_loss_with_its_weight_and_teacher(bundle):
    cfg = DistillConfig(epochs=1, teachers=["a/b.ckpt", "c"], cache="none", losses=[
        {"name": "kd", "T": 2.0}, {"name": "at", "student_tap": "features.3", "teacher_tap": "layer3",
                                   "teacher": "a/b.ckpt", "weight": 0.5}])
    with make_task(make("cnn-tiny", 0), {"a/b.ckpt": make("resnet8", 1), "c": make("resnet8", 2)}, cfg,
                   train=bundle.train) as task:
        assert task.names == ["kd", "at"] and [w(0.0) for w in task.weights] == [1.0, 0.5]
        assert task.teacher_keys == {"a/b.ckpt": "teacher0", "c": "c"}  # a path is no module name
        assert task.losses[0].T == 2.0
        out = task(as_batch(next(iter(bundle.train))))
        assert torch.isfinite(out["loss"])


def test_distill_runs_from_keywords_and_anneals_the_temperature(bundle):
    history = distill(make("cnn-tiny", 0), make("resnet8", 1), bundle, epochs=2, lr=0.05, cache="none",
                      temperature={"kind": "linear", "start": 8.0, "end": 2.0}, progress=False)
    first, second = history.epochs
    assert first["train_temperature"] > 5.0 > second["train_temperature"]
    assert first["train_kd"] > 0 and first["train_ce"] > 0  # the default losses


def test_distill_refuses_a_config_that_names_other_teachers(bundle):
    config = DistillConfig(epochs=1, teachers=["a", "b"])
    with pytest.raises(OptionsError, match=r"teachers = \['a', 'b'\] must name the given teacher modules: teacher"):
        distill(make("cnn-tiny", 0), make("resnet8", 1), bundle, config=config)
    with pytest.raises(OptionsError, match="either as config= or as keyword arguments"):
        distill(make("cnn-tiny", 0), make("resnet8", 1), bundle, config=config, lr=0.1)


def test_a_disk_cache_needs_a_folder(bundle):
    cfg = DistillConfig(epochs=1, cache="disk")
    with pytest.raises(TorchSlimError, match="'disk' needs a cache directory"):
        make_task(make("cnn-tiny", 0), {"teacher": make("resnet8", 1)}, cfg, train=bundle.train)


def test_loss_options_are_checked_by_the_loss_definition():
    # every registered loss's own options are what an item accepts: its defaults validate
    for name in L.LOSSES.list():
        cls = L.LOSSES.get(name)
        required = {k for k, f in cls.options_model().model_fields.items() if f.is_required()}
        values = {"student_tap": "a", "teacher_tap": "b"} if {"student_tap", "teacher_tap"} & required else {}
        item = LossItem.model_validate({"name": name, **values})
        assert item.arguments() == values
