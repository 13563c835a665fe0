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
import copy
import dataclasses
import hashlib
import importlib
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

from torchslim.core.errors import CheckpointError, TorchSlimError
from torchslim.core.io import atomic_write_json
from torchslim.pipeline.recipe import Recipe, RecipeError, digest
from torchslim.pipeline.steps import Output, steps_for

STEP_FILE = "step.json"
FACTORY_KEY = "factory"  # model.json's "model": {"factory": <models= key or module:function>, ...}
TEACHER_KEY = "teacher"  # model.json's "model": {"teacher": ...}: the teacher object given by the caller
REBUILD_HINT = ("To make a model of your own architecture rebuildable, save it with "
                "torchslim.save_model(model, dir, factory=NAME) and pass models={NAME: factory} (or name a "
                "`package.module:function` allowed by --allow-import), or give the model object itself as "
                "teacher=; torchslim never unpickles a module.")


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


def subset_bundle(bundle: Any, train: int | None, test: int | None, seed: int) -> Any:
    """``bundle`` with seeded random subsets of its training and test sets (None: all)."""
    from torchslim.data.base import ArrayImageDataset, make_loader

    def cut(loader: Any, n: int | None, is_train: bool, salt: int) -> Any:
        ds = loader.dataset
        if n is None or n >= len(ds):
            return loader
        if not isinstance(ds, ArrayImageDataset):
            raise TorchSlimError(f"Subsetting needs an ArrayImageDataset, got {type(ds).__name__}; "
                                 "drop train_subset/test_subset or pass loaders of the size you want.")
        idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed * 7919 + salt))[:n].sort().values
        part = ArrayImageDataset(ds.images[idx], ds.labels[idx], tuple(ds.mean.flatten().tolist()),
                                 tuple(ds.std.flatten().tolist()), ds.augment)
        size = loader.sampler.batch_size if hasattr(loader.sampler, "batch_size") else 128
        return make_loader(part, size, train=is_train, seed=seed)

    return dataclasses.replace(bundle, train=cut(bundle.train, train, True, 1), test=cut(bundle.test, test, False, 2))


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


def import_factory(ref: str, allow_imports: tuple[str, ...], where: str = "") -> Callable[..., nn.Module]:
    """``"package.module:function"``, imported only when its top-level package was allowed."""
    module_name, _, attr = ref.partition(":")
    top = module_name.split(".")[0]
    if not module_name or not attr:
        raise RecipeError(f"{where}: model {ref!r} must be `module:function` or a registered model name.")
    if top not in allow_imports and module_name not in allow_imports:
        raise RecipeError(
            f"{where}: model {ref!r} would import Python code from {module_name!r}. A recipe never imports "
            f"code by itself: allow it explicitly with `--allow-import {top}` (or allow_imports=[{top!r}]).")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RecipeError(f"{where}: cannot import {module_name!r} for model {ref!r}: {exc}.") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise RecipeError(f"{where}: {module_name!r} has no callable {attr!r} (model {ref!r}).")
    return factory


