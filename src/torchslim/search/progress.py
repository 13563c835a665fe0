"""What a running search keeps up to date: the budget spent (``search.json``, every few seconds),
the best so far after every trial, and the worker processes on one study."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchslim.core.io import atomic_write_json
from torchslim.options.search import SearchConfig, human_seconds
from torchslim.search.study import storage, trial_rows

STATE_FILE = "search.json"
RUN_FILE = "search-run.json"
SPENT_EVERY = 5.0  # seconds between records of the budget spent (what a SIGKILL can lose)


class Ledger:
    """Records the budget spent in ``search.json`` every few seconds while active, so a search
    killed at any moment resumes with what it had left (at most ``SPENT_EVERY`` seconds lost)."""

    def __init__(self, out: Path, state: dict[str, Any], spent: float) -> None:
        self.out, self.state, self.before = out, state, spent
        self.began = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.lock = threading.Lock()

    def spent(self) -> float:
        return self.before + time.time() - self.began

    def record(self) -> dict[str, Any]:
        return {"identity": self.state["identity"], "budget_seconds": self.state["budget_seconds"],
                "spent_seconds": self.spent(), "sessions": self.state.get("sessions", [])}

    def _write(self) -> None:
        path = self.out / STATE_FILE
        with self.lock:
            try:
                current = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            except json.JSONDecodeError:
                current = {}
            atomic_write_json(path, {**self.state, **current, **self.record()})

    def _run(self) -> None:
        while not self._stop.wait(SPENT_EVERY):
            self._write()

    def __enter__(self) -> Ledger:
        self.state.setdefault("sessions", []).append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                                      "pid": os.getpid()})
        self._write()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._write()


def progress(out: Path, study: Any, state: dict[str, Any], cfg: SearchConfig, deadline: float,
              log: Callable[[str], None]) -> None:
    """After each trial: the best so far on disk (``search.json``, ``search.md``) and a progress line."""
    from torchslim.search.results import front_numbers, tally, write_progress

    rows = trial_rows(study)
    front = front_numbers(rows, cfg)
    write_progress(out, rows, front, cfg, state)
    done = tally(rows)
    log(f"search: {len(rows)} trial(s): {', '.join(f'{n} {k}' for k, n in done.items() if n)} · front: {', '.join(f'#{n}' for n in front) or 'none yet'} · {human_seconds(max(0.0, deadline - time.time()))} "
        "left for trials")


def write_run_file(recipe: Any, cfg: SearchConfig, out: Path, url: str, deadline: float, quick: bool) -> None:
    """``OUT/search-run.json``: the recipe, the search settings, the storage and the deadline, which
    ``python -m torchslim.search.worker OUT INDEX`` reads (here, or on another machine sharing OUT)."""
    from torchslim.search.trial import recipe_data, strategy_steps

    plain = recipe_data(recipe, {name: strategy_steps(recipe, name) for name in recipe.strategies})
    atomic_write_json(out / RUN_FILE, {"recipe": plain, "source": recipe.source, "search": cfg.model_dump(mode="json"),
                                       "storage": url, "deadline": deadline, "quick": quick})


def run_workers(recipe: Any, cfg: SearchConfig, out: Path, url: str, deadline: float, workers: int,
                state: dict[str, Any], log: Callable[[str], None], study_name: str) -> None:
    """``workers`` processes on the study; this one shows progress until they end."""
    import optuna

    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    procs = [subprocess.Popen([sys.executable, "-m", "torchslim.search.worker", str(out), str(i)], env=env)
             for i in range(workers)]
    study = optuna.load_study(study_name=study_name, storage=storage(url))
    seen = -1
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(2.0)
            finished = sum(1 for t in study.get_trials(deepcopy=False) if t.state.is_finished())
            if finished != seen:
                seen = finished
                progress(out, study, state, cfg, deadline, log)
    except BaseException:
        for p in procs:
            p.kill()
        raise
    failed = [i for i, p in enumerate(procs) if p.returncode not in (0, None)]
    if failed:
        log(f"worker(s) {failed} ended with an error (exit codes {[procs[i].returncode for i in failed]}); their "
            "unfinished trials are retried or marked failed by the study's heartbeat")


__all__ = ["RUN_FILE", "SPENT_EVERY", "STATE_FILE", "Ledger", "progress", "run_workers", "write_run_file"]
