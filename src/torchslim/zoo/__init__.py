"""Shipped pretrained models: the default teacher and student for Fashion-MNIST.

Each lives in ``torchslim/zoo/<name>/`` as ``model.safetensors`` + ``model.json`` + ``MODEL_CARD.md``.
The SHA-256 of every weights file is recorded here, in code, so a damaged or substituted file is
refused even when its JSON sidecar was changed with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from torchslim.core.registry import Registry
from torchslim.models.checkpoint import load_model

ROOT = Path(__file__).parent

# name -> SHA-256 of its model.safetensors
ZOO: Registry = Registry("shipped model")
ZOO.register("fashion-mnist-teacher", "30a02ed92001522e05bffc5865b9556b9d96c333be9606478b0de2a6bb63de64")
ZOO.register("fashion-mnist-student", "b7a2f44ead88ad0cf0710558e0453e16a47652a6d841432877e3be1e555738fb")


def path(name: str) -> Path:
    """The directory holding the shipped model ``name``."""
    ZOO.get(name)
    return ROOT / name


def load(name: str) -> tuple[nn.Module, dict[str, Any]]:
    """The shipped model ``name`` and its metadata, its weights' SHA-256 checked first.

    Raises:
        UnknownNameError: not a shipped model (the valid names listed).
        CheckpointError: the weights are missing or do not match the recorded hash.
    """
    return load_model(path(name), expected_sha256=ZOO.get(name))


def list() -> list[str]:  # noqa: A001
    """Names of the shipped models."""
    return ZOO.list()
