"""Benchmark: how long ``torchslim --help`` and every ``torchslim COMMAND --help`` take to answer.

Help, ``--version`` and bad flags are the commands people run most and wait on most; they must not
pay for importing torch (about two seconds on a laptop-class CPU). Each command runs as a fresh
subprocess (``python -m torchslim ...``) once untimed, so the files it reads are in the page cache,
then in ``--repeats`` rounds that run every command once in a shuffled order (a machine that gets
busier part-way slows every command alike); ``python -c "import torch"`` is timed in the same rounds
as the reference. The subcommands are read from the built parser, so a new command is measured
without editing this.

    python benchmarks/cli_startup.py                          # a few minutes on 2 cores
    python benchmarks/cli_startup.py --before /tmp/before/src --before-module torchslim.cli

``--before SRC`` also times the top-level and ``train`` help of another checkout's source tree
(for instance ``git worktree add /tmp/before <commit>``) and records it as ``before``.
Writes ``benchmarks/results/cli_startup.json`` and its section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any

from _common import REPO, add_output_args, display_path, machine_line, now, write_section

from torchslim.core.io import atomic_write_json

NAME = "cli_startup"
TARGET_S = 0.5
CONFIDENCE = 0.95


def median_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A distribution-free interval for the median: the order statistics whose ranks bracket it.

    The number of samples below the true median is Binomial(n, 1/2); the widest symmetric pair of
    ranks (k, n+1-k) whose coverage is at least ``confidence`` is returned (for n = 15: the 4th and
    12th smallest, 96.5%). With too few samples for that coverage, the extremes.
    """
    xs = sorted(values)
    n = len(xs)
    below = [math.comb(n, i) / 2 ** n for i in range(n + 1)]
    k = 0
    while k + 1 <= n // 2 and 1 - 2 * sum(below[: k + 1]) >= confidence:
        k += 1
    return xs[k], xs[n - 1 - k]


@dataclasses.dataclass(frozen=True)
class Command:
    """One process to time: ``python ARGS`` with ``src`` (a source tree) first on the path."""

    group: str  # "commands", "reference" or "before": where the result goes in the record
    name: str
    args: tuple[str, ...]
    src: str | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        if self.src:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [self.src, env.get("PYTHONPATH")]))
        return env

    def run(self) -> float:
        """Wall seconds of one run; stops the benchmark on a non-zero exit."""
        argv = [sys.executable, *self.args]
        start = time.perf_counter()
        done = subprocess.run(argv, env=self.env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
        return elapsed


def summary(command: Command, seconds: list[float]) -> dict[str, Any]:
    low, high = median_interval(seconds)
    return {"argv": list(command.args), "src": command.src, "median_s": statistics.median(seconds),
            "low_s": low, "high_s": high, "seconds": seconds}


def measure(commands: list[Command], repeats: int, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Each command once untimed, then ``repeats`` rounds that run every command once in a shuffled
    order, so a machine that gets busier part-way slows all commands alike, not the last ones."""
    for command in commands:
        command.run()
    order = random.Random(seed)
    seconds: dict[Command, list[float]] = {c: [] for c in commands}
    for i in range(repeats):
        print(f"  round {i + 1}/{repeats}", file=sys.stderr, flush=True)
        for command in order.sample(commands, len(commands)):
            seconds[command].append(command.run())
    record: dict[str, dict[str, Any]] = {}
    for command in commands:
        record.setdefault(command.group, {})[command.name] = summary(command, seconds[command])
    return record


def help_commands(src: str) -> list[Command]:
    """``--help`` of the program and of every subcommand, then ``--version``, of the tree ``src``."""
    from torchslim.cli import build_parser, subcommands

    def command(name: str, *args: str) -> Command:
        return Command("commands", name, ("-m", "torchslim", *args), src)

    commands = [command("torchslim --help", "--help")]
    commands += [command(f"torchslim {name} --help", name, "--help") for name in subcommands(build_parser())]
    return commands + [command("torchslim --version", "--version")]


def before_commands(src: str, module: str) -> list[Command]:
    """The program's and ``train``'s help in another source tree (``module`` runs its CLI there)."""
    return [Command("before", f"python -m {module} --help", ("-m", module, "--help"), src),
            Command("before", f"python -m {module} train --help", ("-m", module, "train", "--help"), src)]


def machine() -> dict[str, Any]:
    from torchslim.measure import machine_info  # imports torch: only the benchmark pays for it

    return machine_info()


def markdown(record: dict[str, Any]) -> str:
    def cell(r: dict[str, Any]) -> str:
        return f"{r['median_s']:.3f} ({r['low_s']:.3f}–{r['high_s']:.3f})"

    reference = record["reference"]["python -c 'import torch'"]
    lines = [
        "## CLI start-up: `--help` without importing torch",
        "",
        f"`python benchmarks/cli_startup.py` — {record['when']}, {machine_line(record['machine'])}. "
        f"JSON: `{record['json']}`.",
        "",
        f"Wall seconds of a fresh `python -m torchslim ...` process, median of {record['repeats']} runs "
        f"after one untimed run, every command once per round in a shuffled order (distribution-free "
        f"{int(CONFIDENCE * 100)}% interval of the median in brackets). Target: under {TARGET_S} s each.",
        "",
        "| command | seconds | under target |",
        "|---|---:|:---:|",
    ]
    for name, r in record["commands"].items():
        lines.append(f"| `{name}` | {cell(r)} | {'yes' if r['high_s'] < TARGET_S else 'no'} |")
    lines.append(f"| reference: `python -c 'import torch'` | {cell(reference)} | |")
    if record.get("before"):
        lines += ["", f"Before (source tree of commit `{record['before_commit']}`, where `--help` "
                  "imported torch and every command module):", "",
                  "| command | seconds |", "|---|---:|"]
        lines += [f"| `{name}` | {cell(r)} |" for name, r in record["before"].items()]
    return "\n".join(lines)


def git_commit(src: str) -> str | None:
    done = subprocess.run(["git", "-C", src, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per command (default: %(default)s)")
    parser.add_argument("--before", metavar="SRC", help="another checkout's src/ to time as the 'before' figure")
    parser.add_argument("--before-module", default="torchslim",
                        help="the module that runs the CLI in --before's tree (default: %(default)s)")
    add_output_args(parser, NAME)
    args = parser.parse_args(argv)

    record: dict[str, Any] = {"when": now(), "repeats": args.repeats, "target_s": TARGET_S,
                              "json": display_path(args.out), "machine": machine(), "order": "shuffled rounds"}
    commands = help_commands(str(REPO / "src"))
    commands.append(Command("reference", "python -c 'import torch'", ("-c", "import torch")))
    if args.before:
        commands += before_commands(args.before, args.before_module)
        record["before_commit"] = git_commit(args.before)
    record.update(measure(commands, args.repeats))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, record)
    write_section(args.results_md, NAME, markdown(record))
    slow = [name for name, r in record["commands"].items() if r["median_s"] >= TARGET_S]
    print(markdown(record))
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
