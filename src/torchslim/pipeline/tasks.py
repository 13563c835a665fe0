"""Tasks: what a recipe's models are, and everything about them the pipeline must not branch on.

A task owns its data loading, how its models are loaded, saved and run, the steps it accepts and how
its final models are measured. ``image`` classifies images (accuracy against labels); ``text``
makes sentence encoders smaller (agreement with the teacher's embeddings). A recipe's task follows
its dataset's declared task (:func:`torchslim.data.registry.dataset`); the runner, the preflight
and the comparison call the task's methods and never test its name.
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
from pathlib import Path
from typing import Any, ClassVar

from torchslim.core.errors import TorchSlimError
from torchslim.core.registry import Registry
from torchslim.pipeline.recipe_yaml import RecipeError


class Task(abc.ABC):
    """One kind of model the pipeline compresses."""

    name: ClassVar[str]
    quality: ClassVar[str]  # what the matrix's quality column is: "accuracy" or "agreement"
    start_hint: ClassVar[str]  # how a strategy of this task starts, for messages
    sections: ClassVar[frozenset[str]] = frozenset()  # recipe sections only this task reads

    @property
    @abc.abstractmethod
    def steps(self) -> Registry:
        """The steps a strategy of this task may use."""

    @abc.abstractmethod
    def load_data(self, ctx: Any, sizes: tuple[int | None, int | None]) -> Any:
        """The recipe's dataset as a bundle, ``sizes`` = (train, test) subset sizes (None: all)."""

    @abc.abstractmethod
    def load_source(self, ctx: Any, source: str) -> tuple[Any, dict]:
        """A model source by name (a shipped model, a directory, ...): (model, its metadata)."""

    def given_teacher(self, ctx: Any) -> Any:
        """The teacher object the caller gave, ready to use (image: a tagged private copy)."""
        return ctx.teacher_override

    def check_fits(self, ctx: Any, model: Any, what: str) -> None:
        """Refuse a model that cannot take the data (before any work); nothing to check by default."""
        return None

    @abc.abstractmethod
    def runnable(self, ctx: Any, model: Any) -> Any:
        """What runs ``model`` (an ``nn.Module`` as is; an ONNX file on this task's runtime)."""

    @abc.abstractmethod
    def save(self, model: Any, target: Path, meta: dict) -> str | None:
        """Save a torch model of this task to ``target``; its kind ("torch", "text"), or None when
        the model is not this task's own kind (the runner's generic save applies)."""

    def materialise(self, ctx: Any, kind: str, path: Path) -> Any:
        """A saved model of kind ``kind`` loaded again."""
        model, _ = ctx.load_dir(path)
        return model

    @abc.abstractmethod
    def measure(self, ctx: Any, results: list) -> dict[str, Any]:
        """Measure the final models of ``results`` (``{"records", "timing", "failures"}``)."""

    def check_recipe(self, recipe: Any, lines: Any) -> None:
        """Checks of the recipe's sections that depend on the task (after parsing)."""
        return None

    def route(self, steps: list[str]) -> dict[str, Any]:
        """What a strategy of these steps did, from the steps' own declarations: ``families`` (the
        compression routes taken: structural, distillation) and ``int8`` (its model is INT8)."""
        classes = [self.steps.get(s) for s in steps if s in self.steps]
        distilled = any(c.family == "distillation" for c in classes)
        structural = any(c.family == "structural" and not (c.makes_student and distilled) for c in classes)
        families = [f for f, taken in (("structural", structural), ("distillation", distilled)) if taken]
        return {"families": families, "int8": any(c.int8 for c in classes)}

    @abc.abstractmethod
    def preflight_step(self, ctx: Any, spec: Any, step: Any, current: Any, at: str) -> Any:
        """Check one step of a strategy before any work (models it makes, taps, paths) against what
        it gets (``current``); return what the next step gets."""