@dataclasses.dataclass
class Context:
    """What steps see: the recipe, the data, the teacher and model factories, where to work."""

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
    _data: Any = None
    _data_key: str | None = None
    _sources: dict[str, tuple[nn.Module, dict]] = dataclasses.field(default_factory=dict)

    # data ----------------------------------------------------------------------------------------
    @property
    def data(self) -> Any:
        if self._data is None:
            from torchslim import data as datasets

            cfg = self.recipe.data
            if self.recipe.task == "text":  # sizes go to the loader: token ids are not an image dataset
                self._data = self.data_override if self.data_override is not None else self._text_data()
                return self._data
            if self.data_override is not None:
                bundle = self.data_override
            else:
                kwargs = {"batch_size": cfg.batch_size, "seed": self.recipe.seed, "augment": cfg.augment,
                          **cfg.options}
                if cfg.name == "fashion-mnist":
                    kwargs["val_size"] = cfg.val_size
                    if cfg.root:
                        kwargs["root"] = cfg.root
                bundle = datasets.load(cfg.name, **kwargs)
            from torchslim.data.custom import check_finite

            check_finite(bundle)  # NaN/Inf refused here, before a step trains or calibrates on them
            self._data = subset_bundle(bundle, *self._subset_sizes(), self.recipe.seed)
        return self._data

    def _subset_sizes(self) -> tuple[int | None, int | None]:
        cfg, q = self.recipe.data, self.recipe.quick
        if not self.quick:
            return cfg.train_subset, cfg.test_subset
        return min(cfg.train_subset or q.train_subset, q.train_subset), min(cfg.test_subset or q.test_subset,
                                                                             q.test_subset)

    def _text_data(self) -> Any:
        """The text dataset tokenized by the teacher's tokenizer (every model derives from it)."""
        from torchslim import data as datasets

        cfg = self.recipe.data
        teacher, _ = self.load_model("teacher")
        train_n, test_n = self._subset_sizes()
        kwargs = {"batch_size": cfg.batch_size, "seed": self.recipe.seed, "tokenizer": teacher.tokenizer,
                  "train_size": train_n, "test_size": test_n, **cfg.options}
        if cfg.root:
            kwargs["root"] = cfg.root
        bundle = datasets.load(cfg.name, **kwargs)
        largest = max(self.recipe.measure.batch_sizes)
        if len(bundle.test.dataset) < largest:
            raise RecipeError(f"{self.recipe.source}: the {cfg.name} test split has {len(bundle.test.dataset)} "
                              f"sentences, fewer than the largest measure.batch_sizes ({largest}) that text models "
                              "are timed on; raise data.test_subset or the test fraction.")
        return bundle

    def data_key(self) -> str:
        if self._data_key is None:  # hashed once per run: every strategy's first key starts from it
            self._data_key = bundle_fingerprint(self.data)
        return self._data_key

    # models --------------------------------------------------------------------------------------
    def teacher_source(self) -> str:
        if self.teacher_override is None and not self.recipe.teacher:
            raise RecipeError(f"{self.recipe.source}: a step uses `teacher` but the recipe names none "
                              "(add `teacher: <shipped model or checkpoint directory>`).")
        return self.recipe.teacher or "<given teacher>"

    def _load_source(self, source: str) -> tuple[nn.Module, dict]:
        from torchslim import zoo

        if source == "teacher":
            if self.teacher_override is not None and self.recipe.task == "text":
                return self.teacher_override, {"source": "teacher given by the caller"}
            if self.teacher_override is not None:
                return self._given_teacher(), {"source": "teacher given by the caller"}
            source = self.teacher_source()
        if self.recipe.task == "text":
            return self._load_encoder(source)
        if source in zoo.ZOO:
            model, meta = zoo.load(source)
        elif Path(source).exists():
            model, meta = self.load_dir(Path(source))
        elif ":" in source or source in self.factories:  # `package.module:function` or a models={...} key
            model, meta = self.rebuild({FACTORY_KEY: source}, self.where), {"source": source}
        else:
            raise TorchSlimError(
                f"{self.where or self.recipe.source}: model source {source!r} is neither a shipped model "
                f"({', '.join(zoo.list())}), an existing checkpoint directory, a key of models={{...}} "
                f"({', '.join(self.factories) or 'none given'}) nor `package.module:function`.")
        self.check_fits(model, f"model source {source!r}")
        return model, meta

    def _given_teacher(self) -> nn.Module:
        """A copy of the caller's teacher object, tagged so that models derived from it (pruned,
        sparsified, fine-tuned) are saved as "the teacher + these applied steps" and reloaded by
        replaying the steps on a fresh copy of it."""
        from torchslim.models import SPEC_ATTR, spec_of

        if not isinstance(self.teacher_override, nn.Module):
            raise TorchSlimError(f"teacher= must be an nn.Module (a classifier giving logits), got "
                                 f"{type(self.teacher_override).__name__}.")
        teacher = copy.deepcopy(self.teacher_override)
        spec = spec_of(teacher)
        if not (isinstance(spec, dict) and "name" in spec):  # a registered family rebuilds anywhere: keep it
            cls = type(teacher)
            object.__setattr__(teacher, SPEC_ATTR, {TEACHER_KEY: "given to compare()/run()",
                                                    "class": f"{cls.__module__}:{cls.__qualname__}"})
        self.check_fits(teacher, "the teacher given")
        return teacher

    def check_fits(self, model: nn.Module, what: str) -> None:
        """Input channels and output width of an image model against the data, before any work."""
        if self.recipe.task == "text" or not isinstance(model, nn.Module):
            return
        from torchslim.train.evaluate import check_bundle_fits

        check_bundle_fits(model, self.data, f"{self.where or self.recipe.source}: {what}")

    def rebuild(self, spec: Any, where: str) -> nn.Module:
        """A fresh instance of the architecture a model.json's ``"model"`` records: a registered family
        (``name``), a factory (``factory``: a key of ``models=`` or ``module:function``), or the
        teacher object given by the caller (``teacher``). The result carries ``spec``, so saving it
        again records the same recipe.

        Raises:
            CheckpointError: ``spec`` is None or names what this context cannot build (the message
                says how to make it rebuildable).
        """
        from torchslim.core.checkpoint import check_spec
        from torchslim.models import SPEC_ATTR, from_spec

        check_spec(spec, where)
        if not isinstance(spec, dict):
            raise CheckpointError(f"{where} records no way to rebuild its model. " + REBUILD_HINT)
        if FACTORY_KEY in spec:
            model = self.build_factory(spec)
        elif TEACHER_KEY in spec:
            if self.teacher_override is None:
                raise CheckpointError(f"{where}: this model was derived from the teacher object given to "
                                      "compare()/run() (an architecture torchslim cannot build alone); pass "
                                      "the same teacher= again to reload it.")
            model = self._sources["teacher"][0] if "teacher" in self._sources else self._given_teacher()
            model = copy.deepcopy(model)
        else:
            try:
                model = from_spec(spec)
            except TorchSlimError as exc:
                raise CheckpointError(f"{where}: key 'model' cannot be rebuilt: {exc}") from None
        object.__setattr__(model, SPEC_ATTR, spec)
        return model

    def load_dir(self, path: Path) -> tuple[nn.Module, dict]:
        """A torch checkpoint directory rebuilt by :meth:`rebuild` and loaded (applied steps replayed)."""
        from torchslim.core.checkpoint import META, load_model, read_meta
        from torchslim.models import SPEC_ATTR

        meta = read_meta(path)
        spec = meta.get("model")
        if spec is None:
            raise CheckpointError(f"{path / META} records no model spec: its class {meta.get('class', '(unknown)')} "
                                  "is not a torchslim model family. " + REBUILD_HINT)
        model, meta = load_model(path, model=self.rebuild(spec, str(path / META)))
        object.__setattr__(model, SPEC_ATTR, spec)
        return model, meta

    def _load_encoder(self, source: str) -> tuple[nn.Module, dict]:
        from torchslim.text import load_encoder

        try:
            encoder = load_encoder(source, max_length=self.recipe.text.max_length, log=self.log)
        except TorchSlimError as exc:
            raise TorchSlimError(f"{self.where or self.recipe.source}: text model source {source!r}: {exc}") from None
        return encoder, {"source": source, "path": getattr(encoder, "source", source)}

    def load_model(self, source: str) -> tuple[nn.Module, dict]:
        """A private copy of a model source (``teacher``, a shipped name or a checkpoint)."""
        if source not in self._sources:
            self._sources[source] = self._load_source(source)
        model, meta = self._sources[source]
        if hasattr(model, "rewrap"):  # a sentence encoder: its tokenizer is shared, not copied
            return model.rewrap(copy.deepcopy(model.bert)).eval(), meta
        return copy.deepcopy(model).eval(), meta

    def source_key(self, source: str) -> str:
        from torchslim.distill.cache import weights_hash

        model, _ = self.load_model(source)
        return weights_hash(model)

    def create_model(self, name: str, kwargs: dict[str, Any]) -> nn.Module:
        from torchslim import models

        bundle = self.data
        if name in self.factories or ":" in name:
            model = self.rebuild({FACTORY_KEY: name, "num_classes": bundle.num_classes,
                                  "in_channels": bundle.input_shape[0], "kwargs": kwargs}, self.where)
        else:
            model = models.create(name, num_classes=bundle.num_classes, in_channels=bundle.input_shape[0], **kwargs)
        self.check_fits(model, f"model {name!r}")
        return model

    def build_factory(self, spec: dict) -> nn.Module:
        """Call the factory a spec names with its recorded (or the data's) sizes and keyword arguments."""
        name = spec[FACTORY_KEY]
        factory = self.factories.get(name)
        if factory is None:
            if ":" not in name:
                raise CheckpointError(
                    f"{self.where or self.recipe.source}: the model was built by the factory {name!r}, which is "
                    f"not among the models={{...}} given ({', '.join(self.factories) or 'none'}); pass "
                    f"models={{{name!r}: your_factory}} to compare()/run().")
            factory = import_factory(name, self.allow_imports, self.where)
        sizes = {"num_classes": spec.get("num_classes") or self.data.num_classes,
                 "in_channels": spec.get("in_channels") or self.data.input_shape[0]}
        try:
            model = factory(**sizes, **spec.get("kwargs", {}))
        except TypeError as exc:
            raise RecipeError(f"{self.where}: model factory {name!r} cannot be called as {name}(num_classes=..., "
                              f"in_channels=..., **{spec.get('kwargs', {})}): {exc}.") from None
        if not isinstance(model, nn.Module):
            raise RecipeError(f"{self.where}: model factory {name!r} returned {type(model).__name__}, not an nn.Module.")
        return model

    def runnable(self, model: Any) -> Any:
        """An ``nn.Module`` as is; an ONNX file as an ONNX Runtime session wrapper."""
        if isinstance(model, nn.Module):
            return model
        if self.recipe.task == "text":  # token ids in: the text runtime, not the image one
            from torchslim.text import OrtEncoder

            return OrtEncoder(model, threads=self.recipe.threads or 1)
        from torchslim import runtime

        return runtime.load(model)


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
        if self.kind == "text":
            from torchslim.text import load_encoder

            return load_encoder(self.path, log=ctx.log)
        model, _ = ctx.load_dir(self.path)
        return model


