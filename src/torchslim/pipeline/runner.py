"""Running strategies: each step's output saved, its cost recorded, finished steps never redone.

Every step is keyed by a hash of its parameters and of its input (the key of the step before it,
down to the dataset, seed and teacher): ``DIR/steps/<step>-<key>/`` holds its model
(``model/``: a torch checkpoint or, for the text task, a sentence-encoder directory; or
``model.onnx``), ``step.json`` (written last: a step without it did not finish) and
``work/`` (training checkpoints and caches, so a step interrupted mid-training resumes at its last
finished epoch). Two strategies that begin with the same steps share them; a run started again
reuses every finished step whose key is unchanged and redoes only the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.core.io import atomic_write, atomic_write_json
from torchslim.pipeline.recipe import Recipe, digest
from torchslim.pipeline.sources import ModelSources, import_factory  # noqa: F401  (import_factory: re-exported)
from torchslim.pipeline.steps import Output
from torchslim.pipeline.tasks import Task, subset_bundle, task_of

STEP_FILE = "step.json"


# -- peak memory -----------------------------------------------------------------------------------


def rss_bytes() -> int | None:
    """This process's resident set size (Linux), or None where /proc is not available."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Samples the process's RSS every ``interval`` seconds while active; ``peak`` in bytes."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval, self.peak = interval, rss_bytes() or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes() or 0)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes() or 0)


# -- data and models -------------------------------------------------------------------------------


def bundle_fingerprint(bundle: Any) -> str:
    """Identifies a dataset by its name, sizes and a hash of every split's tensors (train, val, test:
    calibration reads the validation split), so changed data is never mistaken for the data a
    finished step was made from."""
    h = hashlib.sha256(f"{bundle.name}|{bundle.num_classes}|{tuple(bundle.input_shape)}".encode())
    for split in ("train", "val", "test"):
        loader = getattr(bundle, split, None)
        ds = getattr(loader, "dataset", None)
        if ds is None:
            h.update(f"{split}:none".encode())
            continue
        h.update(f"{split}:{len(ds)}".encode())
        for t in (getattr(ds, "images", None), getattr(ds, "labels", None)):
            if isinstance(t, torch.Tensor):
                h.update(str((tuple(t.shape), t.dtype)).encode())
                h.update(t.contiguous().numpy())  # buffer protocol: no copy
    return h.hexdigest()


@dataclasses.dataclass
class Context(ModelSources):
    """What steps see: the recipe, the data, the teacher and model factories (:class:`ModelSources`),
    where to work."""

    recipe: Recipe
    out: Path
    quick: bool = False
    progress: bool = True
    log: Callable[[str], None] = print
    factories: Mapping[str, Callable[..., nn.Module]] = dataclasses.field(default_factory=dict)
    allow_imports: tuple[str, ...] = ()
    data_override: Any = None
    teacher_override: nn.Module | None = None
    where: str = ""
    work: Path = Path(".")
    on_epoch_end: Callable[[int, dict], None] | None = None
    _data: Any = None
    _data_key: str | None = None
    _sources: dict[str, tuple[nn.Module, dict]] = dataclasses.field(default_factory=dict)

    @property
    def task(self) -> Task:
        """The recipe's task: its data, model loading and saving, runtimes and measurement."""
        return task_of(self.recipe)

    # data ----------------------------------------------------------------------------------------
    @property
    def data(self) -> Any:
        if self._data is None:
            self._data = self.task.load_data(self, self._subset_sizes())
        return self._data

    def _subset_sizes(self) -> tuple[int | None, int | None]:
        cfg, q = self.recipe.data, self.recipe.quick
        if not self.quick:
            return cfg.train_subset, cfg.test_subset
        return min(cfg.train_subset or q.train_subset, q.train_subset), min(cfg.test_subset or q.test_subset,
                                                                             q.test_subset)

    def data_key(self) -> str:
        if self._data_key is None:  # hashed once per run: every strategy's first key starts from it
            self._data_key = bundle_fingerprint(self.data)
        return self._data_key

    def runnable(self, model: Any) -> Any:
        """An ``nn.Module`` as is; an ONNX file on the task's runtime (ONNX Runtime)."""
        return self.task.runnable(self, model)


