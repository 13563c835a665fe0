"""Model artifacts without pickle: ``model.safetensors`` + ``model.json``, written atomically.

``save_model``/``load_model``: the JSON says how to rebuild the model (its spec: a registered
family, a factory, or the pipeline's teacher), the weights' SHA-256, metrics and the applied steps
that reshaped it. It is written last and names the weights' hash, so a half-written pair is
detected, never loaded.

Here, above ``core``, because rebuilding a model needs its family (:func:`torchslim.models.from_spec`);
the tensor files are :mod:`torchslim.core.tensors`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from torchslim.core.errors import CheckpointError, TorchSlimError
from torchslim.core.io import atomic_write_json
from torchslim.core.state import applied_steps, replay_steps
from torchslim.core.tensors import FORMAT_VERSION, load_state, read_tensors, save_tensors, sha256_file
from torchslim.models import from_spec, spec_of

WEIGHTS, META = "model.safetensors", "model.json"


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