class ImageTask(Task):
    name, quality = "image", "accuracy"
    start_hint = "`load`, `train: {model: ...}` or `distill: {student: ...}`"

    @property
    def steps(self) -> Registry:
        from torchslim.pipeline.steps.base import STEPS

        return STEPS

    def load_data(self, ctx: Any, sizes: tuple[int | None, int | None]) -> Any:
        from torchslim import data as datasets
        from torchslim.data.custom import check_finite

        if ctx.data_override is not None:
            bundle = ctx.data_override
        else:
            cfg = ctx.recipe.data
            extra = {"augment": cfg.augment, **({"val_size": cfg.val_size} if cfg.val_size is not None else {})}
            bundle = datasets.load(cfg.name, **loader_kwargs(ctx.recipe, extra))
        check_finite(bundle)  # NaN/Inf refused here, before a step trains or calibrates on them
        return subset_bundle(bundle, *sizes, ctx.recipe.seed)

    def load_source(self, ctx: Any, source: str) -> tuple[Any, dict]:
        from torchslim import zoo
        from torchslim.pipeline.sources import FACTORY_KEY

        if source in zoo.ZOO:
            model, meta = zoo.load(source)
        elif Path(source).exists():
            model, meta = ctx.load_dir(Path(source))
        elif ":" in source or source in ctx.factories:  # `package.module:function` or a models={...} key
            model, meta = ctx.rebuild({FACTORY_KEY: source}, ctx.where), {"source": source}
        else:
            raise TorchSlimError(
                f"{ctx.where or ctx.recipe.source}: model source {source!r} is neither a shipped model "
                f"({', '.join(zoo.list())}), an existing checkpoint directory, a key of models={{...}} "
                f"({', '.join(ctx.factories) or 'none given'}) nor `package.module:function`.")
        self.check_fits(ctx, model, f"model source {source!r}")
        return model, meta

    def given_teacher(self, ctx: Any) -> Any:
        return ctx.tagged_teacher()

    def check_fits(self, ctx: Any, model: Any, what: str) -> None:
        from torch import nn

        from torchslim.train.evaluate import check_bundle_fits

        if isinstance(model, nn.Module):
            check_bundle_fits(model, ctx.data, f"{ctx.where or ctx.recipe.source}: {what}")

    def runnable(self, ctx: Any, model: Any) -> Any:
        from torch import nn

        from torchslim import runtime

        return model if isinstance(model, nn.Module) else runtime.load(model)

    def save(self, model: Any, target: Path, meta: dict) -> str | None:
        from torchslim.models import spec_of
        from torchslim.models.checkpoint import save_model

        save_model(model.cpu(), target, meta, spec=spec_of(model))
        return "torch"

    def preflight_step(self, ctx: Any, spec: Any, step: Any, current: Any, at: str) -> Any:
        from torchslim.pipeline.preflight import image_step

        return image_step(ctx, spec, step, current, at)

    def measure(self, ctx: Any, results: list) -> dict[str, Any]:
        from torchslim.pipeline.measuring import measure_image

        return measure_image(ctx, results)