# -- saved steps -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Saved:
    """A finished step's model on disk, loaded only when a later step or the measurement needs it."""

    directory: Path
    kind: str  # "torch", "text" (a sentence-encoder directory) or "onnx"

    @property
    def path(self) -> Path:
        return self.directory / artifact_name(self.kind)

    @property
    def weights(self) -> Path:
        """The file whose size is the model's size: the safetensors weights or the .onnx file."""
        return self.path if self.kind == "onnx" else self.path / "model.safetensors"

    def materialise(self, ctx: Context) -> Any:
        if self.kind == "onnx":
            return self.path
        return ctx.task.materialise(ctx, self.kind, self.path)


def artifact_name(kind: str) -> str:
    return "model.onnx" if kind == "onnx" else "model"


def _save_output(out: Output, step_dir: Path, record: dict, task: Task) -> str:
    if out.model is not None and out.onnx is not None:
        raise TorchSlimError("A step returned both a torch model and an ONNX file.")
    if out.model is not None:
        target = step_dir / "model"
        shutil.rmtree(target, ignore_errors=True)
        kind = task.save(out.model, target, _plain({"pipeline_step": record, **out.meta}))
        if kind is None:
            raise TorchSlimError(f"Step {record['step']!r} produced a {type(out.model).__name__}, which a "
                                 f"{task.name} recipe cannot save.")
        return kind
    if out.onnx is not None:
        source = Path(out.onnx)
        target = step_dir / "model.onnx"
        if source.resolve() != target.resolve():
            # Atomic and full-disk-safe: a kill or ENOSPC leaves no partial model.onnx behind.
            atomic_write(target, lambda tmp: shutil.copyfile(source, tmp), need=source.stat().st_size)
            sidecar = source.with_suffix(".json")
            if sidecar.is_file():
                atomic_write(target.with_suffix(".json"), lambda tmp: shutil.copyfile(sidecar, tmp))
        return "onnx"
    raise TorchSlimError(f"Step {record['step']!r} produced no model.")


@dataclasses.dataclass
class StrategyResult:
    name: str
    steps: list[dict]
    final: Saved | None = None
    error: str | None = None
    model: Any = None  # the final model when it was produced in this process
    # the routes its steps take and whether its model is INT8 (Task.route), for the report
    route: dict[str, Any] = dataclasses.field(default_factory=lambda: {"families": [], "int8": False})

    @property
    def ok(self) -> bool:
        return self.error is None

    def cost(self) -> dict[str, Any]:
        """What producing the final model took: training seconds (steps that load a model
        excluded), epochs, whether a teacher ran, and the peak memory of any step."""
        made = [s for s in self.steps if s["step"] != "load"]
        return {"seconds": sum(s["seconds"] for s in made), "epochs": sum(s["epochs"] for s in made),
                "needs_teacher": any(s["used_teacher"] for s in made),
                "peak_memory_bytes": max((s["peak_memory_bytes"] or 0 for s in self.steps), default=0) or None,
                "reused_steps": sum(1 for s in self.steps if s.get("reused"))}


def run_strategy(ctx: Context, name: str) -> StrategyResult:
    """Run (or reuse) every step of strategy ``name``; raises on the first failing step."""
    recipe = ctx.recipe
    specs = recipe.strategies[name]
    base = {"data": ctx.data_key(), "seed": recipe.seed, "threads": recipe.threads, "quick": ctx.quick}
    key, current = digest(base), None
    records: list[dict] = []
    registry = ctx.task.steps
    for i, spec in enumerate(specs):
        step = registry.get(spec.name)()
        params = step.quicken(spec.params, recipe.quick) if ctx.quick else spec.params
        config = {"step": spec.name, **params.model_dump(mode="json")}
        key = digest({"input": key, "config": config,
                      "sources": {n: ctx.source_key(n) for n in step.sources(params)}})
        step_dir = ctx.out / "steps" / f"{i:02d}-{spec.name}-{key[:12]}"
        ctx.where = f"{name}[{i}] {spec.name}" + (f" ({spec.where})" if spec.where else "")
        with step_lock(step_dir):  # another process making the same step: wait, then reuse it
            current = _run_step(ctx, name, i, spec, step, params, config, key, step_dir, current, records, len(specs))
    final = Saved(ctx.out / "steps" / f"{len(specs) - 1:02d}-{specs[-1].name}-{key[:12]}", records[-1]["kind"])
    return StrategyResult(name=name, steps=records, final=final, route=ctx.task.route([s.name for s in specs]),
                          model=current if not isinstance(current, Saved) else None)


