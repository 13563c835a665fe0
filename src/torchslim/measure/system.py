"""What machine a measurement ran on (CPU, its vector extensions, OS and library versions), and
pinning the process to fixed cores while it is timed.

A latency means little without the CPU, its instruction-set extensions (INT8 kernels need VNNI or
AMX to beat FP32), the thread count and the runtime versions, so every record carries this.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from torchslim.core.errors import TorchSlimError

# Extensions that decide which kernels torch and ONNX Runtime pick (FP32 GEMM, INT8 dot products):
# x86 (VNNI, AMX, AVX-VNNI-INT8) and ARM (dot product "asimddp", int8 matrix multiply "i8mm").
CPU_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx_vnni_int8", "amx_tile",
             "amx_int8", "asimddp", "i8mm")

# Key in the result -> distribution names to try, in order (ONNX Runtime ships under several).
PACKAGES = {
    "torch": ("torch",),
    "numpy": ("numpy",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
    "onnx": ("onnx",),
    "torch_pruning": ("torch-pruning",),
}


def cpuinfo(path: str | Path = "/proc/cpuinfo") -> tuple[str | None, set[str]]:
    """The CPU model name and flag set of the first processor listed in ``path``.

    Returns ``(None, set())`` where the file does not exist (macOS, Windows).
    """
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, set()
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:  # "Features" on ARM
            flags = set(value.split())
        if model is not None and flags:
            break
    return model, flags


def package_version(names: tuple[str, ...]) -> str | None:
    """The installed version of the first of ``names`` that is installed, or None."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def machine_info() -> dict[str, Any]:
    """CPU model and flags, cores, OS, Python and library versions, and torch's thread count.

    Cheap: reads /proc/cpuinfo and package metadata; imports nothing that is not loaded already
    except torch, which torchslim imports anyway.
    """
    import torch

    model, flags = cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {
        "cpu": model or platform.processor() or None,
        "cpu_flags": [f for f in CPU_FLAGS if f in flags],
        # What torch's own dispatcher chose (e.g. "AVX2", "AVX512"): the kernels actually used.
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {key: package_version(names) for key, names in PACKAGES.items()},
        "torch_threads": torch.get_num_threads(),
    }


# -- pinning ----------------------------------------------------------------------------------------

def usable_cores() -> list[int] | None:
    """The cores this process may run on, ascending; None where the platform has no affinity."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return sorted(os.sched_getaffinity(0))


def check_cores(cores: Any, needed: int) -> list[int] | None:
    """``cores`` (None: choose) checked against the usable cores; at least ``needed`` of them.

    Raises:
        TorchSlimError: not a sequence of distinct ints, a core this process may not use (the
            usable ones listed), fewer cores than ``needed`` threads, or cores given on a platform
            without CPU affinity.
    """
    if cores is None:
        return None
    usable = usable_cores()
    if usable is None:
        raise TorchSlimError(f"cores={cores!r} cannot be honoured: this platform has no CPU affinity "
                             "(os.sched_setaffinity); pass cores=None.")
    if (isinstance(cores, (str, bytes)) or not isinstance(cores, (list, tuple, range))
            or any(isinstance(c, bool) or not isinstance(c, int) for c in cores)):
        raise TorchSlimError(f"cores must be a list of CPU core numbers (usable here: {usable}), "
                             f"got {cores!r}.")
    bad = [c for c in cores if c not in usable]
    if bad:
        raise TorchSlimError(f"Core(s) {bad} of cores={list(cores)} do not exist or are not usable by this "
                             f"process; usable cores: {usable}.")
    if len(set(cores)) != len(cores) or len(cores) < needed:
        raise TorchSlimError(f"cores={list(cores)} must name at least {needed} distinct core(s), one per "
                             f"thread of the largest thread count ({needed}); usable cores: {usable}.")
    return list(cores)


def cores_for(threads: int, preferred: list[int] | None) -> tuple[list[int] | None, list[str]]:
    """The cores to pin ``threads`` threads to (the first ``threads`` of ``preferred``, else of the
    usable cores) and notes: no affinity on this platform, or more threads than usable cores."""
    usable = usable_cores()
    if usable is None:
        return None, ["not pinned: this platform has no CPU affinity (os.sched_setaffinity)"]
    pool = preferred if preferred is not None else usable
    if threads > len(pool):
        return list(pool), [f"{threads} threads on {len(pool)} core(s) {pool}: oversubscribed, so slower "
                            "than it should be"]
    return list(pool[:threads]), []


def _thread_ids() -> list[int]:
    """Every thread of this process (Linux: /proc/self/task), else just the calling one (0)."""
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


@contextmanager
def pinned(cores: list[int] | None) -> Iterator[list[int] | None]:
    """Pin every thread of this process to ``cores`` inside the block; restore each one's after.

    On Linux ``sched_setaffinity(0, ...)`` moves only the calling thread, and torch's and ONNX
    Runtime's worker threads already exist, so each thread is moved (threads created inside the
    block inherit the pinned set from the thread that starts them). ``None`` pins nothing.
    """
    if cores is None:
        yield None
        return
    before = {tid: os.sched_getaffinity(tid) for tid in _thread_ids()}
    main = os.sched_getaffinity(0)
    try:
        for tid in before:
            _set_affinity(tid, cores)
        yield list(cores)
    finally:
        for tid in _thread_ids():
            _set_affinity(tid, before.get(tid, main))


def _set_affinity(tid: int, cores: Any) -> None:
    try:
        os.sched_setaffinity(tid, cores)
    except ProcessLookupError:  # the thread ended between listing and pinning: nothing to move
        pass
