"""Head counts per attention block reach pruning from a recipe and from the command line."""

import pytest
from pydantic import ValidationError

from torchslim.cli import build_parser
from torchslim.options import OptionsError
from torchslim.options.cli import from_args
from torchslim.pipeline.steps.structural import Prune
from torchslim.prune.config import PruneConfig


def test_recipe_prune_step_takes_heads_and_head_ratio():
    params = Prune.Params(ratio=0.5, heads={"blocks.0.attn": 4}, head_ratio=0.25)
    assert params.heads == {"blocks.0.attn": 4} and params.head_ratio == 0.25


@pytest.mark.parametrize("bad", [{"heads": {"blocks.0.attn": 0}}, {"heads": {"blocks.0.attn": -2}},
                                 {"heads": {"blocks.0.attn": "four"}}, {"head_ratio": 1.0}])
def test_recipe_prune_step_refuses_bad_heads(bad):
    with pytest.raises(ValidationError):
        Prune.Params(ratio=0.5, **bad)


def _cli_options(*argv: str) -> PruneConfig:
    args = build_parser().parse_args(["prune", "fashion-mnist-teacher", "--out", "x", *argv])
    return from_args(args.options, args)


def test_cli_heads_flag_builds_the_mapping():
    options = _cli_options("--heads", "blocks.0.attn=4", "--heads", "blocks.1.attn=2")
    assert options.heads == {"blocks.0.attn": 4, "blocks.1.attn": 2}


@pytest.mark.parametrize(("text", "message"), [
    ("blocks.0.attn=0", "heads['blocks.0.attn'] = 0 must be a positive number of attention heads"),
    ("blocks.0.attn", "--heads: expected KEY=VALUE, got 'blocks.0.attn'"),
    ("=4", "--heads: expected KEY=VALUE, got '=4'"),
    ("blocks.0.attn=x", "--heads.blocks.0.attn = \"x\" is invalid: Input should be a valid integer"),
])
def test_cli_heads_flag_refuses_bad_counts(text, message):
    with pytest.raises(OptionsError) as exc:
        _cli_options("--heads", text)
    assert message in str(exc.value)
