"""SIGKILL `torchslim train`, `distill` and `run` at seeded random points (some during a write),
resume each with the same command, and get weights bitwise identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tiny_disk import leftovers
from torchslim.core.tensors import read_tensors

pytestmark = pytest.mark.slow

# A fork server: one process imports torchslim once, then forks a child per command, so a run
# starts in milliseconds instead of seconds. Every fsync of a temporary file or staging folder
# waits 40 ms, so a write is on disk long enough for the poller below to kill a run in the middle.
SERVER = """
import json, os, sys, time, traceback
import torchslim.core.io as io
import torchslim.core.training_state as training_state
real = io.fsync_file
def slow(path):
    time.sleep(0.04)
    real(path)
io.fsync_file = training_state.fsync_file = slow
from torchslim.cli import main
for line in sys.stdin:
    argv, log = json.loads(line)
    pid = os.fork()
    if pid == 0:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)
    print(pid, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""
KILLS_PER_COMMAND = 3
COMMON = ["--data", "synthetic", "--batch-size", "32", "--threads", "1", "--seed", "3", "--quiet"]


class Server:
    """Runs ``torchslim ARGV`` in forked children of one warm process."""

    def __init__(self) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def start(self, argv: list[str], log: Path) -> int:
        self.proc.stdin.write(json.dumps([argv, str(log)]) + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def exit_code(self) -> int:
        return int(self.proc.stdout.readline())

    def run(self, argv: list[str], log: Path) -> None:
        self.start(argv, log)
        assert self.exit_code() == 0, log.read_text()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def write_of(entry: str) -> str:
    """What a temporary entry is writing: ``checkpoint`` (a training state's staging folder),
    ``cache`` (a teacher cache's), or the target file's name (``model.json``, ``step.json``...)."""
    name = os.path.basename(entry)
    if name.startswith(".stage-"):
        return "checkpoint"
    target = re.fullmatch(r"\.(.+?)\.\d+(?:\.[0-9a-f]{8})?\.tmp", name).group(1)
    return "cache" if re.fullmatch(r"[0-9a-f]{24}", target) else target


def watch(server: Server, argv: list[str], out: Path, kill_in: str | None = None,
          during_write: bool = True, pause: float = 0.0) -> tuple[int, list[str]]:
    """Run ``argv`` and list its writes in order (temporary entries appearing in ``out``).

    With ``kill_in``: SIGKILL it at its first write of that kind (see :func:`write_of`), either
    while the write is on disk (``during_write``) or ``pause`` seconds after it finished (in the
    computation that follows). Aiming at writes, not seconds, puts the kill at the same point of
    the run however loaded the machine is. Returns ``(exit code, writes)``.
    """
    pid = server.start(argv, out.parent / f"{out.name}.log")
    seen, writes, deadline = set(), [], None
    while _alive(pid):
        now = set(leftovers(out)) if out.exists() else set()
        writes += [write_of(e) for e in sorted(now - seen)]
        seen = now
        if kill_in in writes:
            aimed = {e for e in now if write_of(e) == kill_in}
            if deadline is None and (during_write or not aimed):  # in the write, or once it finished
                deadline = time.perf_counter() + (0.0 if during_write else pause)
            if deadline is not None and time.perf_counter() >= deadline:
                os.kill(pid, signal.SIGKILL)
                break
        time.sleep(0.005)  # a slowed write stays on disk for 40 ms
    return server.exit_code(), writes


def kill_and_resume(server: Server, argv: list[str], out: Path, rng: random.Random, writes: list[str]) -> list[str]:
    """Kill ``argv`` three times, each in (or just after) a different kind of write seen in a full
    run, chosen by ``rng`` and taken in the order a run makes them; resume with the same command
    each time, then let it finish."""
    what, kinds = [], list(dict.fromkeys(writes))  # in the order a run first makes them
    aims = sorted(rng.sample(kinds, KILLS_PER_COMMAND), key=kinds.index)  # each kill later in the run
    for i, aim in enumerate(aims):
        # A kill "after" one of the run's last two writes would come when the run has already
        # exited on a fast machine: those are aimed in the write, which the slowed fsync keeps open.
        during_write = i == 0 or aim in kinds[-2:] or rng.random() < 0.5
        pause = rng.uniform(0.0, 0.2)
        code, _ = watch(server, argv, out, aim, during_write, pause)
        assert code in (-signal.SIGKILL, 0), (out.parent / f"{out.name}.log").read_text()
        where = "in" if during_write else f"{pause * 1000:.0f} ms after"
        what.append(f"{where} {aim}: {'killed' if code else 'finished'}")
    code, _ = watch(server, argv, out)
    assert code == 0, (out.parent / f"{out.name}.log").read_text()
    assert leftovers(out) == [], f"temporary files outlived the run: {leftovers(out)}"
    print(f"{argv[0]} (writes {', '.join(dict.fromkeys(writes))}): {'; '.join(what)}")
    assert sum(w.endswith("killed") for w in what) >= 2, f"too few kills landed: {what}"
    return what


def assert_bitwise(reference: Path, resumed: Path, what: list[str]) -> None:
    a, b = read_tensors(reference), read_tensors(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after kills {what}"


@pytest.fixture(scope="module")
def server():
    warm = Server()
    yield warm
    warm.close()


def check(server: Server, argv: list[str], tmp_path: Path, seed: int) -> list[str]:
    """Run ``argv`` straight into ``reference`` and killed-and-resumed into ``killed``."""
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    code, writes = watch(server, [*argv, "--out", str(reference)], reference)
    assert code == 0, (tmp_path / "reference.log").read_text()
    return kill_and_resume(server, [*argv, "--out", str(killed)], killed, random.Random(seed), writes)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, server) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "teacher"
    server.run(["train", "--model", "cnn-tiny", "--epochs", "1", "--out", str(out), *COMMON], out.with_suffix(".log"))
    return out


def test_train_killed_three_times_resumes_bitwise(tmp_path, server):
    argv = ["train", "--model", "cnn-tiny", "--epochs", "4", *COMMON]
    what = check(server, argv, tmp_path, 11)
    assert_bitwise(tmp_path / "reference" / "model.safetensors", tmp_path / "killed" / "model.safetensors", what)


def test_distill_with_disk_cache_killed_three_times_resumes_bitwise(tmp_path, server, teacher):
    argv = ["distill", "--teachers", str(teacher), "--student", "cnn-tiny", "--losses", "kd:T=4,weight=0.9",
            "--losses", "ce:weight=0.1", "--cache", "disk", "--cache-draws", "2", "--epochs", "4", *COMMON]
    what = check(server, argv, tmp_path, 12)
    assert_bitwise(tmp_path / "reference" / "model.safetensors", tmp_path / "killed" / "model.safetensors", what)


def test_recipe_killed_three_times_resumes_bitwise(tmp_path, server, teacher):
    distill = {"distill": {"student": "cnn-tiny", "epochs": 2, "cache": "memory", "cache_draws": 1, "lr": 0.05}}
    body = {"version": 1, "name": "killed", "teacher": str(teacher), "seed": 3, "threads": 1,
            "data": {"name": "synthetic", "batch_size": 32, "augment": True},
            "strategies": {"kd_then_train": [distill, {"train": {"epochs": 3, "lr": 0.05}}]}}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(body, sort_keys=False))
    what = check(server, ["run", str(recipe), "--quiet"], tmp_path, 13)
    final = "steps/01-train-*/model/model.safetensors"
    [reference], [resumed] = (tmp_path / "reference").glob(final), (tmp_path / "killed").glob(final)
    assert_bitwise(reference, resumed, what)
