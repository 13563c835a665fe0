"""The study: Optuna's RDB storage, its sampler, the budget, and one worker's trials.

The study lives in Optuna's RDB storage: ``sqlite:///OUT/study.db`` by default (several worker
processes on one machine), or a PostgreSQL URL for workers on many machines. Heartbeats mark a
trial whose worker died as failed, and Optuna's ``RetryHeartbeatStaleTrialCallback`` enqueues it again with
the same parameters, so a killed worker's trial is retried once, never lost; the retry reuses every
step the dead worker finished and resumes its training at the last saved epoch.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchslim.core.errors import TorchSlimError
from torchslim.options.search import OBJECTIVES, SearchConfig
from torchslim.pipeline.search_space import Space
from torchslim.search.trial import (
    Baseline,
    TrialStopped,
    deploy,
    hopeless,
    run_trial,
    time_against,
    trial_recipe,
)

HEARTBEAT_SECONDS = 5
GRACE_SECONDS = 20


class SearchError(TorchSlimError):
    """A search cannot start: a bad space, budget, storage or output directory."""


def storage(url: str) -> Any:
    """Optuna's RDB storage at ``url`` with heartbeats and one retry of a dead worker's trial.

    Raises:
        SearchError: the URL is malformed, its driver is missing, or the database cannot be reached.
    """
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats: stable in use
    try:
        return RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
                          engine_kwargs={"connect_args": {"timeout": 30}} if url.startswith("sqlite") else
                          {"pool_pre_ping": True})
    except (optuna.exceptions.StorageInternalError, ImportError, ValueError, Exception) as exc:  # noqa: B014
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = reason.rstrip(". ")
        raise SearchError(f"Cannot open the study storage {redact(url)!r}: {reason}. Give a reachable database URL "
                          "(sqlite:///path/study.db, or postgresql+psycopg2://user@host:port/db).") from None


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001  (a malformed URL is shown as given)
        return url


def sampler(cfg: SearchConfig, seed: int) -> Any:
    import optuna

    # Constraints reach both samplers from the trials themselves (Trial.set_constraint, in run_trial).
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=8)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=6)


def directions(cfg: SearchConfig) -> list[str]:
    return [OBJECTIVES[o] for o in cfg.objectives]


@dataclasses.dataclass
class Session:
    """One worker process's view of a search: the recipe, the space, the pipeline's context, the
    teacher on the target, and the deadline after which no trial starts."""

    recipe: Any
    cfg: SearchConfig
    space: Space
    out: Path
    ctx: Any
    study: Any
    baseline: Baseline
    batch_size: int
    threads: int
    deadline: float
    quick: bool = False
    log: Callable[[str], None] = print

    def left(self) -> float:
        return self.deadline - time.time()

    @property
    def floor(self) -> float | None:
        c = self.cfg.constraints.accuracy_floor
        return None if c is None else self.baseline.val_accuracy - c

    def finished(self) -> list[dict[str, Any]]:
        import optuna

        return [t.user_attrs for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]

    def hopeless(self, route: str, fraction: float, accuracy: float) -> str | None:
        return hopeless(self.finished(), self.floor, route, fraction, accuracy, self.cfg, len(self.ctx.data.val.dataset))

    def estimate(self, route: str, steps: list[dict[str, Any]]) -> float | None:
        """Seconds this candidate will take, from finished trials of its route (seconds per
        epoch, plus the measurement); None before any finished."""
        done = [t for t in self.finished() if t.get("route") == route and t.get("epochs")]
        if not done:
            return None
        per_epoch = statistics.median((t["train_seconds"]) / t["epochs"] for t in done)
        measure = statistics.median(t["seconds"] - t["train_seconds"] for t in done)
        epochs = sum(int((p or {}).get("epochs", 0)) for s in steps for p in s.values() if isinstance(p, dict))
        if self.quick:
            epochs = min(epochs, self.recipe.quick.epochs * len(steps))
        return per_epoch * max(epochs, 1) + measure

    def probe(self, name: str, steps: list[dict[str, Any]], shape: dict[str, Any], where: Path) -> dict[str, Any]:
        """The candidate's architecture deployed as the trial would deploy it, timed against the
        teacher before any training (see :mod:`torchslim.search.trial`)."""
        from torchslim.pipeline.runner import run_strategy

        ctx = self.ctx
        if shape["route"] == "pruned":
            probe_name = f"{name}-architecture"
            ctx.recipe = trial_recipe(self.recipe, probe_name, steps[:2])
            result = run_strategy(ctx, probe_name)  # the prune step, shared with the trial itself
            model = result.model if result.model is not None else result.final.materialise(ctx)
            ctx.recipe = trial_recipe(self.recipe, name, steps)
        else:
            import torch

            params = dict(steps[0]["distill"])
            extra = {**params.get("model_kwargs", {}), **{k: params[k] for k in ("width", "depth") if params.get(k)}}
            torch.manual_seed(self.recipe.seed)
            model = ctx.create_model(params["student"], extra)
        runnable, _ = deploy(ctx, model, shape["quantize"] != "none", where, self.cfg.target.runtime)
        return time_against(ctx, self.baseline.runnable, runnable, self.batch_size, self.threads,
                            min(self.cfg.target.seconds, 4.0))

    def violations(self, attrs: dict[str, Any]) -> dict[str, float]:
        """Constraint values by name (<= 0: satisfied) in Optuna's convention."""
        c = self.cfg.constraints
        out = {}
        if c.accuracy_floor is not None:
            out["accuracy_floor"] = self.floor - attrs["val_accuracy"]
        if c.latency_budget is not None:
            out["latency_budget"] = attrs["latency_ratio"] - c.latency_budget
        if c.bytes_budget is not None:
            out["bytes_budget"] = attrs["bytes_ratio"] - c.bytes_budget
        return out

    def objective_values(self, attrs: dict[str, Any]) -> tuple[float, ...]:
        keys = {"accuracy": "val_accuracy", "latency": "latency_ratio", "bytes": "bytes_ratio"}
        return tuple(float(attrs[keys[o]]) for o in self.cfg.objectives)

    def objective(self, trial: Any) -> tuple[float, ...]:
        """Optuna's objective: a trial stopped early is recorded and pruned; a candidate that fails
        records its error (the study goes on)."""
        import optuna

        from torchslim.pipeline.runner import format_error

        try:
            values = run_trial(self, trial)
        except TrialStopped as stop:
            for key, value in stop.attrs.items():
                trial.set_user_attr(key, value)
            trial.set_user_attr("stopped", stop.reason)
            self.log(f"trial {trial.number}: stopped — {stop.reason}")
            raise optuna.TrialPruned(stop.reason) from None
        except Exception as exc:
            trial.set_user_attr("error", format_error(exc))
            self.log(f"trial {trial.number}: FAILED — {format_error(exc)}")
            raise
        attrs = trial.user_attrs
        if attrs.get("untrained"):
            return values
        self.log(f"trial {trial.number}: {attrs['route']}, quantize {attrs['shape']['quantize']}: "
                 f"{attrs['val_accuracy']:.2f}% validation, {attrs['speedup']:.2f}x the teacher's speed "
                 f"({self.cfg.target.runtime}, b{self.batch_size}/{self.threads}t), {attrs['bytes']:,} bytes, "
                 f"{attrs['seconds']:.0f} s{'' if max(attrs['constraints'].values(), default=0) <= 0 else ' (infeasible)'}")
        return values


