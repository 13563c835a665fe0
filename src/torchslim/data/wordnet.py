"""WordNet glosses (Princeton WordNet 3.0, Miller 1995): definitions and example sentences.

Read from the ``data.noun``, ``data.verb``, ``data.adj`` and ``data.adv`` files (Debian's
``wordnet-base`` installs them in ``/usr/share/wordnet``): about 117k definitions and 48k example
sentences. Each data line is one word sense (synset)::

    00001740 00 a 01 able 0 005 = 05200169 n 0000 ... | (usually followed by `to') having the
    necessary means or skill ...; "able to swim"; "she was able to program her computer"

The gloss follows ``" | "``: the definition, then the examples in double quotes. The held-out split
is **by word sense**: every sentence of a synset lands in the same split, so no test sentence
shares its sense with a training one. A sentence that occurs in several synsets is kept once, with
the first.

Files are read from an explicit ``root``, else from ``$TORCHSLIM_DATA/wordnet`` (a location the user
gave is the only place looked), else from ``/usr/share/wordnet``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from torchslim.core.errors import CorruptFileError, DataNotFoundError, TorchSlimError
from torchslim.data.base import DataBundle
from torchslim.data.registry import dataset, given_location, refuse_incomplete
from torchslim.data.text import TokenizedTexts, text_loader

PARTS = ("noun", "verb", "adj", "adv")
DEBIAN_DIR = Path("/usr/share/wordnet")
_OFFSET = re.compile(r"\d{8}")
_QUOTED = re.compile(r'"([^"]*)"')
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sentence:
    """One sentence of the corpus: its text, its word sense (``"n:00001740"``) and its kind."""

    text: str
    sense: str
    kind: str  # "definition" or "example"


def search_paths(root: str | Path | None = None) -> list[Path]:
    """Every directory looked in, in order."""
    paths = [Path(root)] if root else []
    if os.environ.get("TORCHSLIM_DATA"):
        paths.append(Path(os.environ["TORCHSLIM_DATA"]) / "wordnet")
    paths.append(DEBIAN_DIR)
    return paths


def locate(root: str | Path | None = None, parts: tuple[str, ...] = PARTS) -> dict[str, Path]:
    """``{part: data file}`` from the first directory that has every requested part.

    Raises:
        TorchSlimError: an unknown part name.
        DataNotFoundError: no directory has them; the message lists the places and the package.
    """
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise TorchSlimError(f"WordNet parts must be a non-empty subset of {', '.join(PARTS)}; got {list(parts)}.")
    given = given_location(root, "wordnet")
    if given is not None:
        missing = [f"data.{part}" for part in parts if not (given[0] / f"data.{part}").is_file()]
        if missing:
            refuse_incomplete("WordNet", given[0], given[1], missing,
                              "put the data files there (Debian's 'wordnet-base' installs them in /usr/share/wordnet), "
                              "or drop the location.")
        return {part: given[0] / f"data.{part}" for part in parts}
    looked = search_paths()
    for directory in looked:
        found = {part: directory / f"data.{part}" for part in parts}
        if all(path.is_file() for path in found.values()):
            return found
    raise DataNotFoundError(
        "WordNet data files (" + ", ".join(f"data.{p}" for p in parts) + ") were not found in: "
        + "; ".join(str(p) for p in looked) + ". Install Debian's package 'wordnet-base' (`make data` does), "
        "or put the files in one of those directories (pass root= / set TORCHSLIM_DATA).")


def parse_line(line: str, part: str, source: str = "<line>") -> list[Sentence]:
    """The sentences of one data line: its definition, then its examples (empty: a license line).

    Raises:
        CorruptFileError: a synset line without the ``" | "`` gloss separator.
    """
    if line.startswith("  ") or not line.strip():
        return []  # the license header: every such line starts with two spaces
    offset = line[:8]
    if not _OFFSET.fullmatch(offset):
        raise CorruptFileError(f"{source}: {line[:60]!r} does not start with an 8-digit synset offset; "
                               "not a WordNet data file.")
    head, bar, gloss = line.partition(" | ")
    if not bar:
        raise CorruptFileError(f"{source}: synset {offset} has no ' | ' before its gloss; not a WordNet data line.")
    sense = f"{part[0]}:{offset}"
    gloss = gloss.strip()
    quote = gloss.find('"')
    definition = (gloss if quote < 0 else gloss[:quote]).strip().rstrip(";").strip()
    out = [Sentence(definition, sense, "definition")] if definition else []
    out += [Sentence(e.strip(), sense, "example") for e in _QUOTED.findall(gloss) if e.strip()]
    return out


def read_glosses(paths: dict[str, Path], examples: bool = True) -> list[Sentence]:
    """Every sentence of the data files, in file order, each text once (the first sense keeps it).

    Raises:
        CorruptFileError: a file with no synset line (an empty corpus file) or a malformed line.
    """
    seen: set[str] = set()
    sentences = []
    for part, path in paths.items():
        count = 0
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                found = parse_line(line, part, f"{path}:{number}")
                count += bool(line.strip()) and not line.startswith("  ")
                for sentence in found:
                    if (examples or sentence.kind == "definition") and sentence.text not in seen:
                        seen.add(sentence.text)
                        sentences.append(sentence)
        if count == 0:
            raise CorruptFileError(f"{path} holds no WordNet synset (an empty corpus file?): expected lines "
                                   "like '00001740 00 a 01 able 0 ... | definition; \"example\"'.")
    return sentences


def split_by_sense(sentences: list[Sentence], val_fraction: float, test_fraction: float,
                   seed: int) -> dict[str, list[Sentence]]:
    """Train/val/test lists, every sense's sentences together; a seeded shuffle of the senses.

    Raises:
        TorchSlimError: fractions outside [0, 1) or summing to 1 or more, or a split left empty.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise TorchSlimError(f"{name} must be in [0, 1), got {value!r}.")
    if val_fraction + test_fraction >= 1.0:
        raise TorchSlimError(f"val_fraction + test_fraction must be below 1, got {val_fraction + test_fraction}.")
    senses = sorted({s.sense for s in sentences})
    order = torch.randperm(len(senses), generator=torch.Generator().manual_seed(seed)).tolist()
    n_test, n_val = round(len(senses) * test_fraction), round(len(senses) * val_fraction)
    assign = {}
    for rank, i in enumerate(order):
        assign[senses[i]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    splits: dict[str, list[Sentence]] = {name: [] for name in SPLITS}
    for sentence in sentences:
        splits[assign[sentence.sense]].append(sentence)
    for name, fraction in (("train", 1.0), ("val", val_fraction), ("test", test_fraction)):
        if fraction > 0 and not splits[name]:
            raise TorchSlimError(f"The {name} split is empty: {len(senses)} word senses are too few for "
                                 f"val_fraction={val_fraction} and test_fraction={test_fraction}.")
    return splits


def _subset(sentences: list[Sentence], size: int | None, seed: int, name: str) -> list[Sentence]:
    if size is None or size >= len(sentences):
        return sentences
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise TorchSlimError(f"{name} must be a positive integer or None, got {size!r}.")
    pick = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(seed + 1))[:size]
    return [sentences[i] for i in sorted(pick.tolist())]


