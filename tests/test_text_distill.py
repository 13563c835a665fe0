"""Distilling, deploying and the CLI for text, on tiny random BERT models and written WordNet files."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("transformers")

from text_helpers import SENTENCES, write_tiny_bert, write_wordnet  # noqa: E402
from torchslim import data  # noqa: E402
from torchslim.cli import main  # noqa: E402
from torchslim.core.errors import TorchSlimError  # noqa: E402
from torchslim.text import (  # noqa: E402
    OrtEncoder,
    agreement,
    distill_encoder,
    embed,
    export_onnx,
    layer_student,
    load_encoder,
    quantize_int8,
    throughput,
)
from torchslim.text.config import TextDistillConfig  # noqa: E402
from torchslim.text.distill import build_task  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    return {"bert": write_tiny_bert(root / "bert", layers=3, hidden=32, heads=4, seed=1, init_range=0.3),
            "wordnet": write_wordnet(root / "wordnet", synsets_per_part=16)}


@pytest.fixture
def teacher(files):
    return load_encoder(files["bert"], max_length=16)


@pytest.fixture
def bundle(files, teacher):
    return data.load("wordnet-glosses", root=files["wordnet"], tokenizer=teacher.tokenizer, batch_size=16,
                     val_fraction=0.2, test_fraction=0.2, seed=0)


def test_distillation_with_a_cached_teacher_brings_the_student_closer(teacher, bundle):
    student = layer_student(teacher, [0])
    ids = bundle.test.dataset.ids
    target = embed(teacher, ids, 0)
    before = agreement(embed(student, ids, 0), target, k=3)
    calls = []
    hook = teacher.register_forward_hook(lambda *_: calls.append(1))
    try:
        history = distill_encoder(student, teacher, bundle.train, epochs=4, lr=2e-3, progress=False)
    finally:
        hook.remove()
    after = agreement(embed(student, ids, 0), target, k=3)
    assert after["mean_cosine"] > before["mean_cosine"] + 0.01
    assert history.epochs[-1]["train_loss"] < history.epochs[0]["train_loss"]
    # Cached: one teacher pass over the training set (+ the probe), not one per epoch.
    assert len(calls) <= len(bundle.train) + 1 and not student.training


def test_the_default_options_are_valid_ones():
    """The default loss is built unvalidated (showing it loads no registry); it must validate."""
    default = TextDistillConfig(epochs=1)
    again = TextDistillConfig.model_validate({**default.model_dump(), "losses": [{"name": "embed-cos", "weight": 1.0}]})
    assert again.model_dump() == default.model_dump()
    assert (default.optimizer, default.lr, default.schedule, default.warmup_epochs, default.weight_decay,
            default.max_grad_norm) == ("adamw", 2e-4, "cosine", 0.05, 0.01, 1.0)


@pytest.mark.parametrize("losses", [
    [("hidden-mse", {"student_tap": "hidden_states", "teacher_tap": "hidden_states", "layers": "0:0/1:2/-1:-1"}, 1.0)],
    [("attention-kl", {"student_tap": "attentions", "teacher_tap": "attentions", "layers": "-1:-1"}, 1.0)],
    [("relation-kl", {"student_tap": "bert.encoder.layer.1.attention.self.value",
                      "teacher_tap": "bert.encoder.layer.2.attention.self.value", "heads": 4}, 1.0),
     ("embed-cos", {}, 1.0)],
], ids=["hidden-mse", "attention-kl", "relation-kl"])
def test_feature_losses_run_on_live_taps_and_train(teacher, bundle, losses):
    student = layer_student(teacher, [0, 2])
    task = build_task(student, teacher, losses)
    batch = next(iter(bundle.train))
    try:
        task.train()
        first = task(batch)
        name = losses[0][0]
        assert first[name] > 0
        first["loss"].backward()
        grads = [p.grad for p in student.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
    finally:
        task.close()
    assert not student.hidden_states._forward_hooks  # the taps are gone: plain inference skips the stacking
    said = []
    history = distill_encoder(student, teacher, bundle.train, epochs=2, losses=losses, lr=1e-3, progress=False,
                              log=said.append)
    assert any("runs live" in m for m in said) and len(history.epochs) == 2


def test_hidden_mse_connects_a_narrower_encoder(teacher, tmp_path):
    from torchslim.core.taps import Taps
    from torchslim.distill.losses import Outputs, create

    narrow = load_encoder(write_tiny_bert(tmp_path / "narrow", layers=1, hidden=16, heads=2), max_length=16)
    ids = teacher.tokenizer(SENTENCES[:4])
    with Taps(narrow, ["hidden_states"]) as s_taps, Taps(teacher, ["hidden_states"]) as t_taps:
        narrow(ids)
        with torch.no_grad():
            teacher(ids)
    s, t = s_taps.outputs["hidden_states"], t_taps.outputs["hidden_states"]
    assert s.shape[1:3] == (2, ids.shape[1]) and t.shape[1] == 4
    loss = create("hidden-mse", student_tap="hidden_states", teacher_tap="hidden_states")
    loss.build(s.shape, t.shape)
    value = loss(Outputs(None, {"hidden_states": s}), Outputs(None, {"hidden_states": t}),
                 {"attention_mask": (ids != 0).long()})
    value.backward()
    assert loss.connector.weight.shape == (32, 16) and loss.connector.weight.grad is not None
    assert loss.pairs(2, 4) == [(0, 0), (1, 3)] and torch.isfinite(value)


def test_out_of_range_layer_mapping_is_named(teacher):
    student = layer_student(teacher, [0])
    task = build_task(student, teacher, [("hidden-mse", {"student_tap": "hidden_states",
                                                          "teacher_tap": "hidden_states", "layers": "1:7"}, 1.0)])
    try:
        with pytest.raises(TorchSlimError, match=r"teacher hidden state index 7 is out of range: the teacher has 4"):
            task(teacher.tokenizer(SENTENCES[:2]))
    finally:
        task.close()


def test_onnx_int8_export_agrees_and_is_timed(teacher, tmp_path):
    ids = teacher.tokenizer(SENTENCES)
    fp32 = export_onnx(teacher, tmp_path / "t.onnx", ids[:3])
    int8 = quantize_int8(fp32, tmp_path / "t.int8.onnx")
    assert int8.stat().st_size < fp32.stat().st_size
    reference = embed(teacher, ids, 0)
    assert torch.allclose(embed(OrtEncoder(fp32), ids, 0), reference, atol=1e-4)  # any batch and length
    close = agreement(embed(OrtEncoder(int8), ids, 0), reference, k=3)
    assert close["mean_cosine"] > 0.95
    speed = throughput({"torch": teacher, "int8": OrtEncoder(int8)}, ids, 0, batch_sizes=(4, 1), rounds=1,
                       runtimes={"torch": "torch-eager", "int8": "onnxruntime"}, warmup=1, min_seconds=0.0,
                       min_repeats=2)
    assert speed["int8"]["b4"]["runtime"] == "onnxruntime" and speed["torch"]["b1"]["sentences_per_second"] > 0
    assert speed["torch"]["b1"]["tokens"] == int((ids[0] != 0).sum())
    with pytest.raises(TorchSlimError, match="at least 64 sample sentences"):
        throughput({"torch": teacher}, ids, 0, batch_sizes=(64,))


def test_cli_distills_a_text_student(files, tmp_path, capsys):
    out, corpus = tmp_path / "run", write_wordnet(tmp_path / "wordnet", synsets_per_part=100)
    argv = ["distill", "--teachers", str(files["bert"]), "--data", "wordnet-glosses", "--data-root",
            str(corpus), "--keep", "2", "--epochs", "1", "--batch-size", "16", "--max-length",
            "16", "--eval-size", "20", "--sample-size", "16", "--cache", "memory", "--threads", "1", "--quiet",
            "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["agreement"]["n"] == 20 and len(metrics["layer_choice"]["layers"]) == 2
    assert 0 < metrics["agreement"]["mean_cosine"] <= 1
    again = load_encoder(out)
    assert len(again.layers) == 2 and "layer choice" in capsys.readouterr().out
    both = [*argv[:-2], "--layers", "0,1", "--out", str(tmp_path / "bad")]
    assert main(both) == 2 and "give exactly one of" in capsys.readouterr().err
    where = argv.index("--keep")
    out_of_range = [*argv[:where], "--layers", "0,5", *argv[where + 2:-2], "--out", str(tmp_path / "bad")]
    assert main(out_of_range) == 2 and "Student layer index 5 is out of range" in capsys.readouterr().err


def test_cli_lists_the_text_dataset_and_losses(capsys):
    assert main(["datasets"]) == 0 and "wordnet-glosses" in capsys.readouterr().out
    assert main(["losses"]) == 0
    listing = capsys.readouterr().out
    for name in ("embed-cos", "embed-mse", "hidden-mse", "attention-kl", "relation-kl"):
        assert name in listing


def test_cli_text_methods_chain_layers_prune_distill_quantize_export(files, tmp_path, capsys):
    corpus, teacher = write_wordnet(tmp_path / "wordnet", synsets_per_part=40), str(files["bert"])
    data = ["--data-root", str(corpus), "--batch-size", "16", "--eval-size", "20", "--max-length", "16", "--quiet"]
    layers, pruned, distilled = tmp_path / "layers", tmp_path / "pruned", tmp_path / "distilled"
    assert cli_text("layers", teacher, "--keep", "2", "--sample-size", "8", *data, "--out", layers) == 0
    record = json.loads((layers / "text.json").read_text())
    assert record["options"] == {"keep": 2, "layers": None, "sample_size": 8} and len(record["layers"]) == 2
    assert cli_text("prune", teacher, "--heads", "0.5", "--ffn", "0.0", *data, "--out", pruned) == 0
    assert load_encoder(pruned).structure()["heads"] == [2, 2, 2]
    assert cli_text("distill", layers, "--teacher", teacher, "--epochs", "1", "--lr", "1e-3", "--losses",
                    "embed-cos:weight=1.0", *data, "--out", distilled) == 0
    assert 0 < json.loads((distilled / "text.json").read_text())["agreement"]["mean_cosine"] <= 1
    assert cli_text("quantize", distilled, "--out", tmp_path / "int8") == 0
    assert cli_text("export", distilled, "--out", tmp_path / "onnx") == 0
    ids = load_encoder(distilled).tokenizer(SENTENCES[:3])
    close = agreement(embed(OrtEncoder(tmp_path / "int8" / "model.onnx"), ids, 0),
                      embed(OrtEncoder(tmp_path / "onnx" / "model.onnx"), ids, 0), k=1)
    assert close["mean_cosine"] > 0.9
    capsys.readouterr()
    assert cli_text("layers", teacher, "--layers", "0", "--out", layers) == 2  # it holds a result: --force
    assert "--force" in capsys.readouterr().err


def cli_text(method: str, *argv) -> int:
    return main(["text", method, *map(str, argv)])
