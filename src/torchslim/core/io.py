"""Crash-safe file writes: a reader sees the old file or the whole new one, never a partial one.

Every temporary name carries the writer's process id (``.NAME.<pid>.<token>.tmp`` for files,
``.stage-<pid>`` for staged directories), so a later run can tell the leftovers of a killed
process from the files of a live one and remove them (:func:`remove_stale`). A write that fails
for lack of space removes its partial file and becomes a :class:`DiskFullError` naming the path
and the space it needed (:func:`disk_full_guard`), instead of a raw ``OSError``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torchslim.core.errors import DiskFullError

# ENOSPC: the file system is full; EDQUOT: the user's quota is; EFBIG: a file size limit
# (RLIMIT_FSIZE or the file system's own) stopped the file from growing.
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# Writers that report a short write without an errno: numpy's ``tofile`` ("N requested and M
# written") and safetensors (the OS message inside its own error type).
_FULL_TEXT = re.compile(r"\d+ requested and \d+ written|No space left|Disk quota exceeded|File too large")
_TEMP_NAME = re.compile(r"\.(?:stage-(\d+)|.+?\.(\d+)(?:\.[0-9a-f]{8})?\.tmp)")


def fsync_file(path: Path) -> None:
    """Flush ``path``'s content to the device (a rename is only durable after this)."""
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry (the rename of a file into it) to the device."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_fsync_dir = fsync_dir  # the name older callers import


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- temporary names and their leftovers -----------------------------------------------------------


def temp_path(path: Path) -> Path:
    """A sibling name for writing ``path`` before it is renamed into place."""
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def stage_path(directory: Path) -> Path:
    """A hidden directory inside ``directory`` to stage a multi-file write in."""
    return directory / f".stage-{os.getpid()}"


def owner_pid(name: str) -> int | None:
    """The process id in a temporary or staging name made here, or None for any other name."""
    match = _TEMP_NAME.fullmatch(name)
    if not match:
        return None
    return int(match.group(1) or match.group(2))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale(directory: str | Path, name: str | None = None) -> list[Path]:
    """Remove temporary and staging entries in ``directory`` left by processes that no longer run.

    Args:
        name: only the temporary files of this target name (e.g. ``model.json``); None: all.

    Returns the removed paths. A live process's entries are never touched.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for entry in directory.iterdir():
        pid = owner_pid(entry.name)
        if pid is None or _alive(pid):
            continue
        if name is not None and not entry.name.startswith(f".{name}."):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def sweep(root: str | Path, depth: int = 3) -> list[Path]:
    """:func:`remove_stale` in ``root`` and the directories up to ``depth`` levels below it.

    The depth is bounded on purpose: an output folder given by mistake as a large tree (``--out
    ~``) must not be walked whole.
    """
    root = Path(root)
    if not root.is_dir() or depth < 0:
        return []
    removed = remove_stale(root)
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink() and owner_pid(child.name) is None:
            removed += sweep(child, depth - 1)
    return removed


# -- a full disk ----------------------------------------------------------------------------------


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says a write ran out of space, quota or allowed file size."""
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        return True
    return isinstance(exc, Exception) and bool(_FULL_TEXT.search(str(exc)))


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def disk_full_error(path: Path, need: int | None, exc: BaseException) -> DiskFullError:
    """The error for a write of ``need`` bytes (None: unknown) to ``path`` that ran out of space."""
    try:
        free = shutil.disk_usage(_existing(path)).free
    except OSError:
        free = None
    needed = f"needs about {_size(need)}" if need else "needs more space than is free"
    have = f"{_size(free)} free there" if free is not None else "the free space could not be read"
    return DiskFullError(
        f"Not enough disk space to write {path}: it {needed}, {have} ({exc}). The partial file was "
        "removed; free some space (or choose another output directory) and run the same command "
        "again to continue where it stopped.")


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


@contextmanager
def disk_full_guard(path: str | Path, need: int | None = None) -> Iterator[None]:
    """Turn an out-of-space failure inside the block into a :class:`DiskFullError` for ``path``.

    The block must remove its own partial files (see :func:`atomic_write`).
    """
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        if is_disk_full(exc):
            raise disk_full_error(Path(path), need, exc) from None
        raise


# -- atomic writes --------------------------------------------------------------------------------


def atomic_write(path: str | Path, write: Callable[[Path], None], need: int | None = None) -> Path:
    """Call ``write(tmp_path)``, fsync the result and rename it over ``path``.

    On any failure the temporary file is removed and ``path`` is left as it was. Temporary files
    of ``path`` left by killed processes are removed first.

    Args:
        need: the bytes the write takes, when known (for the message of a full disk).

    Raises:
        DiskFullError: the file system ran out of space (or quota, or allowed file size).
    """
    path = Path(path)
    with disk_full_guard(path, need):
        path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, path.name)
    tmp = temp_path(path)
    try:
        with disk_full_guard(path, need):
            write(tmp)
            os.chmod(tmp, 0o666 & ~_umask())  # some writers make 0600 files; the user's umask decides
            fsync_file(tmp)
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), need=len(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    data = text.encode("utf-8")
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), need=len(data))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
