"""torchslim.text on tiny random BERT models written by the tests (2 layers, hidden 32), and one
slow check of the real all-MiniLM-L6-v2 against sentence-transformers."""

from __future__ import annotations

import copy
import json
import sys

import pytest
import torch

pytest.importorskip("transformers")

from text_helpers import SENTENCES, write_tiny_bert  # noqa: E402
from torchslim.core.errors import CheckpointError, TorchSlimError  # noqa: E402
from torchslim.text import metrics as A  # noqa: E402
from torchslim.text.config import TextLayersConfig, TextPruneConfig  # noqa: E402
from torchslim.text.load import load_encoder, load_tokenizer, save_encoder  # noqa: E402
from torchslim.text.prune import measure_importance, prune_encoder  # noqa: E402
from torchslim.text.students import choose_layers, every_other, layer_student, shrink_layers  # noqa: E402


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert", layers=4)


@pytest.fixture
def tiny(tiny_dir):
    torch.manual_seed(0)
    return load_encoder(tiny_dir, max_length=16)


def ids_of(encoder, texts=SENTENCES):
    return encoder.tokenizer(texts)


# -- loading -----------------------------------------------------------------------------------------


def test_embeddings_are_mean_pooled_hidden_states(tiny):
    ids = ids_of(tiny)
    mask = (ids != 0).long()
    with torch.no_grad():
        hidden = tiny.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        got = tiny(ids)
    for row in range(len(ids)):
        n = int(mask[row].sum())
        expected = hidden[row, :n].mean(dim=0)
        assert torch.allclose(got[row], expected, atol=1e-5)  # a tiny model has no Normalize module
    assert tiny.structure() == {"heads": [4] * 4, "intermediate": [64] * 4}