def artifact_name(kind: str) -> str:
    return "model.onnx" if kind == "onnx" else "model"


def _save_output(out: Output, step_dir: Path, record: dict) -> str:
    from torchslim.core.checkpoint import save_model
    from torchslim.models import spec_of
    from torchslim.text.encoder import SentenceEncoder

    if out.model is not None and out.onnx is not None:
        raise TorchSlimError("A step returned both a torch model and an ONNX file.")
    if isinstance(out.model, SentenceEncoder):
        from torchslim.text import save_encoder

        target = step_dir / "model"
        shutil.rmtree(target, ignore_errors=True)
        save_encoder(out.model.cpu(), target, _plain({"pipeline_step": record, **out.meta}))
        return "text"
    if out.model is not None:
        target = step_dir / "model"
        shutil.rmtree(target, ignore_errors=True)
        save_model(out.model.cpu(), target, {"pipeline_step": record, **out.meta}, spec=spec_of(out.model))
        return "torch"
    if out.onnx is not None:
        source = Path(out.onnx)
        target = step_dir / "model.onnx"
        if source.resolve() != target.resolve():
            tmp = target.with_suffix(".onnx.partial")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
            sidecar = source.with_suffix(".json")
            if sidecar.is_file():
                shutil.copyfile(sidecar, target.with_suffix(".json"))
        return "onnx"
    raise TorchSlimError(f"Step {record['step']!r} produced no model.")


