"""Export to deployment formats: ``torchslim.export.onnx(model, example_input, path)``."""

from torchslim.export.exporter import ExportError, ExportReport, onnx

__all__ = ["ExportError", "ExportReport", "onnx"]