def test_padding_does_not_change_an_embedding(tiny):
    ids = ids_of(tiny, SENTENCES[:1])
    padded = torch.cat([ids, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    with torch.no_grad():
        assert torch.allclose(tiny(ids), tiny(padded), atol=1e-5)


def test_a_directory_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(TorchSlimError, match=r"not a Hugging Face model directory: it has no config.json.*notes.txt"):
        load_encoder(tmp_path)
    with pytest.raises(TorchSlimError, match=r"neither a model directory nor a known name.*minilm"):
        load_encoder(tmp_path / "missing")


def test_a_model_that_is_not_bert_family(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50).save_pretrained(str(tmp_path))
    with pytest.raises(TorchSlimError, match=r"model_type 'gpt2'.*not a BERT-family encoder.*encoder.layer.0"):
        load_encoder(tmp_path)


def test_tokenizer_and_model_that_do_not_match(tmp_path):
    from text_helpers import SPECIAL, WORDS

    write_tiny_bert(tmp_path, vocab_extra=20, embeddings=30)
    tokens = len(SPECIAL) + len(WORDS) + 20
    with pytest.raises(TorchSlimError, match=rf"tokenizer has {tokens} tokens but the model's word embeddings have 30 rows"):
        load_encoder(tmp_path)


def test_long_text_is_truncated_and_said_once(tiny_dir):
    said = []
    tok = load_tokenizer(tiny_dir, max_length=8, log=said.append)
    long = " ".join(["the dog runs"] * 10)
    ids = tok([long, "a cat"])
    assert ids.shape == (2, 8) and ids[0, 0] == 2 and ids[0, -1] == 3  # [CLS] ... [SEP] kept
    assert (ids[1, 4:] == 0).all()
    tok([long, long])
    assert len(said) == 1 and "1 of 2 texts were longer than 8 tokens (the longest had 32)" in said[0]
    with pytest.raises(TorchSlimError, match=r"max_length must be an integer in \[3, 64\]"):
        load_encoder(tiny_dir, max_length=65)


def test_missing_transformers_names_the_extra(monkeypatch):
    from torchslim.text import _hf

    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(TorchSlimError, match=r'pip install "torchslim\[text\]"'):
        _hf.transformers()


def test_save_and_load_round_trip(tiny, tmp_path):
    ids = ids_of(tiny)
    student = layer_student(tiny, [1, 3])
    save_encoder(student, tmp_path / "s", {"note": "test"})
    again = load_encoder(tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "torchslim.json").read_text())
    assert meta["note"] == "test" and meta["structure"]["heads"] == [4, 4] and again.max_length == 16
    with torch.no_grad():
        assert torch.allclose(student(ids), again(ids), atol=1e-6)
    weights = tmp_path / "s" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_encoder(tmp_path / "s")


# -- students ----------------------------------------------------------------------------------------


def test_layer_student_copies_the_chosen_layers(tiny):
    student = layer_student(tiny, [0, 2])
    assert len(student.layers) == 2 and student.bert.config.num_hidden_layers == 2
    for s_layer, t_index in zip(student.layers, [0, 2], strict=True):
        for (name, p), (_, q) in zip(s_layer.named_parameters(), tiny.layers[t_index].named_parameters(), strict=True):
            assert torch.equal(p, q), name
            assert p.data_ptr() != q.data_ptr()  # a copy, not shared
    assert len(tiny.layers) == 4  # the teacher is untouched
    frozen = copy.deepcopy(tiny).requires_grad_(False)  # as a distillation leaves its teacher
    assert all(p.requires_grad for p in layer_student(frozen, [0, 2]).parameters())
    everything = layer_student(tiny, [0, 1, 2, 3])
    with torch.no_grad():
        assert torch.allclose(everything(ids_of(tiny)), tiny(ids_of(tiny)), atol=1e-6)


@pytest.mark.parametrize(("layers", "message"), [
    ([0, 4], r"Student layer index 4 is out of range: the teacher has 4 layers, numbered 0..3"),
    ([-1], r"Student layer index -1 is out of range"),
    ([2, 1], r"distinct and increasing"),
    ([], r"at least one"),
])
def test_bad_student_layers(tiny, layers, message):
    with pytest.raises(TorchSlimError, match=message):
        layer_student(tiny, layers)


def test_choose_layers_scores_every_subset_and_keeps_the_best(tiny):
    sample = ids_of(tiny)
    choice = choose_layers(tiny, sample, 2)
    assert choice.method.startswith("exhaustive over 6") and len(choice.scores) == 6
    scores = [s for _, s in choice.scores]
    assert scores == sorted(scores, reverse=True) and choice.score == scores[0]
    target = A.embed(tiny, sample, 0)
    again = A.mean_cosine(A.embed(layer_student(tiny, choice.layers), sample, 0), target)
    assert again == pytest.approx(choice.score, abs=1e-6)
    assert choice.every_other == ([1, 3], dict(map(lambda cs: (tuple(cs[0]), cs[1]), choice.scores))[(1, 3)])
    greedy = choose_layers(tiny, sample, 2, max_candidates=3)
    assert greedy.method.startswith("greedy") and len(greedy.layers) == 2
    assert choose_layers(tiny, sample, 4).score == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(TorchSlimError, match=r"keep must be an integer in \[1, 4\]"):
        choose_layers(tiny, sample, 5)


def test_shrink_layers_keeps_the_measured_best_or_the_given_layers(tiny):
    sample = ids_of(tiny)
    student, choice = shrink_layers(tiny, sample, keep=2)
    assert choice.layers == choose_layers(tiny, sample, 2).layers and student.teacher_layers == choice.layers
    given, none = shrink_layers(tiny, sample, TextLayersConfig(layers=[0, 3]))
    assert none is None and given.teacher_layers == [0, 3]
    with pytest.raises(TorchSlimError, match=r"text.shrink_layers: give exactly one of keep .* or layers"):
        shrink_layers(tiny, sample, keep=2, layers=[0, 1])
    with pytest.raises(TorchSlimError, match=r"keep must be an integer in \[1, 4\]"):  # the model's bound
        shrink_layers(tiny, sample, keep=5)


def test_every_other_ends_at_the_last_layer():
    assert every_other(6, 3) == [1, 3, 5] and every_other(6, 2) == [2, 5] and every_other(12, 6) == [1, 3, 5, 7, 9, 11]


# -- head pruning ------------------------------------------------------------------------------------


def test_pruning_shrinks_linear_layers_and_keeps_the_important_heads(tiny):
    sample = ids_of(tiny)
    with torch.no_grad():  # silence head 2 of layer 0: its contribution is zero, so it must go first
        tiny.layers[0].attention.output.dense.weight[:, 16:24] = 0
    scores = measure_importance(tiny, sample)
    assert scores.heads[0][2] == 0 and (scores.heads[0][[0, 1, 3]] > 0).all()
    pruned, report = prune_encoder(tiny, sample, heads=0.25, ffn=0.5)
    assert 2 not in report["layers"][0]["heads_kept"]
    assert pruned.structure() == {"heads": [3] * 4, "intermediate": [32] * 4}
    assert pruned.layers[0].attention.self.query.weight.shape == (24, 32)
    assert pruned.layers[0].output.dense.weight.shape == (32, 32)
    assert report["parameters_after"] < report["parameters_before"]
    assert tiny.structure()["heads"] == [4] * 4  # the original is untouched
    with pytest.raises(TorchSlimError, match=r"text.prune_encoder: heads = 1.0 is invalid: Input should be less than 1"):
        prune_encoder(tiny, sample, heads=1.0)
    again, _ = prune_encoder(tiny, sample, TextPruneConfig(heads=0.25, ffn=0.5))  # the config = its keywords
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), pruned.state_dict().values(), strict=True))


