"""A real PostgreSQL server for tests: ``postgres_url`` starts a throwaway cluster on 127.0.0.1 at a
free port and yields the SQLAlchemy URL of an empty database ``torchslim`` on it.

The server binaries come from Debian's ``postgresql`` package (``make postgres`` installs it); where
they or the ``psycopg2`` driver are missing, the tests that use the fixture skip. PostgreSQL refuses
to run as root, so under root the cluster belongs to the unprivileged ``postgres`` user (``nobody``
where that user does not exist) and its commands run as that user.

Use it from a test module with ``from postgres_server import postgres_url  # noqa: F401`` (and
``# noqa: F811`` on each test that takes ``postgres_url``).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SERVER_USERS = ("postgres", "nobody")
DATABASE = "torchslim"
START_TRIES = 3  # a free port can be taken by someone else between picking it and binding it


def server_binaries() -> Path | None:
    """The directory holding both ``initdb`` and ``pg_ctl``: the one ``initdb`` on PATH comes from (its
    link resolved first), else the newest ``/usr/lib/postgresql/<version>/bin``; None where none has both."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates += [Path(on_path).resolve().parent, Path(on_path).parent]
    versions = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()]
    candidates += sorted(versions, key=lambda p: int(p.parent.name), reverse=True)
    for directory in candidates:
        if all(os.access(directory / tool, os.X_OK) for tool in ("initdb", "pg_ctl")):
            return directory
    return None


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: this process unless it is root, then the first of SERVER_USERS that exists
    (None when none does)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    for name in SERVER_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Cluster:
    """One data directory under ``root``, its commands run as ``user`` with no PG* variables leaking in."""

    def __init__(self, bindir: Path, root: Path, user: pwd.struct_passwd):
        self.bindir, self.root, self.user = bindir, root, user
        self.data, self.sockets, self.log = root / "data", root / "sockets", root / "server.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        self.env["HOME"] = str(root)
        self.as_user: dict[str, Any] = {}
        if os.geteuid() != self.user.pw_uid:
            self.as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bindir / tool), *args], cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, **self.as_user)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return f"(no server log at {self.log})"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def initdb(self) -> None:
        self.sockets.mkdir()
        for path in (self.root, self.sockets):
            path.chmod(0o755)
            os.chown(path, self.user.pw_uid, self.user.pw_gid)
        result = self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                          "--no-sync", "--locale=C", "--encoding=UTF8")
        if result.returncode:
            pytest.fail(f"initdb ({self.bindir / 'initdb'}) exited {result.returncode} as user "
                        f"{self.user.pw_name!r}:\n{result.stdout}{result.stderr}")

    def start(self) -> int:
        """Starts the server on a free port of 127.0.0.1 and returns the port; fails the test with the
        server log's tail when it does not come up."""
        for _ in range(START_TRIES):
            port = _free_port()
            options = f"-F -c listen_addresses=127.0.0.1 -p {port} -k {self.sockets}"
            result = self.run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data),
                              "-l", str(self.log), "-o", options, timeout=90)
            if result.returncode == 0:
                return port
            if not re.search(r"could not bind|already in use", self.log_tail()):
                break
        pytest.fail(f"PostgreSQL did not start from {self.data} (pg_ctl exited {result.returncode}: "
                    f"{(result.stdout + result.stderr).strip()}); the server log ends:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stops the server if it runs; an immediate shutdown where a fast one fails."""
        if not (self.data / "postmaster.pid").exists():
            return
        if self.run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data)).returncode:
            self.run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data))


def _create_database(port: int) -> None:
    import psycopg2

    connection = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
    try:
        connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        connection.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """``postgresql+psycopg2://postgres@127.0.0.1:PORT/torchslim`` on a server started for this test
    session, stopped and deleted at its end whatever the tests did."""
    bindir = server_binaries()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (Debian package postgresql; `make postgres` "
                    "installs it): skipping the tests that need a real PostgreSQL server (looked for "
                    "initdb and pg_ctl on PATH and in /usr/lib/postgresql/*/bin)")
    try:
        import psycopg2  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the PostgreSQL driver psycopg2 cannot be imported ({exc}; it is the dev "
                    "dependency psycopg2-binary): skipping the tests that need a real PostgreSQL server")
    user = _server_user()
    if user is None:
        pytest.skip(f"PostgreSQL refuses to run as root and none of the users {SERVER_USERS} exists "
                    "here: skipping the tests that need a real PostgreSQL server")
    # Under /tmp, not pytest's deeper tmp dir: every directory above the data must be traversable by
    # the server's user, and a unix socket's path may not exceed 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="torchslim-pg-", dir="/tmp" if Path("/tmp").is_dir() else None))
    cluster = _Cluster(bindir, root, user)
    try:
        cluster.initdb()
        port = cluster.start()
        _create_database(port)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{DATABASE}"
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(root)
