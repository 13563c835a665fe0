"""Tiny BERT-family models and WordNet-format files written by the tests themselves."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = ("the a dog cat runs sleeps on mat park small big red blue house tree bird sings "
         "water flows river fast slow quiet loud green happy sad man woman child plays ball "
         "food eats drinks milk reads book writes letter night day sun moon star").split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_tiny_bert(directory: Path, *, layers: int = 2, hidden: int = 32, heads: int = 4, seed: int = 0,
                    vocab_extra: int = 0, embeddings: int | None = None, max_positions: int = 64,
                    init_range: float = 0.02) -> Path:
    """A random BertModel (``hidden`` wide, ``layers`` deep) with a WordPiece tokenizer of WORDS.

    ``init_range`` is the std of the random weights: at BERT's 0.02 a random layer barely changes its
    input (so any layer-dropped copy agrees with it); larger makes every layer matter."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    directory.mkdir(parents=True, exist_ok=True)
    vocab = SPECIAL + list(WORDS) + [f"extra{i}" for i in range(vocab_extra)]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": max_positions}))
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    assert len(tokenizer) == len(vocab), "the tiny tokenizer did not read vocab.txt"
    tokenizer.save_pretrained(str(directory))
    config = BertConfig(vocab_size=embeddings or len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=2 * hidden,
                        max_position_embeddings=max_positions, pad_token_id=0,
                        initializer_range=init_range)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(directory))
    return directory


SENTENCES = ["the dog runs in the park", "a cat sleeps on the mat", "the bird sings at night",
             "water flows in the river", "the child plays with a red ball", "the man reads a book",
             "a woman writes a letter", "the sun and the moon", "the big tree by the house",
             "a small green bird", "the quiet river flows slow", "the happy dog eats food"]


def write_wordnet(directory: Path, synsets_per_part: int = 12) -> Path:
    """data.noun/verb/adj/adv in WordNet's format: a license header, then synset lines."""
    directory.mkdir(parents=True, exist_ok=True)
    header = "  1 This software and database is being provided to you, the LICENSEE, by\n" \
             "  2 Princeton University under the following license.\n"
    for p, part in enumerate(("noun", "verb", "adj", "adv")):
        lines = [header]
        for i in range(synsets_per_part):
            offset = f"{(p + 1) * 1000 + i:08d}"
            first = SENTENCES[(i + p) % len(SENTENCES)]
            second = SENTENCES[(i + p + 5) % len(SENTENCES)]
            lines.append(f"{offset} 03 {part[0]} 01 word{i} 0 000 | definition {part} {i} of {first}; "
                         f'"{second} {part} {i}"; "example two {part} {i}"  \n')
        (directory / f"data.{part}").write_text("".join(lines))
    return directory
