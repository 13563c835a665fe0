"""Tokenized sentences served a whole batch at a time, each batch padded only to its own longest.

A batch is the dict ``{"x": (B, n) int64 token ids, "attention_mask": (B, n) int64, "index": (B,)}``
(``n`` = the longest text of the batch). Training batches come from :class:`LengthGroupedSampler`:
shuffled, then grouped by length inside windows of ``group`` batches, so little compute is spent on
padding while the order still changes every epoch (a pure function of seed and epoch, so a resumed
run or a teacher cache replays it exactly).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from torchslim.core.errors import TorchSlimError
from torchslim.data.base import Augment, EpochBatchSampler, _mix


class TokenizedTexts(Dataset):
    """Sentences as padded token ids ``ids`` (N, L), with their texts and a group id per sentence.

    Args:
        ids: (N, L) int64, each row padded with ``pad_token_id``.
        texts: the N sentences.
        groups: (N,) int64, e.g. the word sense each sentence belongs to.
        pad_token_id: the padding id.
    """

    def __init__(self, ids: torch.Tensor, texts: Sequence[str], groups: torch.Tensor, pad_token_id: int) -> None:
        if ids.ndim != 2 or len(ids) != len(texts) or groups.shape != (len(ids),):
            raise TorchSlimError(f"Expected ids (N, L), N texts and groups (N,); got {tuple(ids.shape)}, "
                                 f"{len(texts)} texts and {tuple(groups.shape)}.")
        self.ids, self.texts, self.groups = ids.long(), list(texts), groups.long()
        self.pad_token_id = int(pad_token_id)
        self.lengths = (self.ids != self.pad_token_id).sum(dim=1)

    # TeacherCache fingerprints a dataset by the attribute names of torchslim's image datasets: here
    # the token ids are the "images", the groups the "labels", and there is no normalisation or
    # augmentation (one recorded draw serves every epoch).
    @property
    def images(self) -> torch.Tensor:
        return self.ids

    @property
    def labels(self) -> torch.Tensor:
        return self.groups

    mean = torch.zeros(1)
    std = torch.ones(1)
    augment = Augment()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        indices = key[3] if isinstance(key, tuple) and len(key) == 4 else key
        index = torch.as_tensor(indices, dtype=torch.long)
        width = max(int(self.lengths[index].max()), 1) if len(index) else 1
        x = self.ids[index, :width]
        return {"x": x, "attention_mask": (x != self.pad_token_id).long(), "index": index}


class LengthGroupedSampler(EpochBatchSampler):
    """:class:`EpochBatchSampler` whose batches hold sentences of similar length.

    Each epoch: a seeded permutation, cut into windows of ``group`` batches; each window is sorted
    by length and cut into batches; then the batches are shuffled.
    """

    def __init__(self, lengths: torch.Tensor, batch_size: int, *, shuffle: bool, drop_last: bool,
                 seed: int = 0, group: int = 50) -> None:
        super().__init__(len(lengths), batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed)
        self.lengths, self.group = lengths, group

    def __iter__(self) -> Iterator[tuple[int, int, int, list[int]]]:
        g = torch.Generator().manual_seed(_mix(self.seed, self.epoch, 0))
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        window = self.batch_size * self.group
        batches = []
        for start in range(0, self.n, window):
            chunk = order[start:start + window]
            chunk = chunk[torch.argsort(self.lengths[chunk], descending=True, stable=True)]
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        batches = batches[: self._num_global_batches()]
        for b in range(self.rank, len(batches), self.world_size):
            yield self.seed, self.epoch, b, batches[b].tolist()


def text_loader(dataset: TokenizedTexts, batch_size: int, *, train: bool, seed: int = 0) -> DataLoader:
    """A DataLoader of whole length-grouped batches (``batch_size=None`` on purpose)."""
    sampler = LengthGroupedSampler(dataset.lengths, batch_size, shuffle=train, drop_last=train, seed=seed)
    return DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=0)
