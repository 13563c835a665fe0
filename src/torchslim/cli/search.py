"""`torchslim search`: the best compressed models for a budget, found by a search over the recipe's
space (see :mod:`torchslim.search`)."""

from __future__ import annotations

import argparse
from typing import Any

from torchslim.cli.common import console
from torchslim.options.cli import add_options, given
from torchslim.options.search import SearchConfig

# Sections of the search that only a recipe writes (nested settings, not flags).
RECIPE_ONLY = {name: "a nested section: set it in the recipe's search: section"
               for name in ("constraints", "target", "space", "fixed", "early_stop")}

EXAMPLE = """examples:
  torchslim search recipes/fashion-mnist.yaml --budget 60m --out runs/search
      the default space from the shipped teacher: the front, one pick per scenario, each a recipe
  torchslim search recipes/fashion-mnist.yaml --budget 60m --out runs/search --workers 2
      two worker processes on one study (SQLite in OUT)
  torchslim search recipes/fashion-mnist.yaml --budget 4h --out /shared/search \\
      --storage postgresql+psycopg2://user@db-host/torchslim      workers on many machines
  optuna-dashboard sqlite:///runs/search/study.db      browse the study (pip install optuna-dashboard)
Run the same command again after an interruption: the study continues where it stopped."""


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "search", help="search pruning, distillation, student architecture and INT8 for the best models in a budget",
        description="Search the recipe's `search:` space (the default space when it names none) with Optuna: every "
                    "candidate is made by the pipeline and measured on the validation split and the deployment "
                    "target against the teacher; the front is re-measured on the test set and one pick per scenario "
                    "is exported as a recipe (OUT/picks/). Reports: OUT/search.html, OUT/search.md, OUT/report.html.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", metavar="RECIPE", help="a YAML recipe (its `search:` section, or the default space)")
    p.add_argument("--out", required=True, metavar="OUT", help="output directory: the study, every trial, the reports")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna RDB storage URL (e.g. postgresql+psycopg2://user@host/db); default: sqlite:///OUT/study.db")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes on the study (default: 1)")
    p.add_argument("--quick", action="store_true", help="every trial on the recipe's `quick:` subset and epochs")
    p.add_argument("--force", action="store_true", help="OUT holds another search: discard it and start afresh")
    add_options(p, SearchConfig, exclude=tuple(RECIPE_ONLY), title="search options (over the recipe's search: section)")
    p.set_defaults(func=cmd_search, options=SearchConfig, options_exclude=RECIPE_ONLY)


def cmd_search(args: argparse.Namespace) -> int:
    from torchslim.search import search

    def log(text: str) -> None:
        console.print(text, highlight=False, markup=False)

    overrides = given(SearchConfig, args, tuple(RECIPE_ONLY))
    summary = search(args.recipe, args.out, storage_url=args.storage, workers=args.workers, quick=args.quick,
                     force=args.force, log=log, **overrides)
    final = summary.get("final") or {}
    for scenario, rec in (final.get("recommendations") or {}).items():
        recipe = (final.get("picks") or {}).get(scenario)
        console.print(f"{scenario.replace('_', '-')}: {rec.get('row') or 'no pick'}"
                      + (f" — recipe {args.out}/{recipe}" if recipe else ""), highlight=False, markup=False)
    return 0
