"""What machine a measurement ran on: CPU, its vector extensions, OS and library versions.

A latency means little without the CPU, its instruction-set extensions (INT8 kernels need VNNI or
AMX to beat FP32), the thread count and the runtime versions, so every record carries this.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

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
