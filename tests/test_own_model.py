"""Any nn.Module as teacher or student: the README's "Your own model" code, run as written, through
every strategy of the default recipe; a teacher directory of the user's own architecture; a
``module:function`` factory; and the same numbers (and every step reused) in a second process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torchslim as ts
from torchslim.core.errors import CheckpointError, TorchSlimError
from torchslim.pipeline import compare, load_recipe, run

REPO = Path(__file__).resolve().parents[1]
QUIET = {"progress": False, "log": lambda _: None}

# The README's block, copied; the test checks it is still the README's, then runs it.
README_BLOCK = '''\
import torchslim as ts
from torchslim.pipeline import compare, load_recipe

def make_student(num_classes, in_channels, width=32):        # any nn.Module factory
    return MyNet(num_classes, in_channels, width)

teacher, _ = ts.load_model("runs/my-teacher", model=MyNet(4, 3, width=64))  # saved by ts.save_model; or any nn.Module
data = ts.data.from_loaders(train_loader, test_loader, val=val_loader)   # read once, in index order, kept in memory
matrix = compare(load_recipe("my-recipe.yaml"), "runs/mine",
                 models={"mynet": make_student}, teacher=teacher, data=data)
print(matrix["recommendations"]["balanced"]["text"])
'''


class MyNet(nn.Module):
    """Not a torchslim model family: a stem, a depthwise conv, a pointwise conv and a linear head."""

    def __init__(self, num_classes: int, in_channels: int, width: float = 32) -> None:
        super().__init__()
        w = max(4, int(width) // 4)  # kept tiny: the test trains it on a CPU shared by others
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1, groups=w, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(2 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def make_loaders(seed: int = 0, n: tuple[int, int, int] = (96, 32, 32)) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Plain torch DataLoaders of 3-channel 16x16 images in 4 classes (a prototype per class plus
    noise); the training loader shuffles, as users' loaders do."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(4, 3, 16, 16, generator=g)

    def split(size: int) -> TensorDataset:
        y = torch.randint(0, 4, (size,), generator=g)
        return TensorDataset(prototypes[y] + 0.8 * torch.randn(size, 3, 16, 16, generator=g), y)

    train, val, test = (split(k) for k in n)
    return (DataLoader(train, batch_size=16, shuffle=True), DataLoader(test, batch_size=16),
            DataLoader(val, batch_size=16))


def default_recipe_for_mynet(path: Path) -> Path:
    """recipes/fashion-mnist.yaml with the student named `mynet` (as the README says), one epoch
    per training step and a short measurement: every strategy, in seconds."""
    text = (REPO / "recipes" / "fashion-mnist.yaml").read_text().replace("cnn-small", "mynet")
    recipe = yaml.safe_load(text)
    for steps in recipe["strategies"].values():
        for step in steps:
            for params in (v for v in step.values() if isinstance(v, dict)):
                if "epochs" in params:
                    params["epochs"] = 1
                params.pop("cache_draws", None)
    recipe["measure"] = {"batch_sizes": [1, 8], "thread_counts": [1], "rounds": 1, "min_seconds": 0.01}
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def trained_teacher(train_loader: DataLoader) -> MyNet:
    torch.manual_seed(0)
    teacher = MyNet(4, 3, width=64)
    ts.fit(teacher, ts.data.from_loaders(train_loader, train_loader, batch_size=32), 1, progress=False,
           channels_last=False, lr=0.05)
    return teacher


def test_readme_block_is_the_readmes():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Your own model"):]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert block == README_BLOCK


def test_readme_own_model_runs_every_default_strategy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train_loader, test_loader, val_loader = make_loaders()
    ts.save_model(trained_teacher(train_loader), "runs/my-teacher")
    default_recipe_for_mynet(tmp_path / "my-recipe.yaml")
    namespace = {"MyNet": MyNet, "train_loader": train_loader, "test_loader": test_loader,
                 "val_loader": val_loader}
    exec(compile(README_BLOCK, "README.md (Your own model)", "exec"), namespace)  # noqa: S102
    matrix = namespace["matrix"]
    strategies = list(load_recipe(REPO / "recipes" / "fashion-mnist.yaml").strategies)
    assert not matrix["failed"], matrix["failed"]
    assert sorted({r["strategy"] for r in matrix["rows"]}) == sorted(strategies)
    assert all(r["status"] == "ok" for r in matrix["rows"])
    # the teacher's shared steps were saved once and reloaded by the strategies that share them
    reused = {name: json.loads((tmp_path / "runs/mine/strategies" / f"{name}.json").read_text())["steps"]
              for name in strategies}
    assert any(s["reused"] for s in reused["teacher-pruned-distilled"])
    # calibration_batches: 16 on a one-batch validation split is said and recorded, not silent
    quantize = reused["teacher-int8"][-1]
    assert any("16" in w and "1" in w and "calibration" in w for w in quantize["warnings"]), quantize["warnings"]
    # a saved teacher-derived step names how it is rebuilt: the teacher given + its applied steps
    pruned = next((tmp_path / "runs/mine/steps").glob("01-prune-*/model/model.json"))
    meta = json.loads(pruned.read_text())
    assert meta["model"]["teacher"] and meta["applied_steps"][0]["kind"] == "prune.channels"


def small_recipe(tmp_path: Path, teacher: str, student: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(f"""
        version: 1
        name: own
        teacher: {teacher}
        measure: {{batch_sizes: [4], thread_counts: [1], rounds: 1, min_seconds: 0.01}}
        strategies:
          teacher: [load]
          pruned:
            - load: teacher
            - prune: {{ratio: 0.5}}
            - train: {{epochs: 1, lr: 0.01, channels_last: false}}
          pruned-int8:
            - load: teacher
            - prune: {{ratio: 0.5}}
            - quantize: {{calibration_batches: 1}}
          sparse:
            - load: teacher
            - sparsify: {{sparsity: 0.5}}
          student:
            - distill: {{student: "{student}", epochs: 1, channels_last: false, model_kwargs: {{width: 16}}}}
        """))
    return path


def test_teacher_directory_of_own_architecture_with_models(tmp_path):
    train_loader, test_loader, val_loader = make_loaders()
    data = ts.data.from_loaders(train_loader, test_loader, val=val_loader)
    teacher = trained_teacher(train_loader)

    def mynet(num_classes, in_channels, width=32):
        return MyNet(num_classes, in_channels, width)

    plain = ts.save_model(teacher, tmp_path / "plain-teacher")
    recipe = small_recipe(tmp_path, plain, "mynet")
    with pytest.raises(TorchSlimError, match=r"factory=NAME.*models=\{NAME: factory\}"):
        run(recipe, tmp_path / "out0", strategy="teacher", models={"mynet": mynet}, data=data, **QUIET)
    saved = ts.save_model(teacher, tmp_path / "my-teacher", factory="mynet", factory_kwargs={"width": 64})
    recipe = small_recipe(tmp_path, saved, "mynet", "r2.yaml")
    matrix = compare(recipe, tmp_path / "out", models={"mynet": mynet}, data=data, **QUIET)
    assert not matrix["failed"], matrix["failed"]
    again = compare(recipe, tmp_path / "out", models={"mynet": mynet}, data=data, **QUIET)
    assert again["rows"] and not again["failed"]
    for name in ("pruned", "pruned-int8", "sparse", "student"):
        steps = json.loads((tmp_path / "out/strategies" / f"{name}.json").read_text())["steps"]
        assert all(s["reused"] for s in steps), (name, steps)
    # without the factory, a saved step says how to make it loadable
    step = next((tmp_path / "out/steps").glob("01-prune-*/model"))
    with pytest.raises(CheckpointError, match="factory 'mynet'"):
        ts.load_model(step)
    model, _ = ts.load_model(step, model=mynet(4, 3, width=64))  # the applied steps replayed on a fresh one
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in teacher.parameters())


def test_module_function_factory_with_allow_import(tmp_path, monkeypatch):
    package = tmp_path / "own_nets_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent("""
        from torch import nn

        def tiny(num_classes, in_channels, width=16):
            w = int(width)
            return nn.Sequential(nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(w, w, 3, padding=1, groups=w), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w, num_classes))

        def trained(num_classes, in_channels):  # a teacher factory gives the same weights every call
            import torch
            torch.manual_seed(0)
            return tiny(num_classes, in_channels, width=24)
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    train_loader, test_loader, val_loader = make_loaders()
    data = ts.data.from_loaders(train_loader, test_loader, val=val_loader)
    torch.manual_seed(0)
    import own_nets_pkg

    teacher = own_nets_pkg.tiny(4, 3, width=24)
    saved = ts.save_model(teacher, tmp_path / "t", factory="own_nets_pkg:tiny", factory_kwargs={"width": 24})
    recipe = small_recipe(tmp_path, saved, "own_nets_pkg:tiny")
    matrix = compare(recipe, tmp_path / "out", data=data, allow_imports=("own_nets_pkg",), **QUIET)
    assert not matrix["failed"], matrix["failed"]
    # the teacher itself as `module:function`: a later strategy reloads the shared pruned step from disk
    recipe = small_recipe(tmp_path, '"own_nets_pkg:trained"', "own_nets_pkg:tiny", "r3.yaml")
    first = run(recipe, tmp_path / "out3", strategy="pruned", data=data, allow_imports=("own_nets_pkg",), **QUIET)
    second = run(recipe, tmp_path / "out3", strategy="pruned-int8", data=data, allow_imports=("own_nets_pkg",),
                 resume=True, **QUIET)
    assert [s["reused"] for s in second.steps] == [True, True, False]
    assert first.steps[1]["key"] == second.steps[1]["key"]
    # the object given as teacher= works the same, with no factory at all
    matrix = compare(recipe, tmp_path / "out2", data=data, teacher=teacher, allow_imports=("own_nets_pkg",),
                     **QUIET)
    assert not matrix["failed"], matrix["failed"]


