"""``TextTokenizer``: texts to padded token ids, truncating over-long texts and saying so once."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch

from torchslim.core.errors import TorchSlimError


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


class TextTokenizer:
    """A Hugging Face tokenizer with a fixed maximum length.

    ``tok(texts)`` returns ``(B, N)`` int64 ids padded with ``pad_token_id`` to the longest text of
    the call (at most ``max_length``). A text longer than ``max_length`` tokens is truncated (its
    end kept as the model's end token); the first time that happens this tokenizer says so through
    ``log``, once, with how many texts of that call were cut.

    Args:
        hf: a Hugging Face tokenizer (its ``__call__`` with ``truncation``/``max_length``).
        max_length: tokens per text, special tokens included.
        source: where the tokenizer came from, for messages.
        log: receives the one truncation message (default: standard error).

    Raises:
        TorchSlimError: no pad token, or ``max_length`` below 2 (no room for one word between the
            start and end tokens).
    """

    def __init__(self, hf: Any, max_length: int, source: str = "", log: Callable[[str], None] = _stderr) -> None:
        if hf.pad_token_id is None:
            raise TorchSlimError(f"The tokenizer from {source or 'the model'} has no pad token; batches "
                                 "of different lengths cannot be padded.")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 3:
            raise TorchSlimError(f"max_length must be an integer >= 3 (start token, a word, end token), "
                                 f"got {max_length!r}.")
        self.hf, self.max_length, self.source, self.log = hf, max_length, source, log
        self.pad_token_id = int(hf.pad_token_id)
        self.truncation_reported = False

    def __len__(self) -> int:
        return len(self.hf)

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, special tokens included, truncated to ``max_length``."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            bad = next(t for t in texts if not isinstance(t, str))
            raise TorchSlimError(f"Texts must be strings, got {type(bad).__name__}: {bad!r}.")
        full = self.hf(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        long = [i for i, ids in enumerate(full) if len(ids) > self.max_length]
        if long:
            longest = max(len(full[i]) for i in long)
            cut = self.hf([texts[i] for i in long], add_special_tokens=True, truncation=True,
                          max_length=self.max_length)["input_ids"]
            for i, ids in zip(long, cut, strict=True):
                full[i] = ids
            if not self.truncation_reported:
                self.truncation_reported = True
                self.log(f"torchslim.text: {len(long):,} of {len(texts):,} texts were longer than "
                         f"{self.max_length} tokens (the longest had {longest}) and were truncated to "
                         f"{self.max_length}. Said once per tokenizer.")
        return full

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        return pad(self.ids(texts), self.pad_token_id)


def pad(ids: Sequence[Sequence[int]], pad_token_id: int, length: int | None = None) -> torch.Tensor:
    """Lists of ids as one ``(B, length or longest)`` int64 tensor padded with ``pad_token_id``."""
    width = length if length is not None else max((len(i) for i in ids), default=0)
    out = torch.full((len(ids), width), pad_token_id, dtype=torch.long)
    for row, seq in enumerate(ids):
        out[row, : len(seq)] = torch.as_tensor(seq[:width], dtype=torch.long)
    return out
