"""Every registry, swept: each registered entry gets a real, cheap check the moment it is registered.

:data:`SWEEPS` names every registry of the package and the test below that sweeps it. The last test
imports every module of torchslim, finds every :class:`~torchslim.core.registry.Registry` there and
fails on one no sweep covers, so a new registry is caught too, not only a new entry.

The deeper sweeps stay where they were written and are not repeated here: forward/backward and spec
round trips of every model (``test_models.py``), golden values of every loss
(``test_distill_losses.py``), pruning with every criterion (``test_prune_channels.py``), and the
hash and accuracy of every shipped model (``test_zoo.py``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import torchslim
from torchslim.core.registry import Registry


def _datasets() -> Registry:
    from torchslim.data.registry import DATASETS

    return DATASETS


def _models() -> Registry:
    from torchslim.models import MODELS

    return MODELS


def _losses() -> Registry:
    from torchslim.distill.losses import LOSSES

    return LOSSES


def _importance() -> Registry:
    from torchslim.prune.importance import IMPORTANCE

    return IMPORTANCE


def _steps() -> Registry:
    from torchslim.pipeline.steps import STEPS

    return STEPS


def _text_steps() -> Registry:
    from torchslim.pipeline.steps import TEXT_STEPS

    return TEXT_STEPS


def _tasks() -> Registry:
    from torchslim.pipeline.tasks import TASKS

    return TASKS


def _replayers() -> Registry:
    from torchslim.core.state import PROVIDERS, REPLAYERS

    for module in PROVIDERS.values():  # what load_model imports when a recorded step needs it
        importlib.import_module(module)
    return REPLAYERS


def _zoo() -> Registry:
    from torchslim.zoo import ZOO

    return ZOO


# sweep -> how to reach its registry (imported inside, so one module that fails to import fails its
# own sweep's cases and the meta-test, not the collection of this whole file)
SWEEPS: dict[str, Callable[[], Registry]] = {
    "datasets": _datasets, "models": _models, "losses": _losses, "importance": _importance,
    "steps": _steps, "text_steps": _text_steps, "tasks": _tasks, "replayers": _replayers, "zoo": _zoo,
}


def entries(sweep: str) -> list[Any]:
    """The registered names of ``sweep``'s registry as parameters; when its module does not import,
    one case that fails with the import error when it runs."""
    try:
        return SWEEPS[sweep]().list()
    except ImportError as exc:
        return [pytest.param(None, id=f"unimportable-{type(exc).__name__}")]


def registry(sweep: str) -> Registry:
    return SWEEPS[sweep]()


# -- datasets: a declared task, and a tiny load that matches it -----------------------------------


def _tiny_fashion_mnist(tmp_path: Path, write_fmnist) -> Any:
    from torchslim import data

    root = write_fmnist(tmp_path / "fashion-mnist")
    return data.load("fashion-mnist", root=root, val_size=8, download=False, batch_size=8, eval_batch_size=8)


def _tiny_synthetic(tmp_path: Path, write_fmnist) -> Any:
    from torchslim import data

    return data.load("synthetic", batch_size=8, train_size=16, val_size=0, test_size=8)


def _tiny_wordnet(tmp_path: Path, write_fmnist) -> Any:
    pytest.importorskip("transformers")
    from text_helpers import write_tiny_bert, write_wordnet
    from torchslim import data
    from torchslim.text import load_tokenizer

    tokenizer = load_tokenizer(write_tiny_bert(tmp_path / "bert"), max_length=12)
    return data.load("wordnet-glosses", root=write_wordnet(tmp_path / "wordnet"), tokenizer=tokenizer,
                     batch_size=8, train_size=16, seed=0)


# dataset -> a load of a few dozen samples, from files the test writes (never the machine's own data)
TINY_LOADS = {"fashion-mnist": _tiny_fashion_mnist, "synthetic": _tiny_synthetic, "wordnet-glosses": _tiny_wordnet}


@pytest.mark.parametrize("name", entries("datasets"))
def test_every_dataset_declares_a_task_and_loads_tiny_data_of_that_task(name, tmp_path, places, write_fmnist):
    from torchslim.data.registry import TASKS, dataset_task, datasets_of

    registry("datasets")
    task = dataset_task(name)
    assert task in TASKS and name in datasets_of(task)
    if name not in TINY_LOADS:
        pytest.fail(f"dataset {name!r} is registered but this sweep cannot load it: add a tiny load to TINY_LOADS")
    bundle = TINY_LOADS[name](tmp_path, write_fmnist)
    batch = next(iter(bundle.train))
    x = batch["x"] if isinstance(batch, dict) else batch[0]
    if task == "image":  # labelled images: (N, C, H, W) floats, labels in range
        y = batch["y"] if isinstance(batch, dict) else batch[1]
        assert x.ndim == 4 and x.is_floating_point() and tuple(x.shape[1:]) == tuple(bundle.input_shape)
        assert bundle.num_classes > 1 and 0 <= int(y.min()) and int(y.max()) < bundle.num_classes
    else:  # sentences: token ids, no classes
        assert x.ndim == 2 and not x.is_floating_point() and bundle.num_classes == 0


# -- models: eval outputs independent of the batch, a training step that reaches the weights ------


@pytest.mark.parametrize("name", entries("models"))
def test_every_model_is_batch_independent_in_eval_and_trains_on_a_tiny_input(name):
    from torchslim import models

    registry("models")
    torch.manual_seed(0)
    model = models.create(name, num_classes=3, in_channels=2)
    x = torch.randn(3, 2, 28, 28)
    with torch.no_grad():
        together = model.eval()(x)
        alone = model(x[:1])
    assert together.shape == (3, 3) and torch.allclose(together[:1], alone, atol=1e-5)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2])).backward()
    optimizer.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p)]
    assert changed, f"one SGD step changed none of {name}'s parameters"


# -- losses: built from their golden options; two instances never share state ---------------------


@pytest.mark.parametrize("name", entries("losses"))
def test_every_loss_builds_as_its_golden_case_and_instances_share_no_tensor(name):
    import test_distill_losses as golden
    from torchslim.distill.losses.base import KINDS

    registry("losses")
    first, second = golden.golden_case(name)[0], golden.golden_case(name)[0]
    assert isinstance(first, nn.Module) and first.registered_name == name and first.kind in KINDS
    storages = {t.untyped_storage().data_ptr() for t in [*first.parameters(), *first.buffers()] if t.numel()}
    shared = [n for n, t in [*second.named_parameters(), *second.named_buffers()]
              if t.numel() and t.untyped_storage().data_ptr() in storages]
    assert not shared, f"two {name} losses share {shared}: one task's training would move the other's"


# -- importance criteria: one finite score per channel of a tiny conv model -----------------------


@pytest.mark.parametrize("name", entries("importance"))
def test_every_criterion_scores_each_channel_of_a_tiny_conv_model(name, tiny_cnn):
    import torch_pruning as tp

    from torchslim.prune import importance

    registry("importance")
    model, x = tiny_cnn().eval(), torch.randn(4, 1, 12, 12)
    if name in importance.NEEDS_GRADIENTS:
        assert importance.accumulate_gradients(model, [(x, torch.tensor([0, 1, 2, 3]))]) == 1
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=x)
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=list(range(conv.out_channels)))
    scores = importance.create(name)(group)
    assert scores is not None, f"criterion {name!r} gave no score to the first convolution's channels"
    assert scores.shape == (conv.out_channels,) and torch.isfinite(scores).all()
    assert importance.describe(name).strip()


# -- pipeline steps (image and text tasks): typed options, a docstring, a run ---------------------


def _step_classes() -> list[Any]:
    return [pytest.param(sweep, n, id=f"{sweep}:{n}") if isinstance(n, str) else pytest.param(sweep, None)
            for sweep in ("steps", "text_steps") for n in entries(sweep)]


@pytest.mark.parametrize(("sweep", "name"), _step_classes())
def test_every_step_has_typed_options_a_docstring_and_a_run(sweep, name):
    from pydantic import BaseModel

    from torchslim.pipeline.steps import Step

    cls = registry(sweep).get(name)
    assert inspect.isclass(cls) and issubclass(cls, Step) and cls.name == name
    assert inspect.isclass(cls.Params) and issubclass(cls.Params, BaseModel)
    assert (cls.__doc__ or "").strip(), f"step {name!r} ({cls.__qualname__}) has no docstring"
    assert not getattr(cls.run, "__isabstractmethod__", False), f"step {name!r} does not define run"
    assert cls.family in ("structural", "distillation", "training", "source", "deployment", "measurement")


@pytest.mark.parametrize(("sweep", "name"), _step_classes())
def test_every_step_option_is_described(sweep, name):
    params = registry(sweep).get(name).Params
    bare = [field for field, info in params.model_fields.items() if not (info.description or "").strip()]
    assert not bare, f"step {name!r}: options without a description: {', '.join(bare)}"


# -- pipeline tasks: one per task a dataset may declare, each with its datasets and its steps ----


def test_the_tasks_are_the_ones_datasets_declare():
    from torchslim.data.registry import TASKS as DECLARED

    assert sorted(registry("tasks").list()) == sorted(DECLARED)


@pytest.mark.parametrize("name", entries("tasks"))
def test_every_task_has_datasets_and_a_swept_step_registry(name):
    from torchslim.data.registry import datasets_of
    from torchslim.pipeline.tasks import Task

    task = registry("tasks").get(name)
    assert isinstance(task, Task) and task.name == name
    assert datasets_of(name), f"no registered dataset declares the task {name!r}: a recipe could never pick it"
    steps = task.steps
    assert len(steps) and any(steps is registry(s) for s in ("steps", "text_steps")), (
        f"task {name!r} draws its steps from {steps!r}, which no step sweep here covers")
    assert "load" in steps  # every strategy can start from a model it is given


# -- replayers of applied steps: recorded, written as JSON, replayed on a fresh model -------------


def _pruned_channels() -> tuple[Callable[[], nn.Module], nn.Module]:
    from torchslim import models, prune

    def fresh() -> nn.Module:
        torch.manual_seed(0)
        return models.create("cnn-tiny", num_classes=4)

    pruned, _ = prune.channels(fresh(), torch.randn(2, 1, 16, 16), 0.5, "l1")
    return fresh, pruned


# applied-step kind -> (a fresh model's factory, a model that step changed)
PRODUCERS = {"prune.channels": _pruned_channels}


@pytest.mark.parametrize("kind", entries("replayers"))
def test_every_applied_step_kind_round_trips_through_json(kind):
    from torchslim.core.state import applied_steps, replay_steps

    registry("replayers")
    if kind not in PRODUCERS:
        pytest.fail(f"applied-step kind {kind!r} is registered but no producer makes one: add it to PRODUCERS")
    fresh, changed = PRODUCERS[kind]()
    steps = json.loads(json.dumps(applied_steps(changed)))
    assert [s["kind"] for s in steps] == [kind]
    rebuilt = replay_steps(fresh(), steps, "test")
    rebuilt.load_state_dict(changed.state_dict())  # strict: the same architecture, tensor for tensor
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(rebuilt.eval()(x), changed.eval()(x)) and applied_steps(rebuilt) == steps


def test_every_applied_step_kind_names_the_module_that_registers_it():
    from torchslim.core.state import PROVIDERS, REPLAYERS

    find_registries()  # every module imported: every kind registered, wherever it is
    unnamed = [kind for kind in REPLAYERS.list() if kind not in PROVIDERS]
    assert not unnamed, f"kinds with no entry in torchslim.core.state.PROVIDERS (a fresh process cannot replay them): {unnamed}"
    assert all(module.startswith("torchslim.") for module in PROVIDERS.values())


@pytest.mark.parametrize("kind", entries("replayers"))
def test_every_applied_step_kind_loads_in_a_fresh_process(kind, tmp_path):
    from torchslim.core.state import applied_steps
    from torchslim.models.checkpoint import save_model

    registry("replayers")
    if kind not in PRODUCERS:
        pytest.fail(f"applied-step kind {kind!r} is registered but no producer makes one: add it to PRODUCERS")
    _, changed = PRODUCERS[kind]()
    save_model(changed, tmp_path / "model")
    # Only torchslim is imported there: the module that registers the kind is not, until loading needs it.
    code = ("import sys, torchslim; m, meta = torchslim.load_model(sys.argv[1]); "
            "print(sum(p.numel() for p in m.parameters()), [s['kind'] for s in meta['applied_steps']])")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model")], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    expected = f"{sum(p.numel() for p in changed.parameters())} {[s['kind'] for s in applied_steps(changed)]}"
    assert done.stdout.strip() == expected


# -- shipped models: files present, and a model.json naming registered families ------------------


@pytest.mark.parametrize("name", entries("zoo"))
def test_every_shipped_model_names_a_registered_family_and_dataset(name):
    from torchslim import data, models, zoo
    from torchslim.models.checkpoint import read_meta

    registry("zoo")
    directory = zoo.path(name)
    assert (directory / "MODEL_CARD.md").is_file() and (directory / "model.safetensors").is_file()
    meta = read_meta(directory)
    assert meta["model"]["name"] in models.list()
    if meta.get("data"):
        assert meta["data"]["name"] in data.list()


# -- the meta-test: no registry escapes the sweeps above ------------------------------------------


def _is_missing_extra(exc: ImportError) -> bool:
    """An optional extra that is not installed: a third-party module missing (not a torchslim one)."""
    return isinstance(exc, ModuleNotFoundError) and bool(exc.name) and not exc.name.startswith("torchslim")


def find_registries() -> tuple[dict[int, tuple[str, Registry]], list[str]]:
    """Every Registry in the globals of every torchslim module (``__main__`` modules, which run the
    CLI, left out), by identity; and the modules skipped because an optional extra is missing."""
    found: dict[int, tuple[str, Registry]] = {}
    skipped = []
    for info in pkgutil.walk_packages(torchslim.__path__, prefix="torchslim."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError as exc:
            if not _is_missing_extra(exc):
                raise
            skipped.append(f"{info.name} (needs {exc.name})")
            continue
        for attr, value in vars(module).items():
            if isinstance(value, Registry):
                found.setdefault(id(value), (f"{module.__name__}.{attr}", value))
    return found, skipped


def test_every_registry_in_the_package_is_swept_here():
    found, skipped = find_registries()
    swept = {id(loader()) for loader in SWEEPS.values()}
    missing = sorted(f"{where} ({reg.kind!r}, {len(reg)} entries)" for key, (where, reg) in found.items()
                     if key not in swept)
    assert not missing, ("registries no sweep in tests/test_registries.py covers; add each to SWEEPS with a "
                         f"test over its entries: {', '.join(missing)}" +
                         (f" (modules skipped for a missing extra: {', '.join(skipped)})" if skipped else ""))
    assert len(found) >= len(SWEEPS)  # each sweep's registry was found by the walk too
    empty = [name for name, loader in SWEEPS.items() if not len(loader())]
    assert not empty, f"sweeps over an empty registry (their loader registers nothing; they test nothing): {empty}"
