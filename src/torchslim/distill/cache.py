"""Cached teacher outputs: run the teacher once, reuse its logits every epoch.

Distillation then costs about what training the student alone costs. Outputs are keyed by
``(draw, dataset index)``. With random augmentation the teacher must see the very image the student
sees, so the cache records ``draws`` augmented epochs and the loader replays them exactly
(torchslim's augmentation is a pure function of (seed, epoch, batch): epoch ``e`` replays draw
``e % draws``). ``draws=0`` means no cache: the teacher runs live. The cache is built on its own
copy of the loader's sampler, and the replay is switched on the shared loader only between
:meth:`TeacherCache.attach` and :meth:`TeacherCache.detach` (``DistillTask.close``), so a later step
that shares the loader sees exactly the data it would see alone.

The cache key hashes the teacher's weights, a fingerprint of the dataset (size, labels, a sample of
the images) and the input transform (normalisation, augmentation, seed, draws); a cache on disk
with another key is rebuilt, with a message, never reused; so is a damaged one. On disk the cache is
written into a staging folder renamed into place: a kill or a full disk leaves no partial cache.

Building costs one inference pass per draw: the loader's own batches (each augmented by its own
``(seed, epoch, batch)`` draw, so the images are exactly those training replays) are joined into
chunks of about :data:`CHUNK` images, and the teacher runs once per chunk in eval mode, under
``torch.inference_mode``, channels-last for images. ``TeacherCache.seconds`` is what it cost.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from torchslim.core.errors import TorchSlimError
from torchslim.core.io import atomic_write_json, disk_full_guard, remove_stale
from torchslim.train.batch import as_batch

# Images per teacher forward while building. Measured with the shipped ResNet-20 teacher on 1 and 2
# threads (benchmarks/teacher_cache_cost.py): 128 to 256 images per call are the fastest, 512 to 1024
# are 1.5x to 1.6x slower (the activations no longer fit the caches), 64 about 1.1x.
CHUNK = 256
# In-memory caches kept for reuse within the process, by key (least recently used dropped first): the
# trials of a search, or the strategies of a comparison, that distil from the same teacher on the same
# data and draws build its logits once. The values are only read once built.
SHARED_CACHES = 4
_SHARED: OrderedDict[str, tuple[torch.Tensor, torch.Tensor | None, int]] = OrderedDict()


def forget_shared() -> None:
    """Drop the in-memory caches kept for reuse in this process: the next cache is built by running
    the teacher (what timing a build, or a test that counts teacher calls, needs)."""
    _SHARED.clear()


def weights_hash(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def dataset_fingerprint(loader) -> dict:
    """What identifies the data and its transform; raises when the loader cannot give indices."""
    dataset = getattr(loader, "dataset", None)
    if dataset is None or not hasattr(dataset, "images"):
        raise TorchSlimError("A teacher cache needs a torchslim image loader (it yields dataset indices "
                             "and a replayable augmentation); this loader does not.")
    n = len(dataset)
    sample = dataset.images[torch.linspace(0, n - 1, min(n, 64)).long()]
    sampler = loader.sampler
    return {
        "n": n, "labels": hashlib.sha256(dataset.labels.numpy().tobytes()).hexdigest(),
        "images": hashlib.sha256(sample.contiguous().numpy().tobytes()).hexdigest(),
        "mean": dataset.mean.flatten().tolist(), "std": dataset.std.flatten().tolist(),
        "augment": dataset.augment.__dict__, "seed": getattr(sampler, "seed", None),
        "batch_size": getattr(sampler, "batch_size", None),
    }


class TeacherCache:
    """Logits of one teacher for ``draws`` replayed epochs of ``loader``, in memory or memory-mapped.

    Args:
        teacher: the (frozen) teacher; ``adaptor`` maps its output to logits.
        loader: the training loader (a torchslim loader).
        draws: augmented epochs recorded (1 when the loader does not augment).
        directory: where to keep a memory-mapped cache on disk (None: memory only).
        topk: keep only the k largest logits per sample (the rest are filled with the smallest
            kept value minus 20 on lookup, i.e. ~zero probability): for many-class problems.
    """

    def __init__(self, teacher: nn.Module, loader, *, draws: int = 1, directory: str | Path | None = None,
                 topk: int | None = None, adaptor=None, log=print) -> None:
        began = time.perf_counter()
        if draws < 1:
            raise TorchSlimError(f"draws must be at least 1 for a cache (0 means no cache), got {draws}.")
        fingerprint = dataset_fingerprint(loader)
        if not any(fingerprint["augment"].values()):
            draws = 1
        self.draws, self.topk, self.loader, self.log = draws, topk, loader, log
        self.key = hashlib.sha256(json.dumps(
            {"teacher": weights_hash(teacher), "data": fingerprint, "draws": draws, "topk": topk},
            sort_keys=True).encode()).hexdigest()[:24]
        self.values: torch.Tensor | None = None
        self.indices: torch.Tensor | None = None
        self.directory = Path(directory) if directory else None
        self._attached, self._previous_cycle = False, None  # what attach() replaced on the sampler
        shared = _SHARED.get(self.key) if self.directory is None else None
        if shared is not None:  # the same teacher, data and draws earlier in this process
            self.values, self.indices, self.num_classes = shared
            _SHARED.move_to_end(self.key)
        elif self.directory is None or not self._load():
            self._build(teacher, adaptor or (lambda out: out))
            if self.directory is None:
                _SHARED[self.key] = (self.values, self.indices, self.num_classes)
                while len(_SHARED) > SHARED_CACHES:
                    _SHARED.popitem(last=False)
        self.seconds = time.perf_counter() - began  # wall time to build (or load) the cache

    # -- building ----------------------------------------------------------------------------------

    def _private_loader(self):
        """A loader over the same data with its own copy of the sampler.

        Building the cache sets the sampler's epoch to each recorded draw; doing that on a copy
        leaves the caller's loader exactly as it was (a later step sharing it sees no trace).
        """
        sampler = copy.copy(self.loader.sampler)
        sampler.cycle = None
        loader = DataLoader(self.loader.dataset, batch_size=None, sampler=sampler, num_workers=0,
                            collate_fn=self.loader.collate_fn)
        return loader, sampler

    def _chunks(self, loader: DataLoader, device: torch.device, join: bool) -> Iterator[tuple[Any, torch.Tensor]]:
        """``(x, index)`` of about :data:`CHUNK` images at a time (``join``: whole batches of
        ``loader`` concatenated, each augmented by the dataset exactly as training will see it), or
        one batch at a time (token batches are padded each to its own width, so they stay apart)."""
        xs: list[torch.Tensor] = []
        indices: list[torch.Tensor] = []
        size = 0
        for raw in loader:
            batch = as_batch(raw, device)
            xs.append(batch["x"])
            indices.append(batch["index"].cpu())
            size += len(indices[-1])
            if size >= CHUNK or not join:
                yield torch.cat(xs) if len(xs) > 1 else xs[0], torch.cat(indices)
                xs, indices, size = [], [], 0
        if xs:
            yield torch.cat(xs) if len(xs) > 1 else xs[0], torch.cat(indices)

    def _build(self, teacher: nn.Module, adaptor: Callable[[Any], torch.Tensor]) -> None:
        was_training = teacher.training
        teacher.eval()
        device = next(teacher.parameters()).device
        images = getattr(self.loader.dataset, "images", None)
        layout = torch.channels_last if isinstance(images, torch.Tensor) and images.ndim == 4 else None
        loader, sampler = self._private_loader()
        try:
            if layout is not None:
                teacher.to(memory_format=layout)
            for draw in range(self.draws):
                sampler.set_epoch(draw)
                for x, idx in self._chunks(loader, device, join=layout is not None):
                    if layout is not None:
                        x = x.contiguous(memory_format=layout)
                    with torch.inference_mode():
                        logits = adaptor(teacher(x)).float().cpu()
                    self._store(draw, idx, logits)
        finally:
            if layout is not None:  # a working layout: the teacher is handed back in the standard one
                teacher.to(memory_format=torch.contiguous_format)
            teacher.train(was_training)
        if self.directory is not None:
            self._save()

    def _store(self, draw: int, idx: torch.Tensor, logits: torch.Tensor) -> None:
        """Keep ``logits`` (B, C) of dataset indices ``idx`` (B,) for ``draw``."""
        if self.values is None:
            n = len(self.loader.dataset)
            self.num_classes = logits.shape[1]
            width = self.topk or logits.shape[1]
            self.values = torch.empty(self.draws, n, width)
            self.indices = torch.empty(self.draws, n, width, dtype=torch.int32) if self.topk else None
        if self.topk:
            top = logits.topk(self.topk, dim=1)
            self.values[draw, idx], self.indices[draw, idx] = top.values, top.indices.int()
        else:
            self.values[draw, idx] = logits

    def _save(self) -> None:
        """Write the cache into ``directory/<key>`` through a staging folder renamed into place.

        Raises:
            DiskFullError: no space for it (the staging folder is removed; nothing is half written).
        """
        target = self.directory / self.key
        stage = self.directory / f".{self.key}.{os.getpid()}.tmp"
        need = self.values.numel() * 4 + (self.indices.numel() * 4 if self.indices is not None else 0)
        remove_stale(self.directory)
        shutil.rmtree(stage, ignore_errors=True)
        try:
            with disk_full_guard(target, need):
                stage.mkdir(parents=True)
                np.save(stage / "values.npy", self.values.numpy())
                if self.indices is not None:
                    np.save(stage / "indices.npy", self.indices.numpy())
                atomic_write_json(stage / "meta.json", {"key": self.key, "draws": self.draws, "topk": self.topk,
                                                         "num_classes": self.num_classes})
                shutil.rmtree(target, ignore_errors=True)
                os.replace(stage, target)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise

    def _load(self) -> bool:
        """Reuse ``directory/<key>`` when it is there and whole; a damaged one is rebuilt."""
        target = self.directory / self.key
        if not self.directory.is_dir():
            return False
        remove_stale(self.directory)
        stale = [p.name for p in self.directory.glob("*") if p.is_dir() and p.name != self.key
                 and (p / "meta.json").exists()]
        if stale:
            self.log(f"teacher cache: {', '.join(stale)} in {self.directory} belong to another teacher, "
                     f"dataset or transform; building a fresh cache {self.key}.")
        if not target.exists():
            return False
        problem = self._read(target)
        if problem:
            self.log(f"teacher cache: {target} is damaged ({problem}); rebuilding it.")
            self.values = self.indices = None
            return False
        self.log(f"teacher cache: reusing {target}")
        return True

    def _read(self, target: Path) -> str | None:
        """Memory-map the cache in ``target``; what is wrong with it, or None when it is whole."""
        try:
            meta = json.loads((target / "meta.json").read_text(encoding="utf-8"))
            self.num_classes = int(meta["num_classes"])
            self.values = torch.from_numpy(np.load(target / "values.npy", mmap_mode="r"))
            if self.topk:
                self.indices = torch.from_numpy(np.load(target / "indices.npy", mmap_mode="r"))
        except (OSError, ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
            return f"{type(exc).__name__}: {exc}"
        want = (self.draws, len(self.loader.dataset), self.topk or self.num_classes)
        for name, array in (("values", self.values), ("indices", self.indices)):
            if array is not None and tuple(array.shape) != want:
                return f"{name}.npy has shape {tuple(array.shape)}, expected {want}"
        return None

    # -- lookup ------------------------------------------------------------------------------------

    def lookup(self, epoch: int, index: torch.Tensor) -> torch.Tensor:
        """Teacher logits for dataset ``index`` (B,) as seen in ``epoch``; (B, C) float32."""
        draw = epoch % self.draws
        idx = index.cpu().long()
        values = self.values[draw][idx]
        if not self.topk:
            return values.clone()
        full = (values.min(dim=1, keepdim=True).values - 20.0).expand(len(idx), self.num_classes).clone()
        return full.scatter_(1, self.indices[draw][idx].long(), values)

    def attach(self) -> None:
        """Make the training loader replay the recorded draws: epoch e serves draw e % draws.

        This changes the loader's sampler; :meth:`detach` puts back what it was (``DistillTask``
        does when it closes), so nothing outlives the cache's use.
        """
        sampler = self.loader.sampler
        if not self._attached:
            self._attached, self._previous_cycle = True, getattr(sampler, "cycle", None)
        sampler.cycle = self.draws

    def detach(self) -> None:
        """Undo :meth:`attach`: the loader serves fresh augmentation every epoch again."""
        if self._attached:
            self.loader.sampler.cycle = self._previous_cycle
            self._attached, self._previous_cycle = False, None
