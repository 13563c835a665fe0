"""The training loop: one function, readable top to bottom.

``fit`` trains a classifier with cross-entropy, or any *task* module — one whose forward takes the
batch dict and returns a dict with a ``"loss"`` (distillation plugs in here) and whose
``.student`` (or itself) is what gets evaluated. It is seeded and deterministic on CPU, checkpoints
every epoch atomically, resumes bit-exactly, stops on a NaN/Inf loss, and runs as DDP under
``torchrun`` without code changes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import NonFiniteLossError, TorchSlimError
from torchslim.core.training_state import find_training_state, load_training_state, save_training_state
from torchslim.options.fit import FitConfig
from torchslim.train import distributed
from torchslim.train.batch import as_batch
from torchslim.train.evaluate import check_bundle_fits, evaluate
from torchslim.train.progress import Progress
from torchslim.train.schedule import lr_factor


@dataclass
class History:
    """What a run did: one record per epoch, the final test metrics and the wall-clock cost."""

    config: dict[str, Any]
    epochs: list[dict[str, float]] = field(default_factory=list)
    test: dict[str, float] | None = None
    seconds: float = 0.0
    resumed_from_epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_optimizer(params: Iterable[nn.Parameter], cfg: FitConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if not params:
        raise TorchSlimError("The model has no trainable parameters (all have requires_grad=False).")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.peak_lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.peak_lr, weight_decay=cfg.weight_decay)


def _eval_target(module: nn.Module) -> nn.Module:
    return getattr(module, "student", module)


def _is_task(module: nn.Module) -> bool:
    return bool(getattr(module, "torchslim_task", False))


def _loss(module: nn.Module, batch: dict[str, Any], cfg: FitConfig) -> tuple[torch.Tensor, dict, torch.Tensor | None]:
    """(total loss, named parts, logits or None) of one training batch."""
    if _is_task(module):
        out = module(batch)
        return out["loss"], {k: v for k, v in out.items() if k != "loss" and k != "logits"}, out.get("logits")
    logits = module(batch["x"])
    if isinstance(logits, dict):
        return logits["loss"], {}, logits.get("logits")
    loss = nn.functional.cross_entropy(logits, batch["y"], label_smoothing=cfg.label_smoothing)
    return loss, {}, logits


def _check_data(train: Any) -> None:
    try:
        n = len(train)
    except TypeError:
        return
    if n == 0:
        raise TorchSlimError("The training loader yields no batches (dataset smaller than one batch?).")


def fit(
    model: nn.Module,
    data: Any,
    epochs: int,
    *,
    val: Iterable | None = None,
    test: Iterable | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    threads: int | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    on_step_end: Callable[[int, int], None] | None = None,
    **options: Any,
) -> History:
    """Train ``model`` on ``data`` for ``epochs`` epochs and return its :class:`History`.

    Args:
        model: a classifier (logits out) or a task module (see module docstring).
        data: a ``DataBundle`` (its train/val/test loaders are used) or a training loader.
        val: a loader evaluated after each epoch (overrides the bundle's).
        test: a loader evaluated once at the end (overrides the bundle's).
        checkpoint_dir: where to save the training state after every epoch.
        resume: continue from the state in ``checkpoint_dir`` when there is one.
        threads: ``torch.set_num_threads`` for the run (None leaves it).
        on_step_end: called after every optimizer step with (steps done, total steps of the run),
            e.g. to keep pruned weights at zero or to follow a sparsity schedule.
        options: any :class:`FitConfig` field (optimizer, lr, schedule, label_smoothing, seed, ...).

    Raises:
        TorchSlimError: bad options, or resuming a run whose configuration differs.
        NonFiniteLossError: a NaN/Inf loss; the message says whether a training state was kept
            (the last good one, in ``checkpoint_dir``) and where.
        DiskFullError: no space for a checkpoint.
    """
    cfg = FitConfig.build("fit", {"epochs": epochs, **options})
    seed = cfg.seed if cfg.seed is not None else 0
    if threads is not None:
        torch.set_num_threads(threads)
    train = getattr(data, "train", data)
    val = val if val is not None else getattr(data, "val", None)
    test = test if test is not None else getattr(data, "test", None)
    _check_data(train)
    if hasattr(data, "num_classes") and hasattr(data, "example_batch") and not hasattr(model, "prepare"):
        check_bundle_fits(model, data, "fit")  # channels and class count, before an optimizer exists
    device = torch.device(device)
    dist_info = distributed.setup(device)
    torch.manual_seed(seed)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)
    if hasattr(model, "prepare") and not getattr(model, "prepared", True):
        # A task builds its connectors from one probed batch; they must exist before the optimizer.
        model.prepare(as_batch(next(iter(train)), device, memory_format))
    optimizer = make_optimizer(model.parameters(), cfg)
    sampler = getattr(train, "sampler", None)
    # The loader may be shared with later runs: its sampler is given back as it came (see below).
    sampler_state = {k: getattr(sampler, k) for k in ("epoch", "rank", "world_size") if hasattr(sampler, k)}
    if dist_info.enabled and hasattr(sampler, "shard"):
        sampler.shard(dist_info.rank, dist_info.world_size)
    runner = model
    if dist_info.enabled:
        runner = nn.parallel.DistributedDataParallel(model)
        runner.torchslim_task = _is_task(model)  # type: ignore[attr-defined]

    history = History(config=cfg.model_dump(mode="json"))
    start_epoch, kept = 0, None  # kept: the newest training state on disk, for the NaN message
    if resume and checkpoint_dir and (state := find_training_state(checkpoint_dir)):
        info = load_training_state(state, model, optimizer)
        _check_same_config(info["config"], history.config, state)
        history.epochs, start_epoch = info["history"], info["epoch"] + 1
        history.seconds, history.resumed_from_epoch = info.get("seconds", 0.0), info["epoch"]
        kept = state

    steps_per_epoch = len(train)
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = int(cfg.warmup_epochs * steps_per_epoch)
    bar = Progress(enabled=progress and dist_info.is_main, total_epochs=cfg.epochs)
    with bar, _restoring(sampler, sampler_state):
        for epoch in range(start_epoch, cfg.epochs):
            began = time.perf_counter()
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            if hasattr(model, "set_epoch"):
                model.set_epoch(epoch)
            runner.train()
            sums: dict[str, float] = {"loss": 0.0}
            correct = seen = 0
            bar.start_epoch(epoch, steps_per_epoch)
            for step, raw in enumerate(train):
                global_step = epoch * steps_per_epoch + step
                lr = cfg.peak_lr * lr_factor(cfg.schedule, global_step, total_steps, warmup_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                if hasattr(model, "set_progress"):
                    model.set_progress(global_step / total_steps)
                batch = as_batch(raw, device, memory_format)
                loss, parts, logits = _loss(runner, batch, cfg)
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(_non_finite_message(loss.item(), epoch, step, lr, kept,
                                                                 checkpoint_dir))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                if on_step_end:
                    on_step_end(global_step + 1, total_steps)
                sums["loss"] += loss.item()
                for name, value in parts.items():
                    sums[name] = sums.get(name, 0.0) + float(value)
                if logits is not None and "y" in batch:
                    correct += (logits.detach().argmax(1) == batch["y"]).sum().item()
                    seen += batch["y"].numel()
                bar.advance(loss.item())
            distributed.average_buffers(model, dist_info)
            record = {"epoch": epoch + 1, "lr": lr}
            for name, total in sums.items():
                record[f"train_{name}"] = distributed.mean_across(total / steps_per_epoch, dist_info, device)
            if seen:
                record["train_accuracy"] = distributed.mean_across(100.0 * correct / seen, dist_info, device)
            if val is not None:
                metrics = evaluate(_eval_target(model), val, device)
                record.update(val_accuracy=metrics["accuracy"], val_loss=metrics["loss"])
            record["seconds"] = time.perf_counter() - began
            history.seconds += record["seconds"]
            history.epochs.append(record)
            bar.end_epoch(record)
            if checkpoint_dir and dist_info.is_main:
                kept = save_training_state(checkpoint_dir, model, optimizer, {
                    "epoch": epoch, "config": history.config, "history": history.epochs,
                    "seconds": history.seconds})
            if on_epoch_end:
                on_epoch_end(epoch, record)
    if test is not None:
        history.test = evaluate(_eval_target(model), test, device)
        bar.log(f"test accuracy {history.test['accuracy']:.2f}%  ({history.test['n']} samples)")
    if cfg.channels_last:  # a training layout: the model is handed back in the standard one
        model.to(memory_format=torch.contiguous_format)
    return history


@contextmanager
def _restoring(sampler: Any, state: dict[str, Any]):
    """Put ``state`` (epoch, DDP shard) back on ``sampler`` when the block ends, however it ends."""
    try:
        yield
    finally:
        for key, value in state.items():
            setattr(sampler, key, value)


def _non_finite_message(value: float, epoch: int, step: int, lr: float, kept: Path | None,
                        checkpoint_dir: Any) -> str:
    """What happened and, truthfully, whether a training state was kept and where."""
    text = (f"The training loss became {value} at epoch {epoch + 1}, step {step + 1} (lr {lr:.4g}). "
            "Lower the learning rate or check the data. ")
    if kept is None:
        why = "it failed before the first epoch ended" if checkpoint_dir else "no checkpoint directory was given"
        return text + f"No checkpoint was kept ({why}): a new run starts from the beginning."
    return text + (f"The last good training state is kept in {kept}; the same options resume from it, "
                   "changed ones (such as a lower learning rate) need a new checkpoint directory "
                   "(CLI: --force).")


def _check_same_config(saved: dict, current: dict, where: Path) -> None:
    changed = {k: (saved.get(k), v) for k, v in current.items() if saved.get(k) != v
               and not (isinstance(v, float) and isinstance(saved.get(k), float) and math.isclose(v, saved[k]))}
    if changed:
        desc = ", ".join(f"{k}: saved {a!r} vs now {b!r}" for k, (a, b) in changed.items())
        raise TorchSlimError(
            f"Cannot resume from {where}: the run's configuration changed ({desc}). Use the same "
            "options, or a new checkpoint directory to start afresh."
        )
