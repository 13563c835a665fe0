"""The server's state after each completed round, written atomically so a restart resumes there.

``OUT/checkpoint/last`` holds ``state.safetensors`` (the server or global model, the last soft
labels) and ``state.json`` (the round, the history, the recipe's fingerprint). Both are staged in a
temporary directory and renamed into place together, the same scheme as torchslim's training
states, so a kill at any instant leaves the previous complete round.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from torchslim.core.errors import CheckpointError, TorchSlimError
from torchslim.core.io import _fsync_dir
from torchslim.core.tensors import contiguous, read_tensors
from torchslim.core.training_state import find_training_state
from torchslim.pipeline.recipe import digest


@dataclass
class ServerState:
    """What a federation has done so far; ``round`` is the last completed one (0: none)."""

    fingerprint: str
    round: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    clients: dict[str, int] = field(default_factory=dict)  # node id -> partition id, learnt from replies

    def prefixed(self, prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}


def fingerprint(plain_recipe: dict) -> str:
    """A hash of everything that decides the results (not the name, description or file)."""
    return digest({k: v for k, v in plain_recipe.items() if k not in ("name", "description", "source")})


def save(directory: str | Path, state: ServerState) -> Path:
    """Write ``state`` to ``directory/last`` atomically (staged, then renamed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stage = directory / f".stage-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        save_file(contiguous(state.tensors) or {"empty": torch.zeros(0)}, str(stage / "state.safetensors"))
        info = {"fingerprint": state.fingerprint, "round": state.round, "history": state.history,
                "clients": state.clients}
        (stage / "state.json").write_text(json.dumps(info, default=str))
        for name in ("state.safetensors", "state.json"):
            with open(stage / name, "rb+") as handle:
                os.fsync(handle.fileno())
        last, old = directory / "last", directory / "last.old"
        shutil.rmtree(old, ignore_errors=True)
        if last.exists():
            os.replace(last, old)
        os.replace(stage, last)
        _fsync_dir(directory)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return directory / "last"


def load(directory: str | Path, expected_fingerprint: str) -> ServerState | None:
    """The last saved state, or None when there is none.

    Raises:
        TorchSlimError: the state belongs to a different recipe (a restart would mix two runs).
        CheckpointError: the files are unreadable.
    """
    found = find_training_state(directory)
    if found is None:
        return None
    try:
        info = json.loads((found / "state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{found}/state.json is unreadable: {exc}.") from None
    if info.get("fingerprint") != expected_fingerprint:
        raise TorchSlimError(
            f"{directory} holds the state of a federation run with a different recipe; pass --force "
            "(restart=True) to discard it, or choose another output directory.")
    tensors = {k: v for k, v in read_tensors(found / "state.safetensors").items() if k != "empty"}
    return ServerState(info["fingerprint"], int(info["round"]), list(info["history"]), tensors,
                       {str(k): int(v) for k, v in info.get("clients", {}).items()})
