"""``DistillTask``: a student, one or more frozen teachers and weighted losses, as one module.

``task(x, y)`` (or ``task(batch_dict)``) returns ``{"loss": total, "<loss name>": part, ...,
"logits": student logits}``: a plain scalar to backward in any training loop, and what ``fit``
expects of a task. Features are read by forward hooks on module paths (``core.taps``); connector
shapes are found by probing one batch (``prepare``), so the user never types a channel count.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.core.taps import Taps
from torchslim.distill.cache import TeacherCache
from torchslim.distill.losses import DistillLoss, Outputs
from torchslim.distill.mixing import mix_batch
from torchslim.distill.schedule import Schedule, as_schedule

LossSpec = DistillLoss | tuple[DistillLoss, float | Schedule]


def _logits(output: Any) -> torch.Tensor:
    """Default adaptor: a tensor, or ``.logits`` / ``["logits"]`` / the first item of a tuple."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) and "logits" in output:
        return output["logits"]
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TorchSlimError(f"Cannot find logits in a model output of type {type(output).__name__}; "
                         "pass adaptor=... to DistillTask to pick them.")


class DistillTask(nn.Module):
    """Distil ``teacher`` (or several) into ``student`` with weighted ``losses``.

    Args:
        student: the model being trained; ``task.student`` is what gets evaluated and exported.
        teacher: a module, a list of modules or ``{name: module}``. Teachers are put in eval mode,
            run without gradients and never updated.
        losses: loss modules (``torchslim.distill.losses``), each optionally paired with a weight
            or a :class:`Schedule` of its weight: ``[KD(T=4), (CE(), 0.1)]``.
        teacher_weights: weights of several teachers (default equal).
        multi_teacher: ``"mean"``: logit losses see the weighted mean of the teachers' softened
            distributions; ``"each"``: a logit loss is computed per teacher and weighted.
        temperature: a :class:`Schedule` applied to every loss with a ``T`` during training.
        mix: ``None``, ``"mixup"`` or ``"cutmix"``: one draw per batch seen identically by teacher
            and student ("consistent teaching"); label losses use both labels, weighted.
        adaptor: maps the student's raw output to logits (Hugging Face style outputs).
        teacher_adaptor: maps a teacher's raw output to logits.
        example_input: a batch to probe connector shapes now; otherwise call :meth:`prepare`
            (``fit`` does) before creating the optimizer.

    Raises:
        TorchSlimError: no losses, a bad weight, a feature path that does not exist, a loss naming
            an unknown teacher, or teacher and student with different class counts.
    """

    torchslim_task = True

    def __init__(self, student: nn.Module, teacher: nn.Module | Sequence[nn.Module] | Mapping[str, nn.Module],
                 losses: Sequence[LossSpec], *, teacher_weights: Sequence[float] | None = None,
                 multi_teacher: str = "mean", temperature: Schedule | None = None, mix: str | None = None,
                 mix_alpha: float = 1.0, adaptor: Callable[[Any], torch.Tensor] = _logits,
                 teacher_adaptor: Callable[[Any], torch.Tensor] | None = None,
                 example_input: torch.Tensor | None = None) -> None:
        super().__init__()
        self.student = student
        named = _name_teachers(teacher)
        # A teacher's name may be any text (a recipe or command names it by its source, a path); its
        # module key and cache folder are the name when that is a plain word, else "teacher[<i>]".
        self.teacher_keys = _module_keys(list(named))
        self.teachers = nn.ModuleDict({self.teacher_keys[name]: t for name, t in named.items()})
        for t in self.teachers.values():
            t.eval().requires_grad_(False)
        self.teacher_weights = _teacher_weights(teacher_weights, len(self.teachers))
        if multi_teacher not in ("mean", "each"):
            raise TorchSlimError(f"multi_teacher must be 'mean' or 'each', got {multi_teacher!r}.")
        self.multi_teacher, self.temperature = multi_teacher, temperature
        self.mix, self.mix_alpha = mix, mix_alpha
        self.adaptor, self.teacher_adaptor = adaptor, teacher_adaptor or adaptor
        self.losses, self.names, self.weights = _parse_losses(losses)
        self._check_teacher_names()
        self._student_taps = Taps(student, {loss.student_tap for loss in self._feature_losses()}, "student")
        self._teacher_taps = {
            name: Taps(t, {loss.teacher_tap for loss in self._feature_losses() if self._teacher_of(loss) == name},
                       f"teacher {name!r}")
            for name, t in self.teachers.items()}
        self.progress = 0.0
        self.epoch = 0
        self.caches: dict[str, TeacherCache] = {}
        self._attached: list[TeacherCache] = []  # caches replaying the loader, undone by close()
        self.prepared = False
        if example_input is not None:
            self.prepare({"x": example_input})

    # -- set-up ------------------------------------------------------------------------------------

    def _feature_losses(self) -> list[DistillLoss]:
        return [loss for loss in self.losses if getattr(loss, "student_tap", None)]

    def _teacher_of(self, loss: DistillLoss) -> str:
        name = getattr(loss, "teacher", None)
        return self.teacher_keys[name] if name is not None else next(iter(self.teachers))

    def _check_teacher_names(self) -> None:
        for loss in self.losses:
            name = getattr(loss, "teacher", None)
            if name is not None and name not in self.teacher_keys:
                raise TorchSlimError(f"Loss {type(loss).__name__} names teacher {name!r}, but the teachers "
                                     f"are {', '.join(map(repr, self.teacher_keys))}.")

    @torch.no_grad()
    def prepare(self, batch: Mapping[str, Any] | torch.Tensor) -> None:
        """Probe one batch: check class counts agree and build every loss's connectors."""
        x = batch["x"] if isinstance(batch, Mapping) else batch
        was_training = self.student.training
        self.student.eval()
        try:
            student, teachers = self._forward_all(x[:2] if len(x) > 1 else x)
        finally:
            self.student.train(was_training)
        for name, t in teachers.items():
            if t.logits is not None and student.logits is not None and t.logits.shape[-1] != student.logits.shape[-1]:
                raise TorchSlimError(
                    f"Teacher {name!r} predicts {t.logits.shape[-1]} classes but the student predicts "
                    f"{student.logits.shape[-1]}: distillation needs the same classes.")
        for loss in self.losses:
            if hasattr(loss, "build"):
                s_shape = student.features[loss.student_tap].shape if getattr(loss, "student_tap", None) else student.logits.shape
                t_out = teachers[self._teacher_of(loss)]
                t_shape = t_out.features[loss.teacher_tap].shape if getattr(loss, "teacher_tap", None) else t_out.logits.shape
                loss.build(s_shape, t_shape)
        self.to(next(self.student.parameters()).device)
        self.prepared = True

    # -- running -----------------------------------------------------------------------------------

    def train(self, mode: bool = True) -> DistillTask:
        super().train(mode)
        for t in self.teachers.values():
            t.eval()  # teachers never leave eval mode (BN statistics and dropout stay fixed)
        return self

    def set_progress(self, fraction: float) -> None:
        """Training progress in [0, 1] for weight and temperature schedules (``fit`` calls this)."""
        self.progress = float(fraction)
        if self.temperature is not None:
            for loss in self.losses:
                if hasattr(loss, "T"):
                    loss.T = self.temperature(self.progress)

    def use_cache(self, loader, *, draws: int = 1, directory=None, topk: int | None = None,
                  log=print) -> None:
        """Compute every teacher's logits over ``draws`` replayed epochs of ``loader`` once and
        serve them from the cache from now on (see :mod:`torchslim.distill.cache`). Until
        :meth:`close`, ``loader`` replays the recorded draws (epoch e serves draw e % draws).

        Raises:
            TorchSlimError: a feature loss needs a teacher's live features, or mixing is on (mixed
                images differ every epoch, so a cache cannot hold them).
        """
        if self.mix:
            raise TorchSlimError(f"A teacher cache cannot be used with mix={self.mix!r}: mixed images "
                                 "are new every epoch. Use the live teacher (no cache) with mixing.")
        tapped = [name for name, taps in self._teacher_taps.items() if taps.paths]
        if tapped:
            raise TorchSlimError(f"Teacher(s) {', '.join(map(repr, tapped))} feed feature losses, whose "
                                 "features are not cached; run them live (no cache).")
        for name, teacher in self.teachers.items():
            directory_t = None if directory is None else Path(directory) / name
            self.caches[name] = TeacherCache(teacher, loader, draws=draws, directory=directory_t,
                                             topk=topk, adaptor=self.teacher_adaptor, log=log)
            self.caches[name].attach()
            self._attached.append(self.caches[name])

    def set_epoch(self, epoch: int) -> None:
        """The training epoch (``fit`` calls this): picks the cached augmentation draw."""
        self.epoch = int(epoch)

    def _forward_all(self, x: torch.Tensor, index: torch.Tensor | None = None) -> tuple[Outputs, dict[str, Outputs]]:
        teachers = {}
        with torch.no_grad():
            for name, t in self.teachers.items():
                if name in self.caches and index is not None and self.training:
                    teachers[name] = Outputs(self.caches[name].lookup(self.epoch, index).to(x.device), {})
                    continue
                self._teacher_taps[name].clear()
                logits = self.teacher_adaptor(t(x))
                teachers[name] = Outputs(logits.detach(), {k: v.detach() for k, v in self._teacher_taps[name].outputs.items()})
        self._student_taps.clear()
        logits = self.adaptor(self.student(x))
        return Outputs(logits, dict(self._student_taps.outputs)), teachers

    def forward(self, x: torch.Tensor | Mapping[str, Any], y: torch.Tensor | None = None,
                index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        batch = dict(x) if isinstance(x, Mapping) else {"x": x, "y": y, "index": index}
        batch = {k: v for k, v in batch.items() if v is not None}
        if not self.prepared:
            self.prepare(batch)
        if self.mix and self.training:
            batch = mix_batch(batch, self.mix, self.mix_alpha)
        student, teachers = self._forward_all(batch["x"], batch.get("index"))
        out: dict[str, torch.Tensor] = {}
        total = student.logits.new_zeros(())
        for loss, name, weight in zip(self.losses, self.names, self.weights, strict=True):
            value = self._loss_value(loss, student, teachers, batch)
            out[name] = value.detach()
            w = weight(self.progress)
            total = total + w * value
            if weight.kind != "constant":  # scheduled values go into fit's per-epoch history
                out[f"weight_{name}"] = torch.tensor(w)
        if self.temperature is not None:
            out["temperature"] = torch.tensor(self.temperature(self.progress))
        out["loss"], out["logits"] = total, student.logits
        return out

    def _loss_value(self, loss: DistillLoss, student: Outputs, teachers: dict[str, Outputs],
                    batch: dict[str, Any]) -> torch.Tensor:
        if loss.kind == "labels" and "mix" in batch:
            y_b, lam = batch["mix"]
            other = {**batch, "y": y_b}
            return lam * loss(student, teachers[self._teacher_of(loss)], batch) + (1 - lam) * loss(
                student, teachers[self._teacher_of(loss)], other)
        if getattr(loss, "student_tap", None) or len(teachers) == 1 or getattr(loss, "teacher", None):
            return loss(student, teachers[self._teacher_of(loss)], batch)
        if self.multi_teacher == "each" or loss.kind != "logits":
            return sum(w * loss(student, t, batch) for w, t in zip(self.teacher_weights, teachers.values(), strict=True))
        return loss(student, _mean_of_softened(teachers, self.teacher_weights, getattr(loss, "T", 1.0)), batch)

    def close(self) -> None:
        """Remove every forward hook this task installed and give the training loader back as it
        was (a cache makes it replay recorded draws only while this task uses it)."""
        while self._attached:  # newest first: each restores what the one before it found
            self._attached.pop().detach()
        self._student_taps.close()
        for taps in self._teacher_taps.values():
            taps.close()

    def __enter__(self) -> DistillTask:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mean_of_softened(teachers: dict[str, Outputs], weights: list[float], T: float) -> Outputs:
    """One teacher whose softened distribution at temperature T is the teachers' weighted mean.

    Logits ``T * log(p)`` give back exactly ``p`` under ``softmax(. / T)``.
    """
    probs = sum(w * torch.softmax(t.logits / T, dim=-1) for w, t in zip(weights, teachers.values(), strict=True))
    return Outputs(T * torch.log(probs.clamp_min(1e-12)), {})


def _name_teachers(teacher: Any) -> dict[str, nn.Module]:
    if isinstance(teacher, nn.Module):
        return {"teacher": teacher}
    if isinstance(teacher, Mapping):
        named = {str(name): t for name, t in teacher.items()}
    elif isinstance(teacher, Sequence):
        named = {f"teacher{i}": t for i, t in enumerate(teacher)}
    else:
        raise TorchSlimError(f"teacher must be a module, a list or a dict of modules, got {type(teacher).__name__}.")
    if not named or not all(isinstance(t, nn.Module) for t in named.values()):
        raise TorchSlimError("DistillTask needs at least one teacher, each an nn.Module.")
    return named


def _module_keys(names: list[str]) -> dict[str, str]:
    """``{teacher name: module key}``: the name itself when it is a plain word (letters, digits,
    ``_``, ``-``: a valid module name and a safe folder name), else ``teacher`` (one teacher) or
    ``teacher<i>``; never twice."""
    keys: dict[str, str] = {}
    for i, name in enumerate(names):
        key = name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else "teacher" if len(names) == 1 else f"teacher{i}"
        while key in keys.values():
            key += "_"
        keys[name] = key
    return keys


def _teacher_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0 / n] * n
    weights = [float(w) for w in weights]
    if len(weights) != n or min(weights) < 0 or sum(weights) <= 0:
        raise TorchSlimError(f"teacher_weights must be {n} non-negative numbers with a positive sum, got {weights}.")
    return [w / sum(weights) for w in weights]


def _parse_losses(losses: Sequence[LossSpec]) -> tuple[nn.ModuleList, list[str], list[Schedule]]:
    if not losses:
        raise TorchSlimError("DistillTask needs at least one loss, e.g. [KD(T=4), (CE(), 0.1)]; "
                             "list them with `torchslim losses`.")
    modules, names, weights = nn.ModuleList(), [], []
    for spec in losses:
        loss, weight = spec if isinstance(spec, tuple) else (spec, 1.0)
        if not isinstance(loss, DistillLoss):
            raise TorchSlimError(f"Each loss must be a torchslim distillation loss, got {type(loss).__name__}.")
        base = getattr(loss, "registered_name", None) or type(loss).__name__.lower()
        name = base if base not in names else f"{base}_{sum(n.startswith(base) for n in names)}"
        modules.append(loss)
        names.append(name)
        weights.append(as_schedule(weight, f"The weight of loss {name!r}"))
    return modules, names, weights
