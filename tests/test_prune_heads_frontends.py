"""Head counts per attention block reach pruning from a recipe and from the command line."""

import pytest
from pydantic import ValidationError

from torchslim.cli import build_parser
from torchslim.pipeline.steps.structural import PruneParams


def test_recipe_prune_step_takes_heads_and_head_ratio():
    params = PruneParams(ratio=0.5, heads={"blocks.0.attn": 4}, head_ratio=0.25)
    assert params.heads == {"blocks.0.attn": 4} and params.head_ratio == 0.25


@pytest.mark.parametrize("bad", [{"heads": {"blocks.0.attn": 0}}, {"heads": {"blocks.0.attn": -2}},
                                 {"heads": {"blocks.0.attn": "four"}}, {"head_ratio": 1.0}])
def test_recipe_prune_step_refuses_bad_heads(bad):
    with pytest.raises(ValidationError):
        PruneParams(ratio=0.5, **bad)


def test_cli_heads_flag_builds_the_mapping():
    args = build_parser().parse_args(["prune", "fashion-mnist-teacher", "--out", "x",
                                      "--heads", "blocks.0.attn=4", "--heads", "blocks.1.attn=2"])
    assert dict(args.heads) == {"blocks.0.attn": 4, "blocks.1.attn": 2}


@pytest.mark.parametrize("text", ["blocks.0.attn=0", "blocks.0.attn", "=4", "blocks.0.attn=x"])
def test_cli_heads_flag_refuses_bad_counts(text, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["prune", "fashion-mnist-teacher", "--out", "x", "--heads", text])
    assert exc.value.code == 2 and "PATH=HEADS" in capsys.readouterr().err