@contextlib.contextmanager
def step_lock(step_dir: Path) -> Iterator[None]:
    """An exclusive lock on ``step_dir`` across processes (``flock`` on a file beside it), so two
    workers of a search that need the same step make it once; released when the process dies."""
    import fcntl

    step_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(step_dir.parent / f".{step_dir.name}.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_step(ctx: Context, name: str, i: int, spec: Any, step: Any, params: Any, config: dict, key: str,
              step_dir: Path, current: Any, records: list[dict], count: int) -> Any:
    """Reuse step ``i`` of strategy ``name`` when it finished, else run it; the model it leaves."""
    done = _finished(step_dir, key)
    if done is not None:
        ctx.log(f"{name}: step {i + 1}/{count} {spec.name} — reused ({step_dir.name})")
        records.append({**done, "reused": True})
        return Saved(step_dir, done["kind"])
    if isinstance(current, Saved):
        current = current.materialise(ctx)
    if current is not None and not isinstance(current, nn.Module) and not step.takes_onnx:
        raise TorchSlimError(f"{ctx.where}: {spec.name!r} needs a torch model but the previous step "
                             "produced an ONNX file; put it before `quantize`/`export`.")
    ctx.work = step_dir / "work"
    ctx.work.mkdir(parents=True, exist_ok=True)
    ctx.log(f"{name}: step {i + 1}/{count} {spec.name} ...")
    began = time.perf_counter()
    with PeakMemory() as memory, collect_warnings() as said:
        out = step.run(ctx, params, current)
    seconds = time.perf_counter() - began
    for message in said:
        ctx.log(f"{name}: step {i + 1}/{count} {spec.name}: warning: {message}")
    record = {"step": spec.name, "strategy": name, "index": i, "key": key, "config": config,
              "seconds": seconds, "epochs": out.epochs, "used_teacher": out.used_teacher,
              "peak_memory_bytes": memory.peak or None, "metrics": _plain(out.metrics),
              "warnings": said, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    record["kind"] = _save_output(out, step_dir, record, ctx.task)
    atomic_write_json(step_dir / STEP_FILE, record)
    shutil.rmtree(ctx.work / "checkpoints", ignore_errors=True)  # the step is done: its resume state goes
    records.append({**record, "reused": False})
    return out.model if out.model is not None else step_dir / "model.onnx"


@contextlib.contextmanager
def collect_warnings() -> Iterator[list[str]]:
    """Collect torchslim's own warnings raised inside the block (a setting adjusted because the data
    is small, say) into the yielded list, so the step's record keeps them; other warnings pass on."""
    said: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield said
    for w in caught:
        if type(w.message).__module__.startswith("torchslim"):
            said.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def _finished(step_dir: Path, key: str) -> dict | None:
    path = step_dir / STEP_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    if record.get("key") != key:
        return None
    artifact = step_dir / artifact_name(record.get("kind", "onnx"))
    return record if artifact.exists() else None


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def format_error(exc: BaseException) -> str:
    if isinstance(exc, TorchSlimError):
        return str(exc)
    tb = traceback.extract_tb(exc.__traceback__)
    last = tb[-1] if tb else None
    place = f" (at {Path(last.filename).name}:{last.lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{place}"


__all__ = ["Context", "PeakMemory", "Saved", "StrategyResult", "bundle_fingerprint", "format_error",
           "import_factory", "run_strategy", "subset_bundle"]
