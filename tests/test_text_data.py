"""The wordnet-glosses corpus (on WordNet-format files the tests write) and the agreement metrics."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
import torch

from text_helpers import write_wordnet
from torchslim import data
from torchslim.core.errors import CorruptFileError, DataNotFoundError, TorchSlimError
from torchslim.data import wordnet as wn
from torchslim.data.text import LengthGroupedSampler, TokenizedTexts
from torchslim.text import metrics as A

LINE = ('00001740 00 a 01 able 0 005 = 05200169 n 0000 + 05616246 n 0101 | (usually followed by `to\') having '
        'the necessary means or skill to do something; "able to swim"; "she was able to program her computer"  ')


def test_parse_line_gives_the_definition_then_the_examples():
    out = wn.parse_line(LINE, "adj")
    assert [s.kind for s in out] == ["definition", "example", "example"]
    assert out[0].text == "(usually followed by `to') having the necessary means or skill to do something"
    assert [s.text for s in out[1:]] == ["able to swim", "she was able to program her computer"]
    assert {s.sense for s in out} == {"a:00001740"}
    assert wn.parse_line("  12 Princeton University license line", "noun") == []
    with pytest.raises(CorruptFileError, match="8-digit synset offset"):
        wn.parse_line("hello world | x", "noun", "f:3")
    with pytest.raises(CorruptFileError, match=r"f:9: synset 00000001 has no ' \| '"):
        wn.parse_line("00000001 03 n 01 thing 0 000 a gloss without the bar", "noun", "f:9")


def test_read_and_split_by_sense(tmp_path):
    paths = wn.locate(write_wordnet(tmp_path))
    sentences = wn.read_glosses(paths)
    assert len({s.text for s in sentences}) == len(sentences) == 4 * 12 * 3
    assert len(wn.read_glosses(paths, examples=False)) == 4 * 12
    splits = wn.split_by_sense(sentences, 0.2, 0.2, seed=0)
    senses = {name: {s.sense for s in items} for name, items in splits.items()}
    assert not senses["train"] & senses["test"] and not senses["train"] & senses["val"]
    assert not senses["val"] & senses["test"]
    assert sum(len(v) for v in splits.values()) == len(sentences)
    assert len(senses["test"]) == round(48 * 0.2)
    again = wn.split_by_sense(sentences, 0.2, 0.2, seed=0)
    other = wn.split_by_sense(sentences, 0.2, 0.2, seed=1)
    assert again == splits and other["test"] != splits["test"]
    with pytest.raises(TorchSlimError, match="below 1"):
        wn.split_by_sense(sentences, 0.5, 0.5, seed=0)


def test_empty_corpus_file_is_an_error(tmp_path):
    write_wordnet(tmp_path)
    (tmp_path / "data.verb").write_text("  1 only the license header\n")
    with pytest.raises(CorruptFileError, match=r"data.verb holds no WordNet synset \(an empty corpus file\?\)"):
        wn.read_glosses(wn.locate(tmp_path))
    (tmp_path / "data.verb").write_text("")
    with pytest.raises(CorruptFileError, match="empty corpus file"):
        wn.read_glosses(wn.locate(tmp_path))


def test_missing_files_list_every_place_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHSLIM_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(wn, "DEBIAN_DIR", tmp_path / "debian")
    # a location the user gave is the only place looked: named, never replaced by the system copy
    with pytest.raises(DataNotFoundError, match=r"you gave \(root=.*\), .*root, does not exist"):
        wn.locate(tmp_path / "root")
    with pytest.raises(DataNotFoundError, match=r"\$TORCHSLIM_DATA\), .*env/wordnet, does not exist"):
        wn.locate()
    monkeypatch.delenv("TORCHSLIM_DATA")
    with pytest.raises(DataNotFoundError, match=r"not found in: .*debian\. Install Debian's package 'wordnet-base'"):
        wn.locate()
    with pytest.raises(TorchSlimError, match="subset of noun, verb, adj, adv"):
        wn.locate(tmp_path, ("nouns",))


def test_wordnet_glosses_is_a_registered_dataset_held_out_by_sense(tmp_path):
    pytest.importorskip("transformers")
    from text_helpers import write_tiny_bert
    from torchslim.text import load_tokenizer

    tok = load_tokenizer(write_tiny_bert(tmp_path / "bert"), max_length=12)
    bundle = data.load("wordnet-glosses", root=write_wordnet(tmp_path / "wn"), tokenizer=tok, batch_size=8,
                       val_fraction=0.25, test_fraction=0.25, train_size=40, seed=3)
    assert "wordnet-glosses" in data.list() and bundle.num_classes == 0 and bundle.input_shape == (12,)
    train, test = bundle.train.dataset, bundle.test.dataset
    assert len(train) == 40 and not set(train.groups.tolist()) & set(test.groups.tolist())
    batches = list(bundle.train)
    assert len(batches) == len(bundle.train) == 5
    for batch in batches:
        x, mask = batch["x"], batch["attention_mask"]
        assert x.shape[0] == 8 and torch.equal(mask, (x != 0).long()) and mask[:, -1].any()  # trimmed
        assert torch.equal(train.ids[batch["index"], : x.shape[1]], x)
    assert sorted(torch.cat([b["index"] for b in batches]).tolist()) == list(range(40))


def test_length_grouped_batches_are_seeded_and_cover_every_sentence():
    lengths = torch.randint(1, 30, (103,), generator=torch.Generator().manual_seed(0))
    sampler = LengthGroupedSampler(lengths, 10, shuffle=True, drop_last=True, seed=1, group=3)
    first = [b[3] for b in sampler]
    assert len(first) == len(sampler) == 10 and first == [b[3] for b in sampler]
    sampler.set_epoch(1)
    assert [b[3] for b in sampler] != first
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in first])
    assert spread < 15  # grouped: far below the ~27 of random batches
    eval_sampler = LengthGroupedSampler(lengths, 10, shuffle=False, drop_last=False)
    assert sorted(i for b in eval_sampler for i in b[3]) == list(range(103)) and len(eval_sampler) == 11


def test_teacher_cache_replays_text_batches(tmp_path):
    from torchslim.data.text import text_loader
    from torchslim.distill import TeacherCache

    ids = torch.randint(5, 50, (20, 6))
    ids[::3, 4:] = 0
    dataset = TokenizedTexts(ids, [f"s{i}" for i in range(20)], torch.arange(20), pad_token_id=0)
    model = torch.nn.EmbeddingBag(50, 4, mode="mean", padding_idx=0)
    cache = TeacherCache(model, text_loader(dataset, 4, train=True), draws=3)
    assert cache.draws == 1  # no augmentation: one draw serves every epoch
    index = torch.tensor([3, 0, 17])
    with torch.no_grad():
        assert torch.allclose(cache.lookup(5, index), model(ids[index]), atol=1e-6)


# -- agreement ---------------------------------------------------------------------------------------


def _cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _rank(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def test_agreement_metrics_against_brute_force():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(30, 8, generator=g).double()
    s = t + 0.7 * torch.randn(30, 8, generator=g).double()
    S, T = s.numpy(), t.numpy()
    assert A.mean_cosine(s, t) == pytest.approx(np.mean([_cos(a, b) for a, b in zip(S, T, strict=True)]))
    k, shared = 4, []
    for i in range(30):
        def nn(X, i=i):
            return set(sorted((j for j in range(30) if j != i), key=lambda j: -_cos(X[i], X[j]))[:k])
        shared.append(len(nn(S) & nn(T)) / k)
    assert A.knn_overlap(s, t, k=k) == pytest.approx(np.mean(shared))
    pairs = list(combinations(range(30), 2))
    rs, rt = _rank([_cos(S[i], S[j]) for i, j in pairs]), _rank([_cos(T[i], T[j]) for i, j in pairs])
    ms, mt = np.mean(rs), np.mean(rt)
    rho = sum((a - ms) * (b - mt) for a, b in zip(rs, rt, strict=True)) / math.sqrt(
        sum((a - ms) ** 2 for a in rs) * sum((b - mt) ** 2 for b in rt))
    assert A.pairwise_spearman(s, t) == pytest.approx(rho)
    assert 0.3 < rho < 0.99
    same = A.agreement(t, t * 3.0, k=5, spearman_n=10)
    assert same["mean_cosine"] == pytest.approx(1.0) and same["knn_overlap"] == 1.0
    assert same["pairwise_spearman"] == pytest.approx(1.0) and same["spearman_n"] == 10


def test_spearman_ranks_ties_by_their_mean():
    assert A._ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_agreement_rejects_mismatched_inputs():
    with pytest.raises(TorchSlimError, match="same N"):
        A.mean_cosine(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(TorchSlimError, match="equal width"):
        A.mean_cosine(torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(TorchSlimError, match=r"k must be in \[1, 3\]"):
        A.knn_overlap(torch.randn(4, 3), torch.randn(4, 3), k=4)
