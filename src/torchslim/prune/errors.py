"""Errors of pruning: each names the bad value, where it came from and what would be valid."""

from __future__ import annotations

from torchslim.core.errors import CheckpointError, TorchSlimError


class PruneError(TorchSlimError):
    """A pruning request that cannot be carried out (bad ratio, unknown layer, untraceable model,
    a layer that would lose every channel)."""


class ReplayError(PruneError, CheckpointError):
    """Recorded pruning steps that do not fit the model they are replayed on."""