def run_worker(session: Session, max_trials: int | None, on_trial: Callable[[], None] | None = None) -> None:
    """Run trials of the session's study until the deadline (no trial starts that the time left
    cannot finish), ``max_trials`` trials in the study, or the study is stopped."""
    import optuna
    from optuna.study import MaxTrialsCallback

    misses = [0]  # candidates in a row that did not fit the time left

    def enough(study: Any, trial: Any) -> None:
        if on_trial is not None:
            on_trial()
        if session.left() <= 0:
            study.stop()
            return
        if not (trial.user_attrs.get("stopped") or "").startswith("budget"):
            misses[0] = 0
            return
        misses[0] += 1
        quickest = min((t["seconds"] for t in session.finished() if t.get("seconds")), default=0.0)
        if session.left() < quickest or misses[0] >= 5:  # nothing the space holds fits any more
            study.stop()

    callbacks = [enough]
    if max_trials is not None:
        callbacks.append(MaxTrialsCallback(max_trials, states=None))
    if max_trials is not None and len(session.study.trials) >= max_trials:
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    timeout = session.left()
    if timeout <= 0:
        return
    session.study.optimize(session.objective, timeout=timeout, callbacks=callbacks, catch=(Exception,),
                           gc_after_trial=True)


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """Every trial as a plain row: number, state, values and what it recorded."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"number": t.number, "state": t.state.name.lower(), "values": t.values,
                     "params": dict(t.params), **{k: v for k, v in t.user_attrs.items()},
                     "started": t.datetime_start.isoformat() if t.datetime_start else None,
                     "completed": t.datetime_complete.isoformat() if t.datetime_complete else None})
    return json.loads(json.dumps(rows, default=str))


__all__ = ["GRACE_SECONDS", "HEARTBEAT_SECONDS", "SearchError", "Session", "directions", "redact", "run_worker",
           "sampler", "storage", "trial_rows"]