REPRO_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from test_own_model import MyNet, make_loaders, trained_teacher
import torchslim as ts
from torchslim.pipeline import compare

train, test, val = make_loaders()
teacher = trained_teacher(train)
data = ts.data.from_loaders(train, test, val=val)
matrix = compare({recipe!r}, {out!r}, resume=True, teacher=teacher, data=data,
                 models={{"mynet": lambda num_classes, in_channels, width=16: MyNet(num_classes, in_channels, width)}},
                 progress=False, log=lambda _: None)
rows = {{r["strategy"]: r["accuracy"] for r in matrix["rows"]}}
reused = {{}}
for name in rows:
    steps = json.load(open({out!r} + "/strategies/" + name + ".json"))["steps"]
    reused[name] = [s["reused"] for s in steps]
print(json.dumps({{"accuracy": rows, "reused": reused, "failed": matrix["failed"]}}))
"""


def test_same_recipe_and_seed_give_the_same_numbers_in_another_process(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent("""
        version: 1
        name: repro
        seed: 3
        measure: {batch_sizes: [4], thread_counts: [1], rounds: 1, min_seconds: 0.01}
        strategies:
          teacher: [load]
          student:
            - train: {model: mynet, epochs: 1, lr: 0.05, channels_last: false}
        """))
    script = tmp_path / "run.py"
    script.write_text(REPRO_SCRIPT.format(tests=str(Path(__file__).parent), recipe=str(recipe),
                                          out=str(tmp_path / "out")))
    runs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                              env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert not first["failed"] and first["accuracy"] == second["accuracy"]
    assert not any(any(r) for r in first["reused"].values())
    assert all(all(r) for r in second["reused"].values()), second["reused"]
