"""An ONNX artifact on disk: ``model.onnx`` and its JSON sidecar ``model.json`` beside it.

The ``.onnx`` is written first and the sidecar last, carrying the ``.onnx``'s SHA-256 and size, so
a half-written pair or a damaged ``.onnx`` is detected when loading, never silently run. Both are
written atomically. A bare ``.onnx`` without a sidecar is accepted too (it is only parsed and
checked).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torchslim.core.errors import CorruptFileError, TorchSlimError
from torchslim.core.io import atomic_write_bytes, atomic_write_json
from torchslim.core.tensors import sha256_file

ONNX_FILE, SIDECAR = "model.onnx", "model.json"


def resolve(path: str | Path) -> tuple[Path, Path]:
    """``(onnx file, sidecar)`` for an ``.onnx`` path (sidecar ``X.json``) or a directory
    (``DIR/model.onnx``, ``DIR/model.json``)."""
    path = Path(path)
    if path.suffix == ".onnx":
        return path, path.with_suffix(".json")
    return path / ONNX_FILE, path / SIDECAR


def read_sidecar(onnx_path: Path, sidecar: Path) -> dict[str, Any]:
    """The sidecar's record ({} without one), after checking the ``.onnx`` matches its hash.

    Raises:
        CorruptFileError: the sidecar is not JSON, or the ``.onnx`` differs from what it records.
    """
    if not sidecar.is_file():
        return {}
    try:
        info = json.loads(sidecar.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CorruptFileError(f"{sidecar} (the record of {onnx_path.name}) is not valid JSON: {exc}.") from None
    recorded = info.get("onnx", {}).get("sha256") if isinstance(info, dict) else None
    if recorded:
        actual = sha256_file(onnx_path)
        if actual != recorded:
            raise CorruptFileError(
                f"{onnx_path} has SHA-256 {actual}, but its record {sidecar.name} says {recorded}: the "
                "file is damaged, incomplete or was replaced. Quantize or export it again.")
    return info if isinstance(info, dict) else {}


def write(path: str | Path, onnx_bytes: bytes, info: dict[str, Any]) -> tuple[Path, Path]:
    """Write the ``.onnx`` then its sidecar (``info`` plus the file's hash and size), atomically.

    ``path`` is an ``.onnx`` file or a directory (``model.onnx`` + ``model.json`` inside).
    """
    onnx_path, sidecar = resolve(path)
    if onnx_path.parent.exists() and not onnx_path.parent.is_dir():
        raise TorchSlimError(f"Cannot write {onnx_path}: {onnx_path.parent} is a file, not a directory.")
    sidecar.unlink(missing_ok=True)  # a crash between the two writes leaves no stale record
    atomic_write_bytes(onnx_path, onnx_bytes)
    record = {**info, "onnx": {**info.get("onnx", {}), "file": onnx_path.name,
                               "sha256": sha256_file(onnx_path), "bytes": onnx_path.stat().st_size}}
    atomic_write_json(sidecar, record)
    return onnx_path, sidecar
