"""A search worker process: ``python -m torchslim.search.worker OUT INDEX``.

Started by ``torchslim search --workers N`` (or by hand, on another machine sharing the study's
PostgreSQL storage and the output directory): it reads ``OUT/search-run.json`` (the recipe, the
search settings, the storage URL, the deadline) and runs trials of the same study until the
deadline. Optuna gives every trial to one worker only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from torchslim.options.search import SearchConfig
    from torchslim.pipeline.recipe import parse
    from torchslim.search.run import RUN_FILE, session_for
    from torchslim.search.study import run_worker

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m torchslim.search.worker OUT INDEX", file=sys.stderr)
        return 2
    out, index = Path(args[0]), args[1]
    spec = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
    recipe = parse(spec["recipe"], source=spec["source"] or "<recipe>")
    cfg = SearchConfig.model_validate(spec["search"])

    def log(message: str) -> None:
        print(f"[worker {index}] {message}", flush=True)

    session = session_for(recipe, cfg, out, spec["storage"], spec["deadline"], spec["quick"], log)
    run_worker(session, cfg.trials)
    return 0


if __name__ == "__main__":
    sys.exit(main())
