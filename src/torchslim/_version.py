"""The package version, in a module that imports nothing (``torchslim --version`` reads it)."""

__version__ = "0.1.0"
