"""Tensors on disk without pickle: safetensors files written atomically, read back with checks.

The lowest layer of torchslim's checkpoints: :mod:`torchslim.models.checkpoint` (model artifacts)
and :mod:`torchslim.core.training_state` (resumable training) both store their tensors here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from torchslim.core.errors import CheckpointError
from torchslim.core.io import atomic_write

FORMAT_VERSION = 1  # of model.json and state.json; a reader refuses any other


def sha256_file(path: str | Path) -> str:
    """The hex SHA-256 of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached contiguous copies of ``tensors``, as safetensors needs them."""
    # safetensors refuses shared or strided storage; a detached contiguous clone is always valid.
    return {k: v.detach().contiguous().clone() if v.data_ptr() else v.contiguous()
            for k, v in tensors.items()}


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> Path:
    """Write ``tensors`` to a safetensors file atomically.

    Raises:
        DiskFullError: no space for it (naming the bytes needed; nothing is left half written).
    """
    tensors = contiguous(tensors)
    need = sum(t.numel() * t.element_size() for t in tensors.values()) + 8 * 1024  # + the JSON header
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp)), need=need)


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a missing or damaged file is a :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No weights file at {path}.")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}.") from None


def load_state(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` into ``model`` after checking names and shapes match exactly.

    Raises:
        CheckpointError: naming the missing, unexpected and mis-shaped tensors.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shapes = [f"{k}: checkpoint {tuple(tensors[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(tensors)) if tensors[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                shown = "; ".join(items[:8]) + (f"; ... {len(items) - 8} more" if len(items) > 8 else "")
                parts.append(f"{label} ({len(items)}): {shown}")
        raise CheckpointError(
            f"The checkpoint {source} does not fit this model (was it saved from another "
            f"architecture?) — " + " | ".join(parts)
        )
    model.load_state_dict(tensors, strict=True)

