"""Federations on Flower's real engines: the simulation engine (with failing and malformed clients)
and the deployment engine (SuperLink and SuperNodes as processes on loopback, interrupted and resumed).

Tiny synthetic data, two or three clients, two rounds: each test takes tens of seconds, most of it
Flower starting its workers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

pytest.importorskip("flwr")
ray = pytest.importorskip("ray")

from flwr.app import Message  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402

from torchslim.federated import client, deploy, wire  # noqa: E402
from torchslim.federated.engine import run  # noqa: E402

pytestmark = pytest.mark.slow

RECIPE = """\
version: 1
name: tiny-federation
seed: 0
threads: 1
federated:
  method: fd
  data: {{name: synthetic, options: {{train_size: 160, test_size: 40, num_classes: 4, shape: [1, 28, 28]}}}}
  clients: {{count: {clients}, architectures: [cnn-tiny, mlp]}}
  split: {{alpha: 1.0}}
  public: {{size: 32}}
  server: {{architecture: cnn-tiny, epochs: 1}}
  rounds: 2
  batch_size: 32
  min_clients: 2
  round_timeout: 120
"""

# Ray ships the ClientApp to its worker processes by pickling it; this module is not importable
# there, so its functions travel by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

faulty = ClientApp()


@faulty.train()
def faulty_train(message: Message, context) -> Message:
    """The real client, except: client 1 crashes in round 2; client 2 sends misshapen logits in round 1."""
    pid = int(context.node_config["partition-id"])
    _, server_round = wire.read_config(message.content)
    if pid == 1 and server_round == 2:
        raise RuntimeError("client 1 lost its disk")
    content = client.handle(message.content, context)
    if pid == 2 and server_round == 1:
        content = wire.logits_content(torch.zeros(32, 3), {"num-examples": 1, "partition-id": 2})
    return Message(content, reply_to=message)


@pytest.fixture(autouse=True)
def _quiet_flower(monkeypatch):
    monkeypatch.setenv("FLWR_TELEMETRY_ENABLED", "0")


def test_simulation_survives_a_crash_and_a_malformed_reply(tmp_path):
    from torchslim.cli import main

    recipe = tmp_path / "fed.yaml"
    recipe.write_text(RECIPE.format(clients=3))
    out = tmp_path / "out"
    record = run(recipe, out, client_app=faulty)

    first, second = record["rounds"]
    assert first["answered"] == [0, 1] and second["answered"] == [0, 2]
    assert [(d["client"], d["why"]) for d in first["dropped"]] == [(2, "rejected")]
    assert [(d["client"], d["why"]) for d in second["dropped"]] == [(1, "failed")]
    log = (out / "federated.log").read_text()
    assert "round 1: rejected" in log and "(client 2)" in log and "shape [32, 3]" in log
    assert "round 2: failed" in log and "(client 1)" in log and "lost its disk" in log

    saved = json.loads((out / "federated.json").read_text())
    assert saved["complete"] and len(saved["clients"]) == 3
    assert all(sum(c["label_histogram"]) == c["examples"] for c in saved["clients"])
    assert all(r["bytes_sent_per_client"] > 0 and r["bytes_received"] for r in saved["rounds"])
    assert (out / "federated.png").stat().st_size > 0
    # the server's model is an ordinary torchslim checkpoint: `torchslim eval` measures it
    assert main(["eval", str(out / "model"), "--batch-sizes", "1", "--json"]) == 0


def _wait_for_round(out, n: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    state = out / "checkpoint" / "last" / "state.json"
    while time.monotonic() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text())["round"] >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"round {n} did not complete")


def test_deployment_engine_interrupted_and_resumed(tmp_path):
    """The command is killed with its federation in round 2; the same command resumes at round 2."""
    recipe = tmp_path / "fed.yaml"
    recipe.write_text(RECIPE.format(clients=2))
    out, state = tmp_path / "out", tmp_path / "client-state"

    def command(address: str) -> list[str]:
        return ["federated", str(recipe), "--out", str(out), "--engine", "deployment", "--superlink", address,
                "--timeout", "300"]

    with deploy.local_federation(2, tmp_path / "logs-1", state) as fed:
        first = subprocess.Popen([sys.executable, "-m", "torchslim.cli", *command(fed.address)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            _wait_for_round(out, 1, first)
        finally:
            os.killpg(first.pid, signal.SIGKILL)  # the interrupted command (and its `flwr run`)
            first.wait()
    # leaving the block stopped the SuperLink and both SuperNodes in the middle of round 2
    before = json.loads((out / "checkpoint" / "last" / "state.json").read_text())
    assert before["round"] == 1

    from torchslim.cli import main

    with deploy.local_federation(2, tmp_path / "logs-2", state) as fed:
        assert main(command(fed.address)) == 0
    record = json.loads((out / "federated.json").read_text())
    assert record["complete"] and [r["round"] for r in record["rounds"]] == [1, 2]
    assert record["rounds"][0] == before["history"][0]  # round 1 was not run again
    assert "resuming after round 1" in (out / "federated.log").read_text()
    assert sorted(p.name for p in state.iterdir()) == ["client-0", "client-1"]
    # a finished federation: the same command again answers from OUT without any SuperLink running
    assert main(command("127.0.0.1:9")) == 0
    assert json.loads((out / "federated.json").read_text())["rounds"] == record["rounds"]
