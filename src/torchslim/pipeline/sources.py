"""Model sources of a pipeline run: the teacher, shipped models, checkpoint directories and the
caller's factories, and how a saved model of any of them is rebuilt.

A model.json's ``"model"`` says how to rebuild the architecture before the weights are loaded and
the recorded applied steps (pruned channels) replayed: a registered family (``{"name": ...}``), a
factory (``{"factory": <models= key or package.module:function>, ...}``) called with the data's
sizes, or the teacher object the caller gave (``{"teacher": ...}``: a fresh copy of it). No module
is ever unpickled; a model none of these can rebuild is refused with how to make it rebuildable.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from torchslim.core.errors import CheckpointError, TorchSlimError
from torchslim.pipeline.recipe_yaml import RecipeError

FACTORY_KEY = "factory"  # model.json's "model": {"factory": <models= key or module:function>, ...}
TEACHER_KEY = "teacher"  # model.json's "model": {"teacher": ...}: the teacher object given by the caller
REBUILD_HINT = ("To make a model of your own architecture rebuildable, save it with "
                "torchslim.save_model(model, dir, factory=NAME) and pass models={NAME: factory} (or name a "
                "`package.module:function` allowed by --allow-import), or give the model object itself as "
                "teacher=; torchslim never unpickles a module.")


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


class ModelSources:
    """The model half of the pipeline's :class:`~torchslim.pipeline.runner.Context`: it needs the
    context's ``recipe``, ``task``, ``data``, ``factories``, ``allow_imports``, ``teacher_override``,
    ``where``, ``log`` and ``_sources``."""

    recipe: Any
    task: Any
    data: Any
    factories: Mapping[str, Callable[..., nn.Module]]
    allow_imports: tuple[str, ...]
    teacher_override: nn.Module | None
    where: str
    log: Callable[[str], None]
    _sources: dict[str, tuple[nn.Module, dict]]

    def teacher_source(self) -> str:
        if self.teacher_override is None and not self.recipe.teacher:
            raise RecipeError(f"{self.recipe.source}: a step uses `teacher` but the recipe names none "
                              "(add `teacher: <shipped model or checkpoint directory>`).")
        return self.recipe.teacher or "<given teacher>"

    def _load_source(self, source: str) -> tuple[nn.Module, dict]:
        if source == "teacher":
            if self.teacher_override is not None:
                return self.task.given_teacher(self), {"source": "teacher given by the caller"}
            source = self.teacher_source()
        return self.task.load_source(self, source)

    def tagged_teacher(self) -> nn.Module:
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
        """The model against the data (image: input channels and output width), before any work."""
        self.task.check_fits(self, model, what)

    def rebuild(self, spec: Any, where: str) -> nn.Module:
        """A fresh instance of the architecture a model.json's ``"model"`` records: a registered family
        (``name``), a factory (``factory``: a key of ``models=`` or ``module:function``), or the
        teacher object given by the caller (``teacher``). The result carries ``spec``, so saving it
        again records the same recipe.

        Raises:
            CheckpointError: ``spec`` is None or names what this context cannot build (the message
                says how to make it rebuildable).
        """
        from torchslim.models import SPEC_ATTR, from_spec
        from torchslim.models.checkpoint import check_spec

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
            model = self._sources["teacher"][0] if "teacher" in self._sources else self.tagged_teacher()
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
        from torchslim.models import SPEC_ATTR
        from torchslim.models.checkpoint import META, load_model, read_meta

        meta = read_meta(path)
        spec = meta.get("model")
        if spec is None:
            raise CheckpointError(f"{path / META} records no model spec: its class {meta.get('class', '(unknown)')} "
                                  "is not a torchslim model family. " + REBUILD_HINT)
        model, meta = load_model(path, model=self.rebuild(spec, str(path / META)))
        object.__setattr__(model, SPEC_ATTR, spec)
        return model, meta

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


__all__ = ["FACTORY_KEY", "REBUILD_HINT", "TEACHER_KEY", "ModelSources", "import_factory"]
