"""The suite's own check: the sandbox notices a file written outside the output directory."""

import pytest


def test_sandbox_catches_an_escape(sandbox):
    def escape():
        (sandbox.root / "escaped.txt").write_text("x")
        raise ValueError("bad")

    with pytest.raises(AssertionError, match="escaped.txt"):
        sandbox.call(escape, ValueError)


def test_sandbox_allows_the_output_directory(sandbox):
    def inside():
        sandbox.out.mkdir()
        (sandbox.out / "partial.json").write_text("{}")
        raise ValueError("bad")

    sandbox.call(inside, ValueError)