@dataclasses.dataclass
class StrategyResult:
    name: str
    steps: list[dict]
    final: Saved | None = None
    error: str | None = None
    model: Any = None  # the final model when it was produced in this process
    task: str = "image"

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

    def families(self) -> list[str]:
        steps = steps_for(self.task)
        return sorted({steps.get(s["step"]).family for s in self.steps})


def run_strategy(ctx: Context, name: str) -> StrategyResult:
    """Run (or reuse) every step of strategy ``name``; raises on the first failing step."""
    recipe = ctx.recipe
    specs = recipe.strategies[name]
    base = {"data": ctx.data_key(), "seed": recipe.seed, "threads": recipe.threads, "quick": ctx.quick}
    key, current = digest(base), None
    records: list[dict] = []
    registry = steps_for(recipe.task)
    for i, spec in enumerate(specs):
        step = registry.get(spec.name)()
        params = step.quicken(spec.params, recipe.quick) if ctx.quick else spec.params
        config = {"step": spec.name, **params.model_dump(mode="json")}
        key = digest({"input": key, "config": config,
                      "sources": {n: ctx.source_key(n) for n in step.sources(params)}})
        step_dir = ctx.out / "steps" / f"{i:02d}-{spec.name}-{key[:12]}"
        ctx.where = f"{name}[{i}] {spec.name}" + (f" ({spec.where})" if spec.where else "")
        done = _finished(step_dir, key)
        if done is not None:
            ctx.log(f"{name}: step {i + 1}/{len(specs)} {spec.name} — reused ({step_dir.name})")
            records.append({**done, "reused": True})
            current = Saved(step_dir, done["kind"])
            continue
        if isinstance(current, Saved):
            current = current.materialise(ctx)
        if current is not None and not isinstance(current, nn.Module) and not step.takes_onnx:
            raise TorchSlimError(f"{ctx.where}: {spec.name!r} needs a torch model but the previous step "
                                 "produced an ONNX file; put it before `quantize`/`export`.")
        ctx.work = step_dir / "work"
        ctx.work.mkdir(parents=True, exist_ok=True)
        ctx.log(f"{name}: step {i + 1}/{len(specs)} {spec.name} ...")
        began = time.perf_counter()
        with PeakMemory() as memory, collect_warnings() as said:
            out = step.run(ctx, params, current)
        seconds = time.perf_counter() - began
        for message in said:
            ctx.log(f"{name}: step {i + 1}/{len(specs)} {spec.name}: warning: {message}")
        record = {"step": spec.name, "strategy": name, "index": i, "key": key, "config": config,
                  "seconds": seconds, "epochs": out.epochs, "used_teacher": out.used_teacher,
                  "peak_memory_bytes": memory.peak or None, "metrics": _plain(out.metrics),
                  "warnings": said, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        record["kind"] = _save_output(out, step_dir, record)
        atomic_write_json(step_dir / STEP_FILE, record)
        shutil.rmtree(ctx.work / "checkpoints", ignore_errors=True)  # the step is done: its resume state goes
        records.append({**record, "reused": False})
        current = out.model if out.model is not None else step_dir / "model.onnx"
    final = Saved(ctx.out / "steps" / f"{len(specs) - 1:02d}-{specs[-1].name}-{key[:12]}", records[-1]["kind"])
    return StrategyResult(name=name, steps=records, final=final,
                          model=current if not isinstance(current, Saved) else None, task=recipe.task)


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
