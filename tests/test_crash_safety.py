"""Crash safety: no state leaks between steps, records complete or absent, a full disk is a clear
error with nothing left behind, and no temporary file outlives a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tiny_disk import dead_pid, grow, leftovers, plant_leftovers, tiny_disk
from torchslim import data, models, save_model
from torchslim.cli import main as cli
from torchslim.core.errors import DiskFullError, NonFiniteLossError
from torchslim.core.io import atomic_write_bytes, atomic_write_json
from torchslim.core.tensors import read_tensors
from torchslim.core.training_state import find_training_state, save_training_state
from torchslim.distill import DistillTask
from torchslim.distill import losses as L
from torchslim.distill.cache import TeacherCache
from torchslim.train import fit

TRAIN = ["train", "--model", "cnn-tiny", "--data", "synthetic", "--batch-size", "64", "--epochs", "2",
         "--threads", "1", "--quiet"]


def augmented(seed: int = 2):
    return data.load("synthetic", batch_size=32, train_size=128, val_size=32, test_size=64, noise=2.0,
                     seed=seed, augment=True)


def fresh(name: str = "cnn-tiny", seed: int = 0):
    torch.manual_seed(seed)
    return models.create(name, num_classes=4)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


# -- no state leaks between steps -------------------------------------------------------------------


def test_cached_distill_gives_the_shared_loader_back_as_it_was():
    bundle = augmented()
    sampler = bundle.train.sampler
    sampler.set_epoch(5)
    with DistillTask(fresh(), fresh("resnet8", 1), [L.create("kd")]) as task:
        task.use_cache(bundle.train, draws=2, log=lambda m: None)
        assert sampler.epoch == 5  # building the cache ran on a private copy of the sampler
        assert sampler.cycle == 2  # while the task lives, the loader replays the recorded draws
        task.use_cache(bundle.train, draws=3, log=lambda m: None)  # a second cache, then closed
    assert sampler.cycle is None and sampler.epoch == 5


def test_train_after_cached_distill_matches_train_alone_bitwise():
    def train(bundle):
        model = fresh(seed=3)
        fit(model, bundle, 3, lr=0.05, seed=4, progress=False)
        return model.state_dict()

    shared = augmented()
    with DistillTask(fresh(), fresh("resnet8", 1), [L.create("kd")]) as task:
        task.use_cache(shared.train, draws=1, log=lambda m: None)
        fit(task, shared, 1, lr=0.05, progress=False)
    assert_same_weights(train(shared), train(augmented()))


def test_fit_gives_the_sampler_back_as_it_came_even_when_it_fails():
    bundle = augmented()
    fit(fresh(), bundle, 2, lr=0.05, progress=False)
    assert bundle.train.sampler.epoch == 0  # a later step iterating the loader sees epoch 0, as alone
    with pytest.raises(NonFiniteLossError):
        fit(Exploding(after=6), bundle, 3, progress=False)
    assert bundle.train.sampler.epoch == 0


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    model = fresh("cnn-tiny", 5)
    fit(model, augmented(), 1, lr=0.05, progress=False)
    return save_model(model, tmp_path_factory.mktemp("teacher") / "teacher")


def recipe(tmp_path: Path, teacher: Path) -> Path:
    distill = {"distill": {"student": "cnn-tiny", "epochs": 1, "cache": "memory", "cache_draws": 1, "lr": 0.05}}
    body = {"version": 1, "name": "leak", "teacher": str(teacher), "threads": 1,
            "data": {"name": "synthetic", "batch_size": 32, "augment": True,
                     "options": {"train_size": 128, "val_size": 32, "test_size": 64, "noise": 2.0}},
            "strategies": {"kd": [distill], "kd_then_train": [distill, {"train": {"epochs": 3, "lr": 0.05}}]}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def test_recipe_train_step_after_cached_distill_matches_it_run_alone(tmp_path, teacher_dir):
    from torchslim.pipeline import run

    path = recipe(tmp_path, teacher_dir)
    quiet = {"progress": False, "log": lambda m: None}
    together = run(path, tmp_path / "together", strategy="kd_then_train", **quiet)
    run(path, tmp_path / "apart", strategy="kd", **quiet)  # the distill step, then a new process' view:
    apart = run(path, tmp_path / "apart", strategy="kd_then_train", **quiet)
    assert apart.steps[0]["reused"] and not apart.steps[1]["reused"]
    assert_same_weights(read_tensors(together.final.weights), read_tensors(apart.final.weights))


# -- a full disk -----------------------------------------------------------------------------------


def test_full_disk_atomic_write_is_clear_and_keeps_the_old_file(tmp_path):
    with tiny_disk(tmp_path / "disk", "64k") as disk:
        atomic_write_json(disk / "metrics.json", {"ok": 1})
        with pytest.raises(DiskFullError) as err:
            atomic_write_bytes(disk / "metrics.json", b"x" * 200_000)
        text = str(err.value)
        assert str(disk / "metrics.json") in text and "needs about 195.3 KB" in text and "free" in text
        assert json.loads((disk / "metrics.json").read_text()) == {"ok": 1}
        assert leftovers(disk) == []


def test_full_disk_training_state_keeps_the_last_one(tmp_path):
    model = fresh()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 1, 16, 16)).sum().backward()
    opt.step()
    with tiny_disk(tmp_path / "disk", "80k") as disk:
        save_training_state(disk, model, opt, {"epoch": 0, "config": {}, "history": []})
        with pytest.raises(DiskFullError, match="Not enough disk space to write .*last"):
            save_training_state(disk, model, opt, {"epoch": 1, "config": {}, "history": []})
        assert find_training_state(disk) == disk / "last"
        assert json.loads((disk / "last" / "state.json").read_text())["epoch"] == 0
        assert leftovers(disk) == []


def test_full_disk_teacher_cache_leaves_no_partial_file(tmp_path):
    bundle = augmented()
    with tiny_disk(tmp_path / "disk", "4k") as disk:  # the logits of 4 draws take 8 kB
        with pytest.raises(DiskFullError) as err:
            TeacherCache(fresh("resnet8", 1), bundle.train, draws=4, directory=disk / "teacher", log=lambda m: None)
        assert "needs about" in str(err.value) and str(disk / "teacher") in str(err.value)
        assert leftovers(disk) == [] and not any((disk / "teacher").iterdir())


def test_short_write_without_errno_is_a_full_disk(tmp_path, monkeypatch):
    # numpy reports a short write as a bare OSError("N requested and M written"), errno unset.
    def short_write(path, array):
        Path(path).write_bytes(b"\x93NUMPY partial")
        raise OSError(f"{array.nbytes} requested and 16352 written")

    monkeypatch.setattr(np, "save", short_write)
    with pytest.raises(DiskFullError, match="requested and 16352 written"):
        TeacherCache(fresh("resnet8", 1), augmented().train, directory=tmp_path / "teacher", log=lambda m: None)
    assert leftovers(tmp_path) == [] and not any((tmp_path / "teacher").iterdir())


def test_full_disk_cli_train_exits_2_then_resumes_to_the_same_weights(tmp_path, capsys):
    reference = tmp_path / "reference"
    assert cli([*TRAIN, "--out", str(reference)]) == 0
    with tiny_disk(tmp_path / "disk", "56k") as disk:
        out = disk / "run"
        assert cli([*TRAIN, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "Not enough disk space to write" in err and str(out) in err and "Traceback" not in err
        assert leftovers(disk) == [] and not (out / "model.json").exists()
        grow(disk, "4m")
        assert cli([*TRAIN, "--out", str(out)]) == 0
        assert_same_weights(read_tensors(reference / "model.safetensors"), read_tensors(out / "model.safetensors"))
        assert leftovers(disk) == []


def test_file_size_limit_in_a_subprocess_is_a_clear_error(tmp_path):
    # Without root: RLIMIT_FSIZE makes every write past 40 kB fail with EFBIG (SIGXFSZ ignored).
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))
        from torchslim.cli import main
        sys.exit(main({[*TRAIN, "--out", str(tmp_path / "run")]!r}))
        """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 2, proc.stderr
    assert "Not enough disk space to write" in proc.stderr and "Traceback" not in proc.stderr
    assert leftovers(tmp_path) == []


