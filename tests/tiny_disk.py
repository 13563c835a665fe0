"""Helpers for crash-safety tests: a real full disk (a tiny tmpfs), dead writers' leftovers."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from torchslim.core.io import owner_pid


@contextmanager
def tiny_disk(path: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (e.g. ``"64k"``) at ``path`` for the block; skips the test when
    mounting is not permitted (a real full disk needs root or CAP_SYS_ADMIN)."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no `mount` command here to make a tiny file system that fills up")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"mounting a tiny tmpfs is not permitted here ({result.stderr.strip()}); the "
                    "RLIMIT_FSIZE and fault-injection tests cover a full disk without it")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def grow(path: Path, size: str) -> None:
    """Make room on a :func:`tiny_disk` (as a user freeing space would)."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True, capture_output=True)


def leftovers(root: Path) -> list[str]:
    """Temporary or staging entries under ``root`` (none may outlive a run).

    Safe to call while a run renames and removes entries (os.walk skips what vanished).
    """
    found = []
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            if owner_pid(name) is not None or name.endswith((".tmp", ".partial")) or name.startswith(".stage-"):
                found.append(os.path.relpath(os.path.join(directory, name), root))
    return sorted(found)


def dead_pid() -> int:
    """The id of a process that has exited (as a SIGKILLed writer's would be)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def plant_leftovers(directory: Path, pid: int, names: list[str]) -> list[Path]:
    """Create a killed writer's temporary files and staging folders in ``directory``."""
    made = []
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name == "stage":
            path = directory / f".stage-{pid}"
            path.mkdir()
            (path / "state.safetensors").write_bytes(b"partial")
        elif name.endswith("/"):  # a staged folder, as the teacher cache makes
            path = directory / f".{name.rstrip('/')}.{pid}.tmp"
            path.mkdir()
            (path / "values.npy").write_bytes(b"partial")
        else:
            path = directory / f".{name}.{pid}.0badc0de.tmp"
            path.write_bytes(b"partial")
        made.append(path)
    return made
