"""Small models and ONNX artifacts shared by the export, runtime, quantization and CLI tests.

Exporting costs seconds even for a tiny model (the exporter builds its op registry each time), so
each case is built once per test process and reused; tests must not modify what they get.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import torch

from torchslim import data, models
from torchslim.export import onnx as export_onnx
from torchslim.train import fit

SHAPE, CLASSES = (1, 12, 12), 4


@functools.cache
def workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="torchslim-tests-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.cache
def bundle():
    """Synthetic 12x12 images of 4 classes (learnable), batches of 32, no augmentation."""
    return data.load("synthetic", batch_size=32, num_classes=CLASSES, shape=SHAPE, train_size=256, val_size=0,
                     test_size=128, eval_batch_size=64, seed=0)


def _trained(name: str, **kwargs) -> torch.nn.Module:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = models.create(name, num_classes=CLASSES, in_channels=1, **kwargs)
        fit(model, bundle().train, 2, lr=0.05, progress=False)
    finally:
        torch.set_num_threads(previous)
    return model.eval()


@functools.cache
def cnn() -> torch.nn.Module:
    """cnn-tiny trained 2 epochs on :func:`bundle` (conv-BN-ReLU x 4, pool, linear)."""
    return _trained("cnn-tiny")


@functools.cache
def cnn_onnx() -> Path:
    """:func:`cnn` exported to FP32 ONNX."""
    path = workdir() / "cnn" / "fp32.onnx"
    export_onnx(cnn(), torch.randn(2, *SHAPE), path, check_data=bundle().test)
    return path


@functools.cache
def mlp() -> torch.nn.Module:
    """A two-hidden-layer MLP trained 2 epochs on :func:`bundle` (its Linears export as Gemm)."""
    return _trained("mlp", image_size=SHAPE[-1], hidden=(64, 32))


@functools.cache
def static_artifact() -> Path:
    """Static INT8 (minmax, 2 batches) of :func:`cnn_onnx`, with accuracy recorded: a directory."""
    from torchslim.quantize import static_int8

    out = workdir() / "static"
    static_int8(cnn_onnx(), bundle().train, out=out, calibration_batches=2, test_data=bundle().test)
    return out