def test_prune_measures_the_first_sample_size_sentences(tiny):
    sample = ids_of(tiny)
    _, report = prune_encoder(tiny, sample, heads=0.5, ffn=0.0, sample_size=3)
    assert report["criterion"] == "contribution norm on 3 sample texts"


def test_cutting_a_silent_head_changes_nothing(tiny):
    """Slicing q/k/v/o is exact: a head whose output projection is zero can go without a trace."""
    import copy

    from torchslim.text.prune import keep_ffn, keep_heads

    sample = ids_of(tiny)
    with torch.no_grad():
        tiny.layers[1].attention.output.dense.weight[:, 8:16] = 0  # head 1 of layer 1 adds nothing
        tiny.layers[2].output.dense.weight[:, 5] = 0  # nor does FFN unit 5 of layer 2
        before = tiny(sample)
    cut = tiny.rewrap(copy.deepcopy(tiny.bert))
    keep_heads(cut.layers[1], [0, 2, 3])
    keep_ffn(cut.layers[2], [i for i in range(64) if i != 5])
    assert cut.structure() == {"heads": [4, 3, 4, 4], "intermediate": [64, 64, 63, 64]}
    with torch.no_grad():
        assert torch.allclose(cut(sample), before, atol=1e-6)
    with pytest.raises(TorchSlimError, match=r"subset of 0..2"):
        keep_heads(cut.layers[1], [3])


def test_pruned_encoder_round_trips(tiny, tmp_path):
    sample = ids_of(tiny)
    pruned, _ = prune_encoder(tiny, sample, heads=0.5, ffn=0.25)
    save_encoder(pruned, tmp_path / "p")
    again = load_encoder(tmp_path / "p")
    assert again.structure() == pruned.structure() == {"heads": [2] * 4, "intermediate": [48] * 4}
    with torch.no_grad():
        assert torch.allclose(again(sample), pruned(sample), atol=1e-6)


@pytest.mark.slow
def test_real_minilm_matches_sentence_transformers():
    """The shipped all-MiniLM-L6-v2, loaded offline, gives sentence-transformers' own embeddings."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from torchslim.text._hf import default_model_dir

    encoder = load_encoder("minilm")
    assert encoder.normalize and encoder.max_length == 256 and len(encoder.layers) == 6
    with torch.no_grad():
        ours = A.embed(encoder, encoder.tokenizer(SENTENCES), encoder.pad_token_id)
    reference = sentence_transformers.SentenceTransformer(default_model_dir(), device="cpu")
    theirs = torch.as_tensor(reference.encode(SENTENCES))
    assert torch.allclose(ours, theirs, atol=1e-5)
