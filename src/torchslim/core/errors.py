"""Error types that torchslim raises for bad input.

Every error a user can cause derives from :class:`TorchSlimError`, so the CLI can turn it into a
one-paragraph message and exit code 2 instead of a traceback from deep inside torch.
"""

from __future__ import annotations


class TorchSlimError(ValueError):
    """Bad input or state: the message names the value, where it came from and what is valid."""


class UnknownNameError(TorchSlimError, KeyError):
    """A name that no registry entry has."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataNotFoundError(TorchSlimError, FileNotFoundError):
    """A dataset's files were found in none of the places looked."""


class CorruptFileError(TorchSlimError):
    """A file exists but its content is not what its format promises."""


class CheckpointError(TorchSlimError):
    """A checkpoint is missing, incomplete or does not fit the model it is loaded into."""


class NonFiniteLossError(TorchSlimError, FloatingPointError):
    """Training produced a NaN or Inf loss."""


class DiskFullError(TorchSlimError, OSError):
    """A write failed for lack of space (or quota); its partial file was removed."""
