"""Resumable training: model, optimizer and RNG tensors plus a JSON of epoch, history and config.

A state is staged in a temporary directory and renamed into place (``directory/last``), so a run
killed at any instant leaves the previous complete state; a kill between the two renames leaves
``last.old``, which the next save or search renames back.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from torchslim.core.errors import CheckpointError
from torchslim.core.io import disk_full_guard, fsync_dir, fsync_file, remove_stale, stage_path
from torchslim.core.tensors import FORMAT_VERSION, contiguous, load_state, read_tensors

STATE_TENSORS, STATE_JSON = "state.safetensors", "state.json"
_RESTART = "pass --force (CLI) or delete that folder to start the training afresh"


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, plain = {}, {"param_groups": state["param_groups"], "state": {}}
    for idx, entries in state["state"].items():
        plain["state"][str(idx)] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                plain["state"][str(idx)][key] = value
    return tensors, plain


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    state: dict[int, dict] = {int(i): dict(v) for i, v in plain["state"].items()}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def save_training_state(directory: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                        info: dict[str, Any]) -> Path:
    """Save everything needed to continue training into ``directory/last`` atomically.

    The files are staged in ``directory/.stage-<pid>`` and renamed into place; staging folders of
    killed runs are removed first.

    Raises:
        DiskFullError: no space for the state (the staging folder is removed, ``last`` kept).
    """
    directory = Path(directory)
    with disk_full_guard(directory):
        directory.mkdir(parents=True, exist_ok=True)
    remove_stale(directory)
    _recover_old(directory)
    optim_tensors, optim_plain = _flatten_optimizer(optimizer.state_dict())
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(optim_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    tensors = contiguous(tensors)
    text = json.dumps({"format": FORMAT_VERSION, "optimizer": optim_plain, **info}, default=str)
    need = sum(t.numel() * t.element_size() for t in tensors.values()) + len(text) + (1 << 16)
    stage = stage_path(directory)
    shutil.rmtree(stage, ignore_errors=True)
    try:
        with disk_full_guard(directory / "last", need):
            stage.mkdir()
            save_file(tensors, str(stage / STATE_TENSORS))
            (stage / STATE_JSON).write_text(text, encoding="utf-8")
            for name in (STATE_TENSORS, STATE_JSON):
                fsync_file(stage / name)
        _swap_in(stage, directory)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return directory / "last"


def _swap_in(stage: Path, directory: Path) -> None:
    # Two renames: a kill between them leaves only `last.old`, which _recover_old renames back.
    last, old = directory / "last", directory / "last.old"
    if last.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(last, old)
    os.replace(stage, last)
    fsync_dir(directory)
    shutil.rmtree(old, ignore_errors=True)


def _complete(path: Path) -> bool:
    return (path / STATE_JSON).is_file() and (path / STATE_TENSORS).is_file()


def _recover_old(directory: Path) -> None:
    """Rename ``last.old`` back to ``last`` when a kill landed between the two renames."""
    last, old = directory / "last", directory / "last.old"
    if not last.exists() and _complete(old):
        os.replace(old, last)
        fsync_dir(directory)


def find_training_state(directory: str | Path) -> Path | None:
    """The newest complete training state under ``directory`` (``last``, or ``last.old`` when a
    kill landed between the two renames of :func:`save_training_state`), or None.

    Staging folders that killed runs left in ``directory`` are removed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return None
    remove_stale(directory)
    for name in ("last", "last.old"):
        if _complete(directory / name):
            return directory / name
    return None


def load_training_state(path: str | Path, model: nn.Module,
                        optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model, optimizer and RNG from :func:`save_training_state`; returns its info dict.

    Raises:
        CheckpointError: a damaged state (unreadable files, missing entries, or a model or
            optimizer it does not fit), naming the folder and how to start afresh.
    """
    path = Path(path)
    try:
        tensors = read_tensors(path / STATE_TENSORS)
    except CheckpointError as exc:
        raise CheckpointError(f"The training state is damaged: {exc} To continue anyway, {_RESTART}.") from None
    try:
        info = json.loads((path / STATE_JSON).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"The training state {path / STATE_JSON} is damaged ({exc}); {_RESTART}.") from None
    missing = [k for k in ("optimizer", "epoch", "config", "history") if not isinstance(info, dict) or k not in info]
    missing += ["rng.torch"] if "rng.torch" not in tensors else []
    if missing:
        raise CheckpointError(f"The training state in {path} is incomplete: it has no {', '.join(missing)}; "
                              f"{_RESTART}.")
    try:
        load_state(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, str(path))
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}. To start this training afresh, {_RESTART}.") from None
    try:
        optimizer.load_state_dict(_unflatten_optimizer(tensors, info.pop("optimizer")))
        torch.set_rng_state(tensors["rng.torch"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"The optimizer or RNG state in {path} does not fit this run ({exc}); "
                              f"{_RESTART}.") from None
    return info
