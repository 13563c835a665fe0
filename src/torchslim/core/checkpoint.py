"""Checkpoints without pickle: tensors in safetensors, everything else in JSON, written atomically.

Two kinds:

* a **model artifact** (``save_model``/``load_model``): ``model.safetensors`` + ``model.json``
  (how to rebuild the model, the weights' SHA-256, metrics, applied steps). The JSON is written
  last and names the weights' hash, so a half-written pair is detected, never loaded.
* a **training state** (``save_training_state``/``load_training_state``): model, optimizer and RNG
  tensors plus a JSON of epoch, history and config, staged in a temporary directory and renamed
  into place, so a run killed at any instant leaves the previous complete state.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from torchslim.core.errors import CheckpointError, TorchSlimError
from torchslim.core.io import (
    atomic_write,
    atomic_write_json,
    disk_full_guard,
    fsync_dir,
    fsync_file,
    remove_stale,
    stage_path,
)
from torchslim.core.state import applied_steps, replay_steps

WEIGHTS, META = "model.safetensors", "model.json"
FORMAT_VERSION = 1


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or strided storage; a detached contiguous clone is always valid.
    return {k: v.detach().contiguous().clone() if v.data_ptr() else v.contiguous()
            for k, v in tensors.items()}


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> Path:
    """Write ``tensors`` to a safetensors file atomically.

    Raises:
        DiskFullError: no space for it (naming the bytes needed; nothing is left half written).
    """
    tensors = _contiguous(tensors)
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


def save_model(model: nn.Module, directory: str | Path, metadata: dict[str, Any] | None = None,
               spec: dict | None = None, *, factory: str | None = None,
               factory_kwargs: dict[str, Any] | None = None) -> Path:
    """Save ``model`` as ``directory/model.safetensors`` + ``directory/model.json``.

    Args:
        spec: how to rebuild the model (``torchslim.models.spec_of``); taken from the model
            when omitted.
        factory: for a model of your own architecture, the name that rebuilds it: a key of the
            ``models={...}`` given to ``compare``/``run``, or ``"package.module:function"`` (imported
            only when allowed). Called as ``factory(num_classes=..., in_channels=..., **factory_kwargs)``
            with the dataset's sizes, so a recipe can name the directory as its ``teacher``.
        metadata: JSON-serialisable extras (metrics, training config, applied steps). The
            model's own applied steps (``torchslim.core.state``) are recorded unless
            ``metadata`` gives ``"applied_steps"``.
    """
    from torchslim.models import spec_of  # local: models imports core

    directory = Path(directory)
    if factory is not None:
        spec = {"factory": factory, "kwargs": dict(factory_kwargs or {})}
    spec = spec or spec_of(model)
    weights = save_tensors(directory / WEIGHTS, model.state_dict())
    cls = type(model)
    meta = {"format": FORMAT_VERSION, "model": spec, "class": f"{cls.__module__}:{cls.__qualname__}",
            "sha256": sha256_file(weights), "bytes": weights.stat().st_size, **(metadata or {})}
    if applied_steps(model) and "applied_steps" not in meta:
        meta["applied_steps"] = applied_steps(model)  # how to reshape a fresh `spec` model on load
    atomic_write_json(directory / META, meta)
    return directory


def read_meta(directory: str | Path) -> dict[str, Any]:
    """The JSON sidecar of a model artifact (``directory`` may also be the JSON file itself).

    Raises:
        CheckpointError: no such file, not JSON, not an object, or a key of the wrong type
            (the message names the file and the key).
    """
    directory = Path(directory)
    path = directory if directory.suffix == ".json" else directory / META
    if not path.is_file():
        raise CheckpointError(
            f"No model checkpoint at {directory}: expected {path} (written by `torchslim train` "
            "or torchslim.save_model)."
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}.") from None
    check_meta(meta, str(path))
    return meta


def _require(ok: bool, path: str, key: str, value: Any, valid: str) -> None:
    if not ok:
        raise CheckpointError(f"{path}: key {key!r} is {value!r} ({type(value).__name__}); expected {valid}.")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_spec(spec: Any, path: str) -> None:
    """Check the ``"model"`` entry of a model.json: None, or one of the three ways to rebuild a model
    (a registered family ``name``, a ``factory``, or the ``teacher`` given to the pipeline)."""
    if spec is None:
        return
    _require(isinstance(spec, dict), path, "model", spec, "an object such as {\"name\": \"cnn-small\", "
             "\"num_classes\": 10, \"in_channels\": 1, \"kwargs\": {}} or null")
    kinds = [k for k in ("name", "factory", "teacher") if k in spec]
    if len(kinds) != 1:
        raise CheckpointError(f"{path}: key 'model' must have exactly one of 'name' (a registered model family), "
                              f"'factory' or 'teacher'; it has keys {sorted(spec)}.")
    kind = kinds[0]
    _require(isinstance(spec[kind], str) and spec[kind], path, f"model.{kind}", spec[kind], "a non-empty string")
    for key in ("num_classes", "in_channels"):
        if kind == "name" or key in spec:
            _require(_positive_int(spec.get(key)), path, f"model.{key}", spec.get(key), "a positive integer")
    _require(isinstance(spec.get("kwargs", {}), dict), path, "model.kwargs", spec.get("kwargs"),
             "an object of keyword arguments")


def check_meta(meta: Any, path: str) -> None:
    """Check the keys of a model.json that loading reads; raises :class:`CheckpointError`."""
    _require(isinstance(meta, dict), path, "(top level)", meta, "a JSON object with keys format, model, sha256")
    check_spec(meta.get("model"), path)
    for key, kind, valid in (("sha256", str, "a hex string"), ("applied_steps", list, "a list of step objects"),
                             ("data", dict, "an object {\"name\": ..., \"kwargs\": {...}}"),
                             ("format", int, f"the integer {FORMAT_VERSION}")):
        if meta.get(key) is not None:
            _require(isinstance(meta[key], kind), path, key, meta[key], valid)
    if meta.get("format") not in (None, FORMAT_VERSION):
        raise CheckpointError(f"{path}: key 'format' is {meta['format']!r}; this torchslim reads format "
                              f"{FORMAT_VERSION}.")
    data = meta.get("data")
    if data is not None:
        _require(isinstance(data.get("name"), str), path, "data.name", data.get("name"), "a dataset name")
        _require(isinstance(data.get("kwargs", {}), dict), path, "data.kwargs", data.get("kwargs"), "an object")


def not_rebuildable(directory: Path, meta: dict[str, Any]) -> str:
    """Why a model.json's model cannot be rebuilt by torchslim alone, and how to make it rebuildable."""
    spec, cls = meta.get("model"), meta.get("class", "its class")
    if isinstance(spec, dict) and "factory" in spec:
        what = f"was built by the factory {spec['factory']!r}, which only the caller knows"
    elif isinstance(spec, dict) and "teacher" in spec:
        what = "was derived from the teacher object given to compare()/run()"
    else:
        what = f"records no model spec (its class {cls} is not a torchslim model family)"
    return (f"{directory}/{META} {what}. Load it into a fresh instance: load_model({str(directory)!r}, "
            "model=YourNet(...)); in compare()/run() pass the factory as models={name: factory} (or "
            "'package.module:function' with --allow-import / allow_imports) or the teacher object as teacher=; "
            "save your own architecture with save_model(model, dir, factory=name) so a recipe can rebuild it.")