class TextTask(Task):
    name, quality = "text", "agreement"
    start_hint = "`- load: teacher`"
    sections = frozenset({"text"})

    @property
    def steps(self) -> Registry:
        from torchslim.pipeline.steps.text import TEXT_STEPS

        return TEXT_STEPS

    def load_data(self, ctx: Any, sizes: tuple[int | None, int | None]) -> Any:
        """The text dataset tokenized by the teacher's tokenizer (every model derives from it)."""
        from torchslim import data as datasets

        if ctx.data_override is not None:
            return ctx.data_override
        recipe, (train_n, test_n) = ctx.recipe, sizes
        teacher, _ = ctx.load_model("teacher")
        bundle = datasets.load(recipe.data.name, **loader_kwargs(recipe, {
            "tokenizer": teacher.tokenizer, "train_size": train_n, "test_size": test_n}))
        largest = max(recipe.measure.batch_sizes)
        if len(bundle.test.dataset) < largest:
            raise RecipeError(f"{recipe.source}: the {recipe.data.name} test split has {len(bundle.test.dataset)} "
                              f"sentences, fewer than the largest measure.batch_sizes ({largest}) that text models "
                              "are timed on; raise data.test_subset or the test fraction.")
        return bundle

    def load_source(self, ctx: Any, source: str) -> tuple[Any, dict]:
        from torchslim.text import load_encoder

        try:
            encoder = load_encoder(source, max_length=ctx.recipe.text.max_length, log=ctx.log)
        except TorchSlimError as exc:
            raise TorchSlimError(f"{ctx.where or ctx.recipe.source}: text model source {source!r}: {exc}") from None
        return encoder, {"source": source, "path": getattr(encoder, "source", source)}

    def runnable(self, ctx: Any, model: Any) -> Any:
        from torch import nn

        from torchslim.text import OrtEncoder

        return model if isinstance(model, nn.Module) else OrtEncoder(model, threads=ctx.recipe.threads or 1)

    def save(self, model: Any, target: Path, meta: dict) -> str | None:
        from torchslim.text import save_encoder
        from torchslim.text.encoder import SentenceEncoder

        if not isinstance(model, SentenceEncoder):
            return None
        save_encoder(model.cpu(), target, meta)
        return "text"

    def materialise(self, ctx: Any, kind: str, path: Path) -> Any:
        from torchslim.text import load_encoder

        return load_encoder(path, log=ctx.log)

    def preflight_step(self, ctx: Any, spec: Any, step: Any, current: Any, at: str) -> Any:
        from torchslim.pipeline.preflight import text_step

        return text_step(ctx, spec, step, current, at)

    def measure(self, ctx: Any, results: list) -> dict[str, Any]:
        from torchslim.pipeline.measuring import text_measured
        from torchslim.pipeline.text_measure import measure_text

        return text_measured(measure_text(ctx, results), results)

    def check_recipe(self, recipe: Any, lines: Any) -> None:
        from torchslim.pipeline.recipe_yaml import dotted

        image_only = sorted({"val_size", "augment"} & recipe.data.model_fields_set)
        if image_only:
            raise RecipeError(f"{lines.where(('data', image_only[0]))}: data.{image_only[0]} applies to image datasets; "
                              f"{recipe.data.name!r} is a text dataset (its held-out fractions are data.options "
                              "val_fraction and test_fraction).")
        largest = max(recipe.measure.batch_sizes)
        for path, n in ((("data", "test_subset"), recipe.data.test_subset),
                        (("quick", "test_subset"), recipe.quick.test_subset)):
            if n is not None and n < largest:
                raise RecipeError(f"{lines.where(path)}: {dotted(path)} = {n} is smaller than the largest "
                                  f"measure.batch_sizes ({largest}): text models are timed on that many real test "
                                  "sentences.")


def subset_bundle(bundle: Any, train: int | None, test: int | None, seed: int) -> Any:
    """``bundle`` with seeded random subsets of its training and test sets (None: all)."""
    import torch

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


def loader_kwargs(recipe: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of the recipe dataset's loader: batch size, seed, root and ``data.options``,
    plus those of ``extra`` the loader takes. A key the user set in ``data:`` that the loader does
    not take is refused (never dropped silently)."""
    from torchslim.data.registry import DATASETS

    cfg = recipe.data
    loader = DATASETS.get(cfg.name)
    accepted = set(inspect.signature(loader).parameters)
    kwargs = {"batch_size": cfg.batch_size, "seed": recipe.seed}
    for key, value in {**extra, **({"root": cfg.root} if cfg.root else {})}.items():
        if key in accepted:
            kwargs[key] = value
        elif key in cfg.model_fields_set:
            raise RecipeError(f"{recipe.where('data', key)}: data.{key} does not apply to the {cfg.name} dataset "
                              f"(its loader takes: {', '.join(sorted(accepted))}); drop it.")
    return {**kwargs, **cfg.options}


TASKS: Registry = Registry("task")
TASKS.register("image", ImageTask())
TASKS.register("text", TextTask())


def task_of(recipe: Any) -> Task:
    """The task object of a recipe."""
    return TASKS.get(recipe.task)


__all__ = ["TASKS", "ImageTask", "Task", "TextTask", "loader_kwargs", "subset_bundle", "task_of"]
