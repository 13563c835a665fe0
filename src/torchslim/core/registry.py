"""Named registries: one per kind of thing (datasets, models, losses, ...).

A new entry is one decorator; an unknown name fails with every valid name and the closest match,
and registering a name twice is an error rather than a silent override.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from torchslim.core.errors import TorchSlimError, UnknownNameError

T = TypeVar("T")


def closest(name: str, candidates: list[str] | tuple[str, ...]) -> str | None:
    """The candidate most similar to ``name`` (case-insensitive), or None when nothing is close."""
    lowered = {c.lower(): c for c in candidates}
    key = name.lower()
    scored = []
    for low, original in lowered.items():
        ratio = difflib.SequenceMatcher(None, key, low).ratio()
        if ratio >= 0.5:
            # Ties go to the longer shared prefix: "resnet2O" means resnet20, not resnet32.
            scored.append((ratio, len(os.path.commonprefix([key, low])), original))
    return max(scored)[2] if scored else None


def did_you_mean(name: str, candidates: list[str] | tuple[str, ...]) -> str:
    """A short ``" Did you mean 'x'?"`` suffix, empty when no candidate is close."""
    best = closest(name, candidates)
    return f" Did you mean {best!r}?" if best else ""


class Registry(Generic[T]):
    """A mapping from names to objects of one kind.

    Args:
        kind: what the entries are, used in messages ("dataset", "model", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator that does.

        Raises:
            TorchSlimError: the name is empty or already registered.
        """
        if not isinstance(name, str) or not name:
            raise TorchSlimError(f"A {self.kind} name must be a non-empty string, got {name!r}.")

        def add(entry: T) -> T:
            if name in self._entries:
                raise TorchSlimError(
                    f"The {self.kind} name {name!r} is already registered "
                    f"(to {self._entries[name]!r}); choose another name."
                )
            self._entries[name] = entry
            return entry

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        """The entry registered as ``name``.

        Raises:
            UnknownNameError: no such name; the message lists the valid names and the closest one.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            valid = ", ".join(self.list()) or "(none registered)"
            hint = did_you_mean(str(name), self.list())
            raise UnknownNameError(
                f"Unknown {self.kind} {name!r}.{hint} Valid {self.kind} names: {valid}."
            ) from None

    def list(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"
