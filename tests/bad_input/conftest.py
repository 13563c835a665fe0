"""The bad-input suite: every input torchslim accepts, given wrong, by front end.

Each case asserts three things: the exit code (CLI: 2) or the torchslim error type (API), that the
message names the bad value, and that nothing appeared outside the output directory. ``sandbox``
gives each case a working directory of its own and the check for the last part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from torchslim.cli import main


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@dataclass
class Sandbox:
    """A test's folder: ``inputs`` for what the case writes first, ``out`` for the run's output."""

    root: Path
    capsys: pytest.CaptureFixture

    @property
    def inputs(self) -> Path:
        path = self.root / "inputs"
        path.mkdir(exist_ok=True)
        return path

    @property
    def out(self) -> Path:
        return self.root / "out"

    def cli(self, *argv: str, allowed: Iterable[Path] = ()) -> tuple[int, str, str]:
        """Runs ``torchslim ARGV`` in-process; checks that nothing appeared outside ``out``.

        ``allowed`` names other paths the command may legitimately create (none, usually).
        Returns ``(exit code, stdout, stderr)``; argparse's SystemExit becomes its code.
        """
        before = _files(self.root)
        self.capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = self.capsys.readouterr()
        self.assert_nothing_outside(before, allowed)
        return code, captured.out, captured.err

    def call(self, fn: Callable[[], object], error: type[BaseException],
             allowed: Iterable[Path] = ()) -> BaseException:
        """Calls ``fn`` expecting ``error``; checks nothing appeared outside ``out``; returns it."""
        before = _files(self.root)
        with pytest.raises(error) as info:
            fn()
        self.assert_nothing_outside(before, allowed)
        return info.value

    def assert_nothing_outside(self, before: set[Path], allowed: Iterable[Path] = ()) -> None:
        keep = [self.out, *map(Path, allowed)]
        new = [p for p in _files(self.root) - before
               if not any(p == k or k in p.parents for k in keep)]
        assert not new, f"files appeared outside the output directory: {sorted(map(str, new))}"


@pytest.fixture
def sandbox(tmp_path, capsys, monkeypatch) -> Sandbox:
    """A fresh folder as the working directory (relative paths land inside it)."""
    root = tmp_path / "case"
    root.mkdir()
    monkeypatch.chdir(root)
    return Sandbox(root, capsys)


def _expect_exit_2(result: tuple[int, str, str], *needles: str) -> str:
    """The CLI exited 2 with one clear message (no traceback) that contains every needle."""
    code, out, err = result
    text = out + err
    assert code == 2, f"exit {code}, expected 2; output:\n{text}"
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle.lower() in text.lower(), f"{needle!r} not in:\n{text}"
    return text


def _expect_message(exc: BaseException, *needles: str) -> str:
    text = str(exc)
    for needle in needles:
        assert needle.lower() in text.lower(), f"{needle!r} not in: {text}"
    return text


Sandbox.expect_exit_2 = staticmethod(_expect_exit_2)
Sandbox.expect_message = staticmethod(_expect_message)