def _replay_rest(model: nn.Module, steps: list[dict[str, Any]], source: str) -> nn.Module:
    """Replay the recorded ``steps`` that ``model`` has not had yet: a given model may already carry
    a prefix of them (the pipeline's teacher when it was itself pruned)."""
    done = applied_steps(model)
    if steps[:len(done)] != done:
        raise CheckpointError(f"{source}: the model given already carries {len(done)} applied step(s) that are "
                              "not the first ones recorded; pass a fresh instance of the original architecture.")
    return replay_steps(model, steps[len(done):], source) if len(steps) > len(done) else model


def load_model(directory: str | Path, model: nn.Module | None = None,
               expected_sha256: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model artifact; returns ``(model, metadata)``.

    The model is rebuilt from its recorded spec unless ``model`` is given (then it must be a fresh
    instance of the original architecture); recorded applied steps (such as pruned channels) are
    replayed on it before the weights are copied in. The weights' SHA-256 is checked against the
    JSON (and ``expected_sha256`` when given) before anything is read.

    Raises:
        CheckpointError: missing files, a malformed model.json (the key named), a hash mismatch,
            weights that do not fit the model, applied steps recorded on another architecture, or a
            model of an architecture torchslim cannot rebuild alone (the message says how).
    """
    from torchslim.models import from_spec

    meta = read_meta(directory)
    directory = Path(directory)
    directory = directory.parent if directory.suffix == ".json" else directory
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{directory} has {META} but no {WEIGHTS}.")
    actual = sha256_file(weights)
    for label, want in (("its model.json", meta.get("sha256")), ("the expected value", expected_sha256)):
        if want and want != actual:
            raise CheckpointError(
                f"{weights} has SHA-256 {actual}, but {label} says {want}: the file is corrupted, "
                "incomplete or from another checkpoint."
            )
    if model is None:
        spec = meta.get("model")
        if not isinstance(spec, dict) or "name" not in spec:
            raise CheckpointError(not_rebuildable(directory, meta))
        try:
            model = from_spec(spec)
        except TorchSlimError as exc:
            raise CheckpointError(f"{directory}/{META}: key 'model' cannot be rebuilt: {exc}") from None
    if meta.get("applied_steps"):  # e.g. pruned channels: reshape the fresh model before loading
        model = _replay_rest(model, meta["applied_steps"], f"{directory}/{META}")
    load_state(model, read_tensors(weights), str(weights))
    return model, meta


# --- training state ----------------------------------------------------------------------------

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
    tensors = _contiguous(tensors)
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
