"""Export to deployment formats: ``torchslim.export.onnx(model, example_input, path)``; for eager
torch deployment, ``fold_batchnorm(model)``."""

from torchslim.export.exporter import ExportError, ExportReport, onnx
from torchslim.export.fold import count_batchnorm, fold_batchnorm

__all__ = ["ExportError", "ExportReport", "count_batchnorm", "fold_batchnorm", "onnx"]
