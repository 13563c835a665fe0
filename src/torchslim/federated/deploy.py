"""A real Flower deployment on this machine: a SuperLink and N SuperNodes as separate processes.

For trying the deployment engine without more machines, and for its tests: every process listens
on 127.0.0.1 only, without TLS (``--insecure``), with its logs in ``log_dir``. Across machines, run
the same two commands by hand (``flower-superlink --insecure`` on the server; on each client
``flower-supernode --insecure --superlink HOST:PORT --node-config "partition-id=I num-partitions=N"``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from torchslim.core.errors import TorchSlimError

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((LOOPBACK, port)) == 0


@dataclass
class LocalFederation:
    """The running processes; ``address`` is what ``--superlink`` and ``flwr run`` connect to."""

    port: int
    log_dir: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def stop(self, grace: float = 5.0) -> None:
        """Stop every process this federation started (each runs in its own process group, so the
        SuperExec and app processes they spawned stop with them)."""
        for proc in self.processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.processes:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for proc in self.processes:  # children that outlived their parent (a killed group leader)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.processes.clear()


def _spawn(args: list[str], log: Path, home: Path) -> subprocess.Popen:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(log, "ab") as handle:
        return subprocess.Popen([str(bin_dir / args[0]), *args[1:]], stdout=handle, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)


def start(clients: int, log_dir: str | Path, state_dir: str | Path | None = None,
          timeout: float = 60.0) -> LocalFederation:
    """Start a SuperLink and ``clients`` SuperNodes on loopback; returns once the SuperLink listens.

    ``state_dir`` becomes each SuperNode's ``state-dir`` (where its client keeps its model between
    rounds, in ``state_dir/client-<id>``).

    Raises:
        TorchSlimError: the SuperLink did not start listening within ``timeout`` seconds.
    """
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    fed = LocalFederation(free_port(), log_dir)
    home = log_dir / "flwr-home"
    fed.processes.append(_spawn(["flower-superlink", "--insecure", "--host", LOOPBACK, "--port", str(fed.port),
                                 "--disable-runtime-dependency-installation", "--database", ":flwr-in-memory:"],
                                log_dir / "superlink.log", home))
    deadline = time.monotonic() + timeout
    while not _listening(fed.port):
        if time.monotonic() > deadline or fed.processes[0].poll() is not None:
            fed.stop()
            raise TorchSlimError(f"the SuperLink did not start on {fed.address}; see {log_dir / 'superlink.log'}.")
        time.sleep(0.2)
    for pid in range(clients):
        node_config = f"partition-id={pid} num-partitions={clients}"
        if state_dir is not None:
            node_config += f' state-dir="{Path(state_dir).resolve()}"'
        fed.processes.append(_spawn(["flower-supernode", "--insecure", "--superlink", fed.address,
                                     "--host", LOOPBACK, "--port", str(free_port()), "--node-config", node_config],
                                    log_dir / f"supernode-{pid}.log", home))
    return fed


@contextmanager
def local_federation(clients: int, log_dir: str | Path, state_dir: str | Path | None = None) -> Iterator[LocalFederation]:
    """:func:`start` as a context manager that always stops the processes."""
    fed = start(clients, log_dir, state_dir)
    try:
        yield fed
    finally:
        fed.stop()
