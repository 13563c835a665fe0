"""Deployment of a sentence encoder: ONNX export, dynamic INT8 (per-channel), ONNX Runtime.

The graph takes ``input_ids`` (batch, tokens) int64 and returns ``embedding`` (batch, D): the
attention mask comes from the padding inside the graph, so a deployed encoder needs nothing but the
tokenizer's ids. Export uses ``torch.onnx.export``'s TorchScript path (dynamic batch and length
axes); INT8 is ONNX Runtime's ``quantize_dynamic`` with per-channel int8 weights (activations are
quantized per batch at run time, so no calibration data is needed).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from torchslim.core.errors import TorchSlimError
from torchslim.text._configure import configure
from torchslim.text.config import TextQuantizeConfig
from torchslim.text.encoder import SentenceEncoder

OPSET = 17


def export_onnx(encoder: SentenceEncoder, path: str | Path, example: torch.Tensor | None = None) -> Path:
    """Write ``encoder`` as ONNX to ``path`` and check ONNX Runtime reproduces it.

    Args:
        example: (B, N) token ids to trace with and compare on (default: two short dummy texts).

    Raises:
        TorchSlimError: the ONNX model's embeddings differ from torch's by more than 1e-3.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if example is None:
        example = torch.full((2, 8), encoder.pad_token_id, dtype=torch.long)
        vocab = encoder.bert.embeddings.word_embeddings.num_embeddings
        example[:, :6] = (torch.arange(6) + encoder.pad_token_id + 1) % vocab
        example[1, 4:] = encoder.pad_token_id
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
            torch.onnx.export(encoder, (example,), str(path), input_names=["input_ids"],
                              output_names=["embedding"], opset_version=OPSET, dynamo=False,
                              dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}})
            expected = encoder(example).numpy()
    finally:
        encoder.train(was_training)
    got = OrtEncoder(path)(example)
    error = float(np.abs(got - expected).max())
    if error > 1e-3:
        raise TorchSlimError(f"The ONNX export at {path} differs from the torch model by {error:.2e} (max abs) on "
                             "the example; it is not a faithful copy.")
    return path


def quantize_int8(onnx_path: str | Path, int8_path: str | Path, config: TextQuantizeConfig | None = None,
                  **options: object) -> Path:
    """INT8 of an exported encoder: per-channel int8 weights, activations quantized at run time.

    Args:
        onnx_path: the FP32 ``.onnx`` written by :func:`export_onnx`.
        int8_path: where the INT8 model is written.
        config: a :class:`~torchslim.text.config.TextQuantizeConfig` (``mode``: dynamic, the only
            one); keyword arguments build it.

    Raises:
        OptionsError: a bad option.
        TorchSlimError: no file at ``onnx_path``.
    """
    configure(TextQuantizeConfig, "text.quantize_int8", config, options)  # dynamic is the only mode
    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnx_path, int8_path = Path(onnx_path), Path(int8_path)
    if not onnx_path.is_file():
        raise TorchSlimError(f"No ONNX model at {onnx_path}: export it first (export_onnx).")
    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "consider pre-processing": shape inference is done already
        quantize_dynamic(str(onnx_path), str(int8_path), per_channel=True, weight_type=QuantType.QInt8)
    return int8_path


class OrtEncoder:
    """An exported encoder run by ONNX Runtime: ``enc(ids)`` -> (B, D) numpy float32 embeddings.

    Args:
        path: the ``.onnx`` file. threads: ONNX Runtime's intra-op threads (``set_threads`` changes
            them; torchslim's latency timer calls it).
    """

    runtime = "onnxruntime"

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise TorchSlimError(f"No ONNX model at {self.path}.")
        self.threads = None
        self.set_threads(threads)

    def set_threads(self, threads: int) -> None:
        import onnxruntime as ort

        if threads == self.threads:
            return
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.threads = threads

    def __call__(self, ids: torch.Tensor) -> np.ndarray:
        return self.session.run(None, {"input_ids": np.ascontiguousarray(ids.numpy(), dtype=np.int64)})[0]

    @property
    def bytes(self) -> int:
        return os.path.getsize(self.path)