def _tokenized(sentences: list[Sentence], tokenizer, sense_ids: dict[str, int]) -> TokenizedTexts:
    from torchslim.text.tokenize import pad

    texts = [s.text for s in sentences]
    ids = pad(tokenizer.ids(texts), tokenizer.pad_token_id) if texts else torch.zeros(0, 1, dtype=torch.long)
    groups = torch.tensor([sense_ids[s.sense] for s in sentences], dtype=torch.long)
    return TokenizedTexts(ids, texts, groups, tokenizer.pad_token_id)


@dataset("wordnet-glosses", task="text")
def wordnet_glosses(
    batch_size: int = 64,
    *,
    root: str | Path | None = None,
    tokenizer="minilm",
    max_length: int = 64,
    val_fraction: float = 0.02,
    test_fraction: float = 0.02,
    train_size: int | None = None,
    test_size: int | None = None,
    examples: bool = True,
    parts: tuple[str, ...] = PARTS,
    seed: int = 0,
    eval_batch_size: int = 256,
) -> DataBundle:
    """WordNet definitions and example sentences as token ids, held out by word sense (text).

    Args:
        batch_size: training batch size (batches are grouped by length).
        root: a directory holding ``data.noun`` etc., looked in first.
        tokenizer: a :class:`~torchslim.text.TextTokenizer`, or the text teacher whose tokenizer to
            use (``"minilm"`` or a model directory); needs ``torchslim[text]``.
        max_length: tokens per sentence; longer ones are truncated (said once).
        val_fraction, test_fraction: fractions of word senses held out.
        train_size, test_size: seeded random subsets of those splits' sentences (None: all).
        examples: include the example sentences (else definitions only).
        parts: which data files (noun, verb, adj, adv).
        seed: seeds the split, the subsets and the batch order.

    Batches are dicts ``{"x", "attention_mask", "index"}``; the bundle has ``num_classes=0`` (no
    labels: the targets come from the teacher).
    """
    from torchslim.text.load import load_tokenizer

    paths = locate(root, tuple(parts))
    sentences = read_glosses(paths, examples=examples)
    splits = split_by_sense(sentences, val_fraction, test_fraction, seed)
    splits["train"] = _subset(splits["train"], train_size, seed, "train_size")
    splits["test"] = _subset(splits["test"], test_size, seed, "test_size")
    tok = load_tokenizer(tokenizer, max_length) if not hasattr(tokenizer, "ids") else tokenizer
    sense_ids = {sense: i for i, sense in enumerate(sorted({s.sense for s in sentences}))}
    data = {name: _tokenized(items, tok, sense_ids) for name, items in splits.items() if items}
    return DataBundle(
        name="wordnet-glosses",
        train=text_loader(data["train"], batch_size, train=True, seed=seed),
        val=text_loader(data["val"], eval_batch_size, train=False) if "val" in data else None,
        test=text_loader(data["test"], eval_batch_size, train=False),
        num_classes=0,
        input_shape=(tok.max_length,),
        info={"root": str(next(iter(paths.values())).parent), "sentences": len(sentences),
              "senses": len(sense_ids), "splits": {k: len(v) for k, v in splits.items()},
              "max_length": tok.max_length, "tokenizer": tok.source, "seed": seed, "examples": examples,
              "val_fraction": val_fraction, "test_fraction": test_fraction},
    )