# -- records complete or absent; nothing left behind ------------------------------------------------


def test_half_written_records_resume_to_the_same_weights(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli([*TRAIN, "--out", str(out)]) == 0
    finished = read_tensors(out / "model.safetensors")
    for removed in (["model.json"], ["model.json", "model.safetensors"], ["model.json", "metrics.json"]):
        for name in removed:  # a kill between the commit's writes
            (out / name).unlink()
        assert cli([*TRAIN, "--out", str(out)]) == 0
        assert "test accuracy" in capsys.readouterr().out
        assert_same_weights(finished, read_tensors(out / "model.safetensors"))
        assert (out / "model.json").is_file() and (out / "metrics.json").is_file()
    assert cli([*TRAIN, "--out", str(out)]) == 0  # finished: says so and does nothing
    assert "already holds this run, finished" in capsys.readouterr().out


def test_leftovers_of_killed_writers_are_removed_on_resume(tmp_path):
    out = tmp_path / "run"
    pid = dead_pid()
    planted = plant_leftovers(out, pid, ["model.safetensors", "model.json", "metrics.json"])
    planted += plant_leftovers(out / "checkpoints", pid, ["stage", "run.json"])
    planted += plant_leftovers(out / "cache" / "teacher", pid, ["0123456789abcdef01234567/"])
    assert cli([*TRAIN, "--out", str(out)]) == 0
    assert leftovers(out) == [], "a killed writer's temporary files outlived the run"
    assert not any(p.exists() for p in planted)


def test_a_live_writers_files_are_kept(tmp_path):
    from torchslim.core.io import sweep

    live = plant_leftovers(tmp_path, os.getppid(), ["model.json", "stage"])
    assert sweep(tmp_path) == [] and all(p.exists() for p in live)


# -- NaN / Inf ---------------------------------------------------------------------------------------


class Exploding(torch.nn.Module):
    def __init__(self, after: int):
        super().__init__()
        self.net, self.after, self.calls = fresh(), after, 0

    def forward(self, x):
        self.calls += 1
        out = self.net(x)
        return out * float("nan") if self.calls > self.after else out


def test_nan_message_names_the_kept_checkpoint(tmp_path):
    bundle = data.load("synthetic", batch_size=32, train_size=128, val_size=32, test_size=64)
    with pytest.raises(NonFiniteLossError) as err:
        fit(Exploding(after=6), bundle, 3, checkpoint_dir=tmp_path, progress=False)  # 4 steps + 1 val batch
    assert f"kept in {tmp_path / 'last'}" in str(err.value) and (tmp_path / "last" / "state.json").is_file()


@pytest.mark.parametrize("with_dir", [True, False])
def test_nan_message_says_no_checkpoint_when_none_was_kept(tmp_path, with_dir):
    bundle = data.load("synthetic", batch_size=32, train_size=128, val_size=32, test_size=64)
    with pytest.raises(NonFiniteLossError) as err:
        fit(Exploding(after=2), bundle, 2, checkpoint_dir=tmp_path if with_dir else None, progress=False)
    text = str(err.value)
    assert "No checkpoint was kept" in text and "kept in" not in text
    assert ("before the first epoch ended" if with_dir else "no checkpoint directory") in text
    assert not list(tmp_path.iterdir())


def test_temporary_names_carry_their_writer_and_nothing_else_matches(tmp_path):
    from torchslim.core.io import owner_pid, stage_path, temp_path

    assert owner_pid(temp_path(tmp_path / "model.safetensors").name) == os.getpid()
    assert owner_pid(stage_path(tmp_path).name) == os.getpid()
    assert owner_pid(".0123456789abcdef01234567.4242.tmp") == 4242  # a teacher cache's staging folder
    for name in ("model.json", ".model.json", "last.old", "state.tmp", ".x.abc.tmp", ".stage-x"):
        assert owner_pid(name) is None, name


def test_sweep_goes_only_a_few_levels_deep(tmp_path):
    from torchslim.core.io import sweep

    pid = dead_pid()
    [near] = plant_leftovers(tmp_path / "a" / "b", pid, ["x.json"])
    [far] = plant_leftovers(tmp_path / "a" / "b" / "c" / "d", pid, ["x.json"])
    assert sweep(tmp_path) == [near] and far.exists()
