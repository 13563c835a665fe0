"""`torchslim run`, `torchslim compare` and `torchslim report`: recipes, the comparison of
strategies and its report."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from torchslim.cli.common import console

RUN_EXAMPLE = """example:
  torchslim run recipes/fashion-mnist.yaml --strategy student-distilled-int8 --quick --out runs/kd-int8
      distil, then quantize; it prints the final model's directory, which `torchslim eval` measures"""
COMPARE_EXAMPLE = """examples:
  torchslim compare recipes/fashion-mnist.yaml --out runs/compare          every strategy, measured
  torchslim compare recipes/fashion-mnist.yaml --quick --strategies student-distilled,teacher-int8 \\
      --out runs/compare-quick                        a few strategies on a subset, in minutes"""
REPORT_EXAMPLE = """example:
  torchslim report runs/compare          rewrite runs/compare/report.html after editing matrix.json"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", metavar="RECIPE",
                   help="a YAML recipe file (see recipes/fashion-mnist.yaml; text: recipes/minilm-wordnet.yaml)")
    p.add_argument("--out", required=True, help="output directory (steps, models, report)")
    p.add_argument("--quick", action="store_true",
                   help="the same strategies on a subset of the data with few epochs (the recipe's `quick:`)")
    p.add_argument("--resume", action="store_true",
                   help="OUT holds a run of another recipe or settings: reuse its steps that still match")
    p.add_argument("--force", action="store_true",
                   help="OUT holds a run of another recipe or settings: discard it and start afresh")
    p.add_argument("--allow-import", action="append", default=[], metavar="PACKAGE",
                   help="allow models given as `module:function` from PACKAGE (a recipe never imports "
                        "code by itself); repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_parsers(sub: Any) -> None:
    run = sub.add_parser(
        "run", help="run one pipeline of a recipe (train, distill, prune, quantize, ...)",
        description="Run one pipeline: the recipe's only strategy, or the one named with --strategy. Each "
                    "step's model, metrics and cost are saved in OUT/steps; run the same command again "
                    "after an interruption and every finished step is reused.",
        epilog=RUN_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(run)
    run.add_argument("--strategy", default=None, help="which strategy of the recipe to run")
    run.set_defaults(func=cmd_run)

    compare = sub.add_parser(
        "compare", help="run every strategy of a recipe and write the measured selection matrix",
        description="Run every strategy of the recipe (each a pipeline from the same teacher), measure all "
                    "final models together on this machine, and write OUT/report.html, OUT/matrix.md, "
                    "OUT/matrix.json and OUT/pareto.png with a recommendation per deployment scenario. "
                    "Finished steps are reused when run again. Exit code 1 when a strategy failed "
                    "(its row holds the error; the others still finish).",
        epilog=COMPARE_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(compare)
    compare.add_argument("--strategies", default=None,
                         help="comma-separated subset of the recipe's strategies (the baseline is always run)")
    compare.set_defaults(func=cmd_compare)

    report = sub.add_parser("report", help="re-render a comparison's report from its matrix.json",
                            description="Rewrite DIR/report.html, matrix.md and pareto.png from DIR/matrix.json.",
                            epilog=REPORT_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    report.add_argument("dir", metavar="DIR", help="a run directory: the --out of `torchslim compare`")
    report.set_defaults(func=cmd_report)


def _log(text: str) -> None:
    console.print(text, highlight=False, markup=False)


def _import_path() -> None:
    # `--allow-import mypkg` imports the user's own code, from the directory they run in.
    if "" not in sys.path:
        sys.path.insert(0, "")


def cmd_run(args: argparse.Namespace) -> int:
    from torchslim.pipeline import run

    _import_path()
    result = run(args.recipe, args.out, strategy=args.strategy, quick=args.quick, resume=args.resume,
                 force=args.force, progress=not args.quiet, log=_log, allow_imports=tuple(args.allow_import))
    cost = result.cost()
    console.print(f"done: {result.name} in {cost['seconds']:.0f} s of steps "
                  f"({cost['reused_steps']} reused); final model: {result.final.path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from torchslim.pipeline import compare
    from torchslim.report.matrix import quality
    from torchslim.report.render import cells

    _import_path()
    chosen = [s for s in args.strategies.split(",") if s] if args.strategies else None
    matrix = compare(args.recipe, args.out, quick=args.quick, resume=args.resume, force=args.force,
                     strategies=chosen, progress=not args.quiet, log=_log, allow_imports=tuple(args.allow_import))
    from rich.table import Table

    table = Table(title=f"{matrix['recipe']} — measured on this machine")
    shown = [("strategy", "strategy"), ("target", "target"), ("accuracy", quality(matrix)["heading"]),
             ("accuracy_delta", "Δ"),
             ("bytes_ratio", "bytes ×"), ("macs_ratio", "MACs ×"), ("speedup", "speed-up ×"),
             ("train_seconds", "train s")]
    for _, head in shown:
        table.add_column(head)
    for row in matrix["rows"]:
        c = cells(row, matrix)
        table.add_row(*(c.get(k, str(row.get(k) or "")) for k, _ in shown))
    console.print(table)
    for rec in matrix["recommendations"].values():
        console.print(rec["text"].replace("**", ""), highlight=False, markup=False)
    if matrix["failed"]:
        console.print(f"[red]failed: {', '.join(matrix['failed'])}[/red] (see their rows in {args.out}/matrix.md)")
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from torchslim.report import rerender

    rerender(args.dir)
    console.print(f"rewrote {args.dir}/report.html, matrix.md and pareto.png from matrix.json")
    return 0
