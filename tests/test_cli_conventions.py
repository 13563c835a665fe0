"""Conventions every `torchslim` command keeps: help and --version without importing torch, an
example in every help, one overwrite flag (--force), the same positional names for the same kind
of input, and `torchslim losses` showing whole descriptions.

The commands are read from the built parser, so a new command is held to these the moment it is
added.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import torchslim
from torchslim.cli import build_parser, main, subcommands
from torchslim.cli.common import IMPORTANCE_NAMES

COMMANDS = subcommands(build_parser())
# What `--help` must not load: seconds of start-up that answer nothing about flags.
HEAVY = ("torch", "numpy", "onnx", "onnxruntime", "flwr", "matplotlib", "torch_pruning", "transformers",
         "safetensors", "ray")
# Runs argv through the CLI in a fresh interpreter, then lists the heavy modules it imported.
PROBE = """
import contextlib, io, sys
from torchslim.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
loaded = [m for m in {heavy!r} if m in sys.modules]
print(out.getvalue())
print("EXIT", code, "LOADED", ",".join(loaded) or "-")
"""


def probe(*argv: str, heavy: tuple[str, ...] = HEAVY) -> tuple[str, int, list[str]]:
    """``(help text, exit code, heavy modules imported)`` of ``torchslim argv`` in a new process."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=heavy), *argv], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text, _, last = done.stdout.rstrip().rpartition("\n")
    _, code, _, loaded = last.split()
    return text, int(code), [] if loaded == "-" else loaded.split(",")


def test_the_parser_has_the_known_commands():
    # Guards the enumeration itself: were it to find nothing, every sweep below would pass vacuously.
    assert {"train", "distill", "eval", "prune", "sparsify", "quantize", "run", "compare", "report",
            "federated", "models", "datasets", "losses"} <= set(COMMANDS)


def test_the_command_table_matches_the_modules():
    # main() builds only the given command from this table; the program's help shows its lines.
    import argparse

    from torchslim.cli import COMMANDS as TABLE

    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    built = {choice.dest: choice.help for choice in action._choices_actions}
    assert built == {name: line for name, (_, line) in TABLE.items()}
    assert list(built) == list(TABLE)  # the same order in `torchslim --help`


def test_a_command_alone_is_built_as_in_the_full_parser():
    for name in COMMANDS:
        alone = subcommands(build_parser(only=name))[name]
        assert alone.format_help() == COMMANDS[name].format_help(), name


