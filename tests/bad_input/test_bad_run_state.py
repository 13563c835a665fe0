"""Bad run state: what a kill, a full disk or a hand edit leaves in an output folder, and what the
same command then does (a clear exit 2 naming the file and the way out, or a resume that leaves
nothing behind)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from tiny_disk import dead_pid, leftovers, plant_leftovers, tiny_disk
from torchslim import models
from torchslim.core.errors import CheckpointError
from torchslim.core.training_state import find_training_state, load_training_state, save_training_state
from torchslim.distill.cache import TeacherCache

BASE = ["--model", "cnn-tiny", "--data", "synthetic", "--batch-size", "64", "--epochs", "1", "--threads", "1",
        "--quiet"]
DISTILL = ["--teachers", "{teacher}", "--student", "cnn-tiny", "--losses", "kd", "--cache", "disk", "--data",
           "synthetic", "--batch-size", "64", "--epochs", "1", "--threads", "1", "--quiet"]


def train(out: Path, *extra: str) -> list[str]:
    return ["train", *BASE, "--out", str(out), *extra]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished `torchslim train` run (copied into each case's output folder)."""
    from torchslim.cli import main

    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(train(out)) == 0
    return out


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, finished) -> Path:
    """A finished `torchslim distill --cache disk` run whose teacher is ``finished``."""
    from torchslim.cli import main

    out = tmp_path_factory.mktemp("distilled") / "run"
    assert main(["distill", *[a.format(teacher=finished) for a in DISTILL], "--out", str(out)]) == 0
    return out


def copy_run(source: Path, sandbox) -> Path:
    shutil.copytree(source, sandbox.out)
    return sandbox.out


# -- a finished run, rerun ------------------------------------------------------------------------


def test_finished_run_rerun_says_done_and_exits_0(sandbox, finished):
    out = copy_run(finished, sandbox)
    stamp = (out / "model.json").stat().st_mtime_ns
    code, stdout, _ = sandbox.cli(*train(out))
    assert code == 0 and "already holds this run, finished" in stdout and "--force" in stdout
    assert (out / "model.json").stat().st_mtime_ns == stamp  # nothing was retrained


@pytest.mark.parametrize(("extra", "needles"), [
    (["--epochs", "2"], ["--epochs: 1 there, 2 now"]),
    (["--lr", "0.01", "--seed", "4"], ["--lr: None there, 0.01 now", "--seed: 0 there, 4 now"]),
    (["--no-augment"], ["--no-augment: False there, True now"]),
    (["--model", "cnn-small"], ["--model: 'cnn-tiny' there, 'cnn-small' now"]),
], ids=["epochs", "lr-and-seed", "augment", "model"])
def test_finished_run_of_other_options_names_what_differs(sandbox, finished, extra, needles):
    out = copy_run(finished, sandbox)
    sandbox.expect_exit_2(sandbox.cli(*train(out), *extra), str(out), "finished run with other options",
                          *needles, "--force")


def test_finished_train_run_is_not_a_distill_run(sandbox, finished):
    out = copy_run(finished, sandbox)
    argv = [a.format(teacher=finished) for a in DISTILL]
    sandbox.expect_exit_2(sandbox.cli("distill", *argv, "--out", out), "--command: 'train' there, 'distill' now",
                          "--force")


def test_force_discards_a_finished_run_of_other_options(sandbox, finished):
    out = copy_run(finished, sandbox)
    code, stdout, err = sandbox.cli(*train(out), "--epochs", "2", "--force")
    assert code == 0, err
    assert json.loads((out / "model.json").read_text())["run"]["epochs"] == 2


# -- a damaged or half-written record -------------------------------------------------------------


def _weights_missing(out: Path) -> None:
    (out / "model.safetensors").unlink()