def test_program_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and all(f"    {name}" in out for name in COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_help_has_an_example_and_imports_nothing_heavy(command):
    text, code, loaded = probe(command, "--help")
    assert code == 0 and f"usage: torchslim {command}" in text
    assert loaded == [], f"`torchslim {command} --help` imported {loaded}"
    assert "example" in text.lower(), f"`torchslim {command} --help` shows no example"
    assert "\n  torchslim " in text, f"`torchslim {command} --help` shows no example invocation"


@pytest.mark.parametrize("argv", [["--help"], ["--version"], []], ids=["help", "version", "nothing"])
def test_program_help_and_version_import_nothing_heavy(argv):
    # not even a command's module: their flags are pydantic models
    _, code, loaded = probe(*argv, heavy=(*HEAVY, "pydantic", "torchslim.options", "torchslim.cli.train"))
    assert code == 0 and loaded == []


def test_a_mistyped_flag_exits_2_without_importing_torch():
    # --data's default is a registry name: it must not be looked up (importing torch) to say this
    _, code, loaded = probe("train", "--epochs", "1", "--out", "x", "--epohcs", "3")
    assert code == 2 and loaded == []


def test_registry_name_defaults_are_registered():
    # Defaults skip the lookup at parse time (see cli.common.Parser), so they are checked here.
    from torchslim.cli.common import _registry

    for command, parser in COMMANDS.items():
        for action in parser._actions:
            kind = getattr(action.type, "registry_kind", None)
            if kind and isinstance(action.default, str):
                assert action.default in _registry(kind), f"{command} {action.option_strings}: {action.default!r}"


def test_registry_names_are_looked_up_when_given_not_when_defaulted(capsys):
    from torchslim.cli.common import Parser, registered

    parser = Parser(prog="torchslim")
    parser.add_argument("--data", type=registered("dataset"), default="fashion-mnist")
    value = parser.parse_args([]).data
    assert value == "fashion-mnist" and type(value) is str
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--data", "fashion-mnst"])
    assert exc.value.code == 2 and "Did you mean 'fashion-mnist'" in capsys.readouterr().err


def test_version_is_the_package_version():
    done = subprocess.run([sys.executable, "-m", "torchslim", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0
    assert done.stdout.strip() == f"torchslim {torchslim.__version__}" == f"torchslim {metadata.version('torchslim')}"


def examples(text: str) -> list[str]:
    """The ``torchslim ...`` invocations in a help text: continued lines (ending in a backslash)
    joined, and the remark after a run of three or more spaces dropped."""
    found, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and not stripped.startswith("torchslim "):
            continue
        command = re.split(r"\s{3,}", stripped)[0]
        if command.endswith("\\"):
            pending += command[:-1] + " "
            continue
        found.append(pending + command)
        pending = ""
    return found


@pytest.mark.parametrize("command", ["", *sorted(COMMANDS)])
def test_help_examples_parse(command):
    # The examples must keep working as flags are renamed: each is parsed by the real parser.
    parser = COMMANDS[command] if command else build_parser()
    found = examples(parser.format_help())
    assert found or not command, f"`torchslim {command} --help` has no example to parse"
    for example in found:
        check_example(example, f"`torchslim {command} --help`")


def check_example(example: str, where: str) -> None:
    """``example`` parses, and spells every flag out in full (argparse would accept a prefix)."""
    words = shlex.split(example)[1:]
    try:
        build_parser().parse_args(words)
    except SystemExit as exc:
        pytest.fail(f"{where}: example does not parse (exit {exc.code}): {example}")
    parser = COMMANDS[words[0]]
    for word in words[1:2]:  # a command group (`torchslim text layers`): its method's own flags
        parser = subcommands(parser).get(word, parser)
    flags = _options(parser)
    for word in words:
        assert not word.startswith("--") or word.split("=")[0] in flags, f"{where}: {word} in {example}"


def test_readme_examples_parse():
    readme = Path(__file__).resolve().parents[1] / "README.md"
    blocks = re.findall(r"```[a-z]*\n(.*?)```", readme.read_text(encoding="utf-8"), re.S)
    # a shell comment after a command is its remark, like the three spaces in a help's examples
    found = [e for block in blocks for e in examples(re.sub(r"\s+#", "   #", block))]
    assert len(found) >= 10
    for example in found:
        check_example(example, "README.md")


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def _positionals(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_one_overwrite_flag(command):
    flags = _options(COMMANDS[command])
    assert "--restart" not in flags
    if "--out" in flags:  # a command that writes a run can be told to discard what is there
        assert "--force" in flags


def test_overwrite_flag_help_says_what_it_discards():
    for command, parser in COMMANDS.items():
        for action in parser._actions:
            if "--force" in action.option_strings:
                assert "discard" in action.help and "OUT" in action.help, command


EXPECTED_POSITIONALS = {
    "prune": ["SOURCE"], "sparsify": ["SOURCE"], "quantize": ["SOURCE"], "qat": ["SOURCE"], "export": ["SOURCE"],
    "eval": ["SOURCE"],
    "run": ["RECIPE"], "compare": ["RECIPE"], "federated": ["RECIPE"], "report": ["DIR"],
}


# A model (shipped name, checkpoint directory, .onnx where accepted), a YAML recipe, a run directory.
KINDS = {"SOURCE", "RECIPE", "DIR"}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_positional_names_say_what_kind_of_input(command):
    positionals = _positionals(COMMANDS[command])
    assert {a.metavar for a in positionals} <= KINDS, f"{command}: name positionals one of {sorted(KINDS)}"
    if command in EXPECTED_POSITIONALS:
        assert [a.metavar for a in positionals] == EXPECTED_POSITIONALS[command]
    for action in positionals:
        assert action.help and len(action.help) > 20, f"{command} {action.metavar} has no help saying what it is"


def test_eval_takes_several_sources():
    (action,) = _positionals(COMMANDS["eval"])
    assert action.nargs == "+"
    assert "SOURCE [SOURCE ...]" in COMMANDS["eval"].format_usage()


def test_help_lists_the_registered_importance_criteria():
    from torchslim.prune import IMPORTANCE

    assert sorted(IMPORTANCE_NAMES) == sorted(IMPORTANCE.list())


def test_losses_prints_every_loss_whole(capsys):
    from torchslim.cli.listings import description
    from torchslim.distill.losses import LOSSES

    assert main(["losses"]) == 0
    out = capsys.readouterr().out
    for name in LOSSES.list():
        text = description(LOSSES.get(name).__doc__)
        assert len(text.splitlines()) > 1, name  # a description longer than its first line
        for line in filter(str.strip, text.splitlines()):
            assert line.strip() in out, f"{name}: {line!r} missing from `torchslim losses`"
    # the second line of a title that a one-line listing used to cut
    assert "of Convolutional Neural Networks via Attention Transfer" in out


def test_a_negative_looking_value_reaches_its_option():
    """argparse reads `-5m` or `-1e3` after an option as a flag; the CLI hands it to the option, whose
    own check then names the value. A flag that takes no value is left alone."""
    from torchslim.cli import join_negative_values, valued_options

    parser = build_parser("search")
    valued = valued_options(parser)
    assert "--budget" in valued and "--force" not in valued
    assert join_negative_values(["search", "r.yaml", "--budget", "-5m", "--force", "-1"], valued) == [
        "search", "r.yaml", "--budget=-5m", "--force", "-1"]
    assert join_negative_values(["--budget", "-x"], valued) == ["--budget", "-x"]  # not a number: a flag


def test_a_negative_duration_is_named_by_the_option(capsys, tmp_path):
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "fashion-mnist.yaml"
    assert main(["search", str(recipe), "--out", str(tmp_path / "out"), "--budget", "-5m"]) == 2
    assert not (tmp_path / "out").exists()
    err = capsys.readouterr().err
    assert '"-5m"' in err and "not a duration" in err and "expected one argument" not in err