def _weights_changed(out: Path) -> None:
    data = bytearray((out / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (out / "model.safetensors").write_bytes(bytes(data))


def _meta_not_json(out: Path) -> None:
    (out / "model.json").write_text('{"format": 1, "sha256": ')


def _meta_without_options(out: Path) -> None:
    meta = json.loads((out / "model.json").read_text())
    del meta["run"]
    (out / "model.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(("damage", "needles"), [
    (_weights_missing, ["damaged record", "model.safetensors is missing", "--force"]),
    (_weights_changed, ["damaged record", "does not match the SHA-256", "--force"]),
    (_meta_not_json, ["model.json", "JSON"]),
    (_meta_without_options, ["options were not recorded", "--force"]),
], ids=["weights-missing", "weights-changed", "json-cut-short", "options-not-recorded"])
def test_damaged_record_is_refused_with_the_way_out(sandbox, finished, damage: Callable, needles):
    out = copy_run(finished, sandbox)
    damage(out)
    sandbox.expect_exit_2(sandbox.cli(*train(out)), str(out), *needles)


@pytest.mark.parametrize("killed_before", ["model.json", "model.safetensors", "metrics.json"])
def test_half_written_record_is_resumed_by_the_same_command(sandbox, finished, killed_before):
    out = copy_run(finished, sandbox)
    order = ["metrics.json", "model.safetensors", "model.json"]  # the commit's order
    for name in order[order.index(killed_before):]:
        (out / name).unlink()
    code, stdout, err = sandbox.cli(*train(out))
    assert code == 0 and "test accuracy" in stdout, err
    assert all((out / name).is_file() for name in order) and leftovers(out) == []


def test_leftovers_of_a_killed_writer_are_removed(sandbox, finished):
    out = copy_run(finished, sandbox)
    (out / "model.json").unlink()
    pid = dead_pid()
    planted = plant_leftovers(out, pid, ["model.json", "model.safetensors"])
    planted += plant_leftovers(out / "checkpoints", pid, ["stage", "run.json"])
    code, _, err = sandbox.cli(*train(out))
    assert code == 0, err
    assert leftovers(out) == [] and not any(p.exists() for p in planted)


# -- an unfinished run: its options and its training state -----------------------------------------


def _unfinished(finished: Path, sandbox) -> Path:
    out = copy_run(finished, sandbox)
    for name in ("model.json", "model.safetensors", "metrics.json"):
        (out / name).unlink()
    return out


def test_unfinished_run_of_other_options_names_what_differs(sandbox, finished):
    out = _unfinished(finished, sandbox)
    sandbox.expect_exit_2(sandbox.cli(*train(out), "--batch-size", "32"), "unfinished run with other options",
                          "--batch-size: 64 there, 32 now", "same command as before", "--force")


def test_unfinished_run_options_file_damaged(sandbox, finished):
    out = _unfinished(finished, sandbox)
    (out / "checkpoints" / "run.json").write_text("{not json")
    sandbox.expect_exit_2(sandbox.cli(*train(out)), str(out / "checkpoints" / "run.json"), "damaged", "--force")


def _state_tensors_garbage(last: Path) -> None:
    (last / "state.safetensors").write_bytes(b"\x00" * 64)


def _state_tensors_truncated(last: Path) -> None:
    data = (last / "state.safetensors").read_bytes()
    (last / "state.safetensors").write_bytes(data[: len(data) // 2])


def _state_json_garbage(last: Path) -> None:
    (last / "state.json").write_text("{\"epoch\": 0,")


def _state_json_incomplete(last: Path) -> None:
    (last / "state.json").write_text(json.dumps({"format": 1, "epoch": 0}))


def _state_of_another_model(last: Path) -> None:
    model = models.create("cnn-small", num_classes=4)
    save_training_state(last.parent, model, torch.optim.SGD(model.parameters(), lr=0.1),
                        {"epoch": 0, "config": {}, "history": []})


@pytest.mark.parametrize(("damage", "needles"), [
    (_state_tensors_garbage, ["training state is damaged", "state.safetensors", "--force"]),
    (_state_tensors_truncated, ["training state is damaged", "state.safetensors", "--force"]),
    (_state_json_garbage, ["state.json is damaged", "--force"]),
    (_state_json_incomplete, ["incomplete", "optimizer", "config", "history", "--force"]),
    (_state_of_another_model, ["does not fit this model", "--force"]),
], ids=["tensors-garbage", "tensors-truncated", "json-garbage", "json-incomplete", "another-model"])
def test_damaged_training_checkpoint_is_a_clear_error(sandbox, finished, damage: Callable, needles):
    out = _unfinished(finished, sandbox)
    damage(out / "checkpoints" / "last")
    sandbox.expect_exit_2(sandbox.cli(*train(out)), str(out / "checkpoints" / "last"), *needles)


def test_damaged_training_checkpoint_through_the_api(sandbox):
    model = models.create("cnn-tiny", num_classes=4)
    save_training_state(sandbox.out, model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                        {"epoch": 0, "config": {}, "history": []})
    other = models.create("cnn-tiny", num_classes=4)
    wrong = torch.optim.SGD([next(other.parameters())], lr=0.1)  # one parameter group of one tensor
    exc = sandbox.call(lambda: load_training_state(find_training_state(sandbox.out), other, wrong), CheckpointError)
    sandbox.expect_message(exc, "optimizer", str(sandbox.out / "last"), "--force")


# -- the teacher cache on disk ----------------------------------------------------------------------


def _cache_file(out: Path, name: str) -> Path:
    [path] = (out / "cache" / "teacher").glob(f"*/{name}")
    return path


@pytest.mark.parametrize("damage", ["values-truncated", "meta-garbage", "values-missing"])
def test_damaged_teacher_cache_is_rebuilt_with_a_message(sandbox, finished, distilled, damage):
    out = copy_run(distilled, sandbox)
    (out / "model.json").unlink()  # an unfinished run: the resume reads the cache
    values = _cache_file(out, "values.npy")
    if damage == "values-truncated":
        values.write_bytes(values.read_bytes()[:200])
    elif damage == "meta-garbage":
        _cache_file(out, "meta.json").write_text("{")
    else:
        values.unlink()
    code, stdout, err = sandbox.cli("distill", *[a.format(teacher=finished) for a in DISTILL], "--out", out)
    assert code == 0, err
    said = " ".join(stdout.split())  # the console wraps long lines
    assert "is damaged" in said and "rebuilding it" in said
    assert np.load(_cache_file(out, "values.npy")).shape[1] == 512 and leftovers(out) == []


def test_stale_teacher_cache_staging_folder_is_removed(sandbox):
    from torchslim import data

    bundle = data.load("synthetic", batch_size=64)
    [stage] = plant_leftovers(sandbox.out / "teacher", dead_pid(), ["0123456789abcdef01234567/"])
    messages: list[str] = []
    TeacherCache(models.create("cnn-tiny", num_classes=4), bundle.train, directory=sandbox.out / "teacher",
                 log=messages.append)
    assert not stage.exists() and leftovers(sandbox.out) == []


# -- a full disk ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("command", "size"), [("train", "48k"), ("distill", "8k")])
def test_full_disk_is_exit_2_naming_the_path_and_space(sandbox, finished, command, size):
    with tiny_disk(sandbox.out, size):
        argv = train(sandbox.out) if command == "train" else \
            ["distill", *[a.format(teacher=finished) for a in DISTILL], "--out", sandbox.out]
        text = sandbox.expect_exit_2(sandbox.cli(*argv), "Not enough disk space to write", str(sandbox.out),
                                     "free", "run the same command again")
        assert "needs" in text
        assert leftovers(sandbox.out) == [] and not (sandbox.out / "model.json").exists()
