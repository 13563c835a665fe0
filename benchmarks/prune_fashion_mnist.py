"""Benchmark: pruning the shipped Fashion-MNIST teacher — channels (the model shrinks) and magnitude
sparsity (the same dense model with zeros).

Rows, all from the shipped teacher (resnet20, seed 0, whole test set for every accuracy):

1. **screen**: every importance criterion at channel ratio 0.5, accuracy right after pruning
   (BatchNorm statistics re-estimated on 50 training batches) and after a short fine-tune;
2. **ratios**: the two best criteria (``random`` is the control, never chosen) at 0.3 and 0.7;
3. **compare**: the best criterion at 0.5 — one-shot + fine-tune, one-shot + KD and iterative +
   KD, every one with the same number of recovery epochs;
4. **headline**: the best criterion at 0.5 with KD recovery and the most epochs; it must reach a
   batch-64 latency at least 2.5x lower than the teacher's and a test accuracy within 0.5 points;
5. **sparse**: global magnitude sparsity 50/80/90% (dense kernels: no speed-up expected).

Every row is timed (torch eager, batch 1 and 64, 1 thread, median of interleaved rounds) against
the unpruned teacher in the same ``measure_many`` call, twice: as trained, and with BatchNorm folded
into the convolutions of both models (``torchslim.export.fold_batchnorm``, how an eager model ships).

    python benchmarks/prune_fashion_mnist.py                         # about 35 min on 2 idle cores
    python benchmarks/prune_fashion_mnist.py --headline-epochs 8     # more recovery for the headline
    python benchmarks/prune_fashion_mnist.py --quick                 # seconds: synthetic data, stand-in

The JSON is rewritten after every row; started again with the same settings, the script skips the
rows already recorded there, so a killed benchmark resumes (``--restart`` discards them). Each
row's model is saved under ``--work``; ``--retime`` times every saved row again (on an idle machine)
without retraining.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _common import (
    REPO,
    comma_separated,
    display_path,
    new_parser,
    now,
    parse,
    previous_record,
    record_header,
    report_written,
    torch_threads,
    write_section,
)
from _common import settings_from as common_settings
from _prune_report import render_section, table_markdown
from torch import nn

from torchslim import data, models, prune
from torchslim.core.errors import TorchSlimError
from torchslim.distill import TeacherCache
from torchslim.distill.cache import weights_hash
from torchslim.export import fold_batchnorm
from torchslim.measure import count_macs, machine_info, measure_many
from torchslim.train import evaluate, fit

NAME = "prune_fashion_mnist"
# Recovery training: a gentle cosine from lr 0.02 (the weights are already good), channels-last as
# the teacher was trained.
FIT = {"optimizer": "sgd", "lr": 0.02, "schedule": "cosine", "weight_decay": 5e-4, "channels_last": True}
NUMBERS = comma_separated(float, "numbers")  # --ratios, --sparsities
TEACHER_EPOCH_SECONDS = 160.0  # one full-data teacher epoch, 2 threads, idle 2-core machine (estimate only)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob of a run, recorded in the JSON."""

    criteria: tuple[str, ...] = tuple(prune.IMPORTANCE.list())
    screen_ratio: float = 0.5
    screen_epochs: int = 1
    top: int = 2
    ratios: tuple[float, ...] = (0.3, 0.7)
    compare_epochs: int = 2
    iterative_steps: int = 2
    headline_epochs: int = 6
    sparsities: tuple[float, ...] = (0.5, 0.8, 0.9)
    sparse_epochs: int = 0
    threads: int = 2  # training
    batch_sizes: tuple[int, ...] = (1, 64)  # timing, 1 thread
    # Many short rounds (3 calls each) interleave the four timed models call by call, so a slow
    # patch of the machine hits them alike; fewer, longer rounds gave ratios spread over ±15 %.
    rounds: int = 20
    latency: dict = dataclasses.field(default_factory=lambda: {"warmup": 1, "repeats": 3})
    batch_size: int = 128
    bn_batches: int = 50
    seed: int = 0
    target_speedup: float = 2.5
    target_points: float = 0.5


FULL = Settings()
# A smoke test of the script in seconds, not a result.
QUICK = Settings(screen_epochs=1, compare_epochs=2, headline_epochs=2, threads=1, batch_sizes=(1, 8), rounds=1,
                 latency={"warmup": 1, "min_seconds": 0.0, "min_repeats": 3}, batch_size=32, bn_batches=2)


@dataclasses.dataclass(frozen=True)
class Row:
    """One pruned (or sparsified) model: how it is made."""

    id: str
    group: str
    criterion: str | None = None
    ratio: float | None = None
    steps: int = 1
    recover: str = "finetune"
    epochs: int = 0
    sparsity: float | None = None

    def spec(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def screen_rows(s: Settings) -> list[Row]:
    return [Row(f"screen:{c}", "screen", c, s.screen_ratio, epochs=s.screen_epochs) for c in s.criteria]


def best_criteria(rows: list[dict], s: Settings) -> list[str]:
    """Criteria of the screen ranked by accuracy after recovery, then right after pruning; the
    ``random`` control is never chosen."""
    screened = [r for r in rows if r["group"] == "screen" and r["criterion"] != "random"]
    screened.sort(key=lambda r: (r["accuracy"], r["accuracy_pruned"]), reverse=True)
    # A criterion that kept exactly the channels of a better one (LAMP ranks each layer as L2 does)
    # would only repeat its rows: the next distinct one is taken instead.
    seen: set[str] = set()
    distinct = []
    for r in screened:
        if r.get("kept_channels_sha256") not in seen:
            distinct.append(r["criterion"])
        seen.add(r.get("kept_channels_sha256"))
    return distinct + [r["criterion"] for r in screened if r["criterion"] not in distinct]


def later_rows(best: list[str], s: Settings) -> list[Row]:
    """Ratios for the best two, the recovery comparison and the headline for the best one."""
    rows = [Row(f"ratio:{c}:{r}", "ratio", c, r, epochs=s.screen_epochs) for c in best[:s.top] for r in s.ratios]
    if not best:
        return rows
    c, r, n = best[0], s.screen_ratio, s.compare_epochs
    rows += [Row("compare:oneshot-finetune", "compare", c, r, 1, "finetune", n),
             Row("compare:oneshot-kd", "compare", c, r, 1, "kd", n),
             Row("compare:iterative-kd", "compare", c, r, s.iterative_steps, "kd", n),
             Row("headline", "headline", c, r, 1, "kd", s.headline_epochs)]
    return rows


def sparse_rows(s: Settings) -> list[Row]:
    return [Row(f"sparse:{p}", "sparse", recover="finetune", epochs=s.sparse_epochs, sparsity=p) for p in s.sparsities]


def estimate_seconds(rows: list[Row], s: Settings, epoch_seconds: float) -> float:
    """Rough seconds for ``rows``: epochs scale with the MACs kept, KD adds a teacher pass per epoch
    (once, from the shared cache), and every row pays evaluations and timing."""
    total = 0.0
    for row in rows:
        kept = 1.0 if row.ratio is None else max(0.25, 1.3 * (1 - row.ratio) ** 2)
        total += row.epochs * epoch_seconds * kept + 40.0  # + prune, BN, evaluate, time
    kd = max([r.epochs for r in rows if r.recover == "kd"], default=0)
    return total + kd * 0.3 * epoch_seconds


# -- running one row -------------------------------------------------------------------------------

def load_data(quick: bool, s: Settings) -> data.DataBundle:
    if quick:
        return data.load("synthetic", batch_size=s.batch_size, num_classes=10, shape=(1, 28, 28), train_size=256,
                         val_size=0, test_size=128, augment=True, seed=s.seed)
    return data.load("fashion-mnist", batch_size=s.batch_size, seed=s.seed)


def load_teacher(quick: bool, s: Settings, bundle: data.DataBundle) -> tuple[nn.Module, str]:
    if quick:  # a stand-in trained for one epoch; the shipped weights are not needed
        torch.manual_seed(s.seed)
        model = models.create("resnet8")
        fit(model, bundle.train, 1, progress=False, threads=s.threads, seed=s.seed, lr=0.05)
        return model.eval(), "resnet8 trained 1 epoch on the synthetic data"
    from torchslim import zoo

    return zoo.load("fashion-mnist-teacher")[0].eval(), "fashion-mnist-teacher"


def make_model(row: Row, teacher: nn.Module, bundle: data.DataBundle, s: Settings,
               cache: TeacherCache | None) -> tuple[nn.Module, dict[str, Any]]:
    """The row's pruned or sparsified model, and what its record says."""
    if row.sparsity is not None:
        model, record = prune.sparsify(teacher, row.sparsity, scope="global", data=bundle, epochs=row.epochs,
                                       threads=s.threads, seed=s.seed, **FIT)
        return model, {"accuracy_pruned": record.accuracy_pruned,
                       "accuracy": record.accuracy_after, "sparsity_record": record.to_dict()}
    model, record = prune.channels(
        teacher, bundle.example_batch(2), row.ratio, row.criterion, iterations=row.steps,
        recover=row.recover if row.epochs else "none", epochs=row.epochs, data=bundle, threads=s.threads,
        seed=s.seed, bn_batches=s.bn_batches, teacher_cache=cache, **FIT)
    final = record.history[-1]
    kept = json.dumps([op.model_dump() for op in record.steps.ops], sort_keys=True).encode()
    return model, {"accuracy_pruned": record.history[0].accuracy_pruned,
                   "kept_channels_sha256": hashlib.sha256(kept).hexdigest()[:16],
                   "accuracy": final.accuracy_recovered if final.accuracy_recovered is not None else final.accuracy_pruned,
                   "record": record.model_dump(mode="json", exclude={"steps"})}


def time_row(model: nn.Module, teacher: nn.Module, example: torch.Tensor, s: Settings) -> dict[str, Any]:
    """Latency of the row's model and the teacher, as trained and with BatchNorm folded into the
    convolutions (how an eager model ships), all four interleaved in one measurement."""
    for m in (model, teacher):
        m.to(memory_format=torch.contiguous_format).eval()
    timed = {"teacher": teacher, "model": model, "teacher-folded": fold_batchnorm(teacher),
             "model-folded": fold_batchnorm(model)}
    records = {r.name: r for r in measure_many(timed, example_input=example, batch_sizes=s.batch_sizes,
                                               threads=(1,), rounds=s.rounds, latency_kwargs=s.latency)}
    out = {"parameters": records["model"].parameters, "macs": records["model"].macs, "bytes": records["model"].bytes,
           "notes": [n for r in records.values() for n in r.notes]}
    for suffix in ("", "_folded"):
        base, row = records["teacher" + suffix.replace("_", "-")], records["model" + suffix.replace("_", "-")]
        out["teacher_latency" + suffix] = [x.model_dump() for x in base.latency]
        out["latency" + suffix] = [x.model_dump() for x in row.latency]
        out["speedup" + suffix] = {str(a.batch_size): a.median_ms / b.median_ms
                                   for a, b in zip(base.latency, row.latency, strict=True)}
    return out


def run_row(row: Row, teacher: nn.Module, bundle: data.DataBundle, s: Settings,
            cache: TeacherCache | None, model_dir: Path | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    model, made = make_model(row, teacher, bundle, s, cache)
    if model_dir is not None:
        from torchslim.models.checkpoint import save_model

        save_model(model, model_dir, {"benchmark": NAME, "row": row.spec()})
    timed = time_row(model, copy.deepcopy(teacher), bundle.example_batch(2), s)
    return {**row.spec(), "spec": row.spec(), "date": now(), **made, **timed,
            "seconds": time.perf_counter() - started}


# -- the benchmark ---------------------------------------------------------------------------------

def previous(path, config: dict, restart: bool) -> list[dict]:
    """Rows recorded in ``path`` by an earlier run with the same settings."""
    return list((previous_record(path, config, restart) or {}).get("rows", []))


class Run:
    """The benchmark's state: the JSON record, rewritten after every row."""

    def __init__(self, args: argparse.Namespace, s: Settings) -> None:
        self.args, self.s = args, s
        self.bundle = load_data(args.quick, s)
        self.teacher, source = load_teacher(args.quick, s, self.bundle)
        self.config = json.loads(json.dumps({
            "quick": args.quick, "data": self.bundle.name, "teacher": weights_hash(self.teacher), "fit": FIT,
            "settings": dataclasses.asdict(s)}))
        rows = previous(args.out, self.config, args.restart)
        self.done = {r["id"]: r for r in rows}
        self.result: dict[str, Any] = {
            **record_header(NAME, args), "config": self.config, "machine": machine_info(),
            "teacher": {"source": source, "parameters": models.num_parameters(self.teacher),
                        "macs": count_macs(self.teacher, self.bundle.example_batch(2)),
                        "test": evaluate(self.teacher, self.bundle.test)},
            "rows": rows}
        self._cache: TeacherCache | None = None

    def cache(self) -> TeacherCache:
        """One cache of the teacher's logits, shared by every KD row (as many draws as the longest)."""
        if self._cache is None:
            draws = max(self.s.compare_epochs, self.s.headline_epochs, 1)
            print(f"caching the teacher's logits over {draws} augmented epoch(s) ...")
            self._cache = TeacherCache(self.teacher, self.bundle.train, draws=draws, log=lambda *_: None)
        return self._cache

    def run(self, row: Row) -> dict[str, Any]:
        recorded = self.done.get(row.id)
        if recorded is not None and recorded.get("spec") == row.spec():
            return recorded
        cache = self.cache() if row.recover == "kd" and row.epochs else None
        record = run_row(row, self.teacher, self.bundle, self.s, cache, self.model_dir(row.id))
        self.result["rows"] = [r for r in self.result["rows"] if r["id"] != row.id] + [record]
        self.done[row.id] = record
        self.save()
        b64 = record["speedup"].get(str(max(self.s.batch_sizes)))
        b64f = record["speedup_folded"].get(str(max(self.s.batch_sizes)))
        print(f"{row.id}: {record['accuracy']:.2f}% (right after pruning: {_fmt(record['accuracy_pruned'])}), "
              f"{record['parameters']:,} parameters, batch-{max(self.s.batch_sizes)} speed-up {b64:.2f}x "
              f"(BN folded: {b64f:.2f}x), "
              f"{record['seconds']:.0f} s")
        return record

    def model_dir(self, row_id: str) -> Path:
        """Where a row's model is saved (safetensors + applied steps), for ``--retime``."""
        return Path(self.args.work) / row_id.replace(":", "-")

    def retime(self) -> None:
        """Time every recorded row again from its saved model, all under the same conditions."""
        from torchslim.models.checkpoint import load_model

        example = self.bundle.example_batch(2)
        for record in self.result["rows"]:
            directory = self.model_dir(record["id"])
            if not (directory / "model.json").is_file():
                print(f"{record['id']}: no saved model in {display_path(directory)}; its timing is kept")
                continue
            model, _ = load_model(directory)
            record.update(time_row(model.eval(), copy.deepcopy(self.teacher), example, self.s), retimed=now())
            self.save()
            print(f"{record['id']}: batch-{max(self.s.batch_sizes)} speed-up "
                  f"{record['speedup'][str(max(self.s.batch_sizes))]:.2f}x "
                  f"(BN folded: {record['speedup_folded'][str(max(self.s.batch_sizes))]:.2f}x)")

    def save(self) -> None:
        from torchslim.core.io import atomic_write_json

        atomic_write_json(self.args.out, self.result)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}%"


def run_benchmark(args: argparse.Namespace, s: Settings) -> int:
    started = time.perf_counter()
    state = Run(args, s)
    if state.done:
        print(f"resuming: {len(state.done)} row(s) already in {display_path(args.out)}")
    if not args.quick:
        guess = screen_rows(s) + later_rows(["l2", "l1"], s) + sparse_rows(s)  # any two criteria cost alike
        todo = [r for r in guess if r.id not in state.done]
        print(f"estimated time left: ~{estimate_seconds(todo, s, TEACHER_EPOCH_SECONDS) / 60:.0f} min "
              f"({TEACHER_EPOCH_SECONDS:g} s per teacher epoch at 2 threads assumed)")
    state.save()
    if args.retime:
        state.retime()
    screened = [state.run(row) for row in screen_rows(s)]
    best = best_criteria(screened, s)
    state.result["best"] = best
    for row in later_rows(best, s) + sparse_rows(s):
        state.run(row)
    state.result["seconds"] = time.perf_counter() - started
    state.save()
    write_section(args.results_md, NAME, render_section(state.result, s, args.quick))
    print(table_markdown(state.result, s, "screen"))
    report_written(NAME, args.out, args.results_md)
    return 0


def _criteria(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for n in names:
        if n not in prune.IMPORTANCE:
            raise argparse.ArgumentTypeError(str(prune.PruneError(f"unknown criterion {n!r}; valid: "
                                                                  f"{', '.join(prune.IMPORTANCE.list())}")))
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = new_parser(__doc__, "synthetic data, a stand-in teacher: a smoke test")
    parser.add_argument("--criteria", type=_criteria, help="comma-separated criteria to screen (default: all)")
    parser.add_argument("--screen-epochs", type=int, help=f"fine-tune epochs of screen and ratio rows "
                        f"(default {FULL.screen_epochs})")
    parser.add_argument("--compare-epochs", type=int, help=f"recovery epochs of each compare row "
                        f"(default {FULL.compare_epochs})")
    parser.add_argument("--iterative-steps", type=int, help=f"steps of the iterative row (default {FULL.iterative_steps})")
    parser.add_argument("--headline-epochs", type=int, help=f"KD epochs of the headline (default {FULL.headline_epochs})")
    parser.add_argument("--ratios", type=NUMBERS, help="ratios for the best two criteria (default 0.3,0.7)")
    parser.add_argument("--sparsities", type=NUMBERS, help="unstructured sparsities (default 0.5,0.8,0.9)")
    parser.add_argument("--sparse-epochs", type=int, help=f"fine-tune epochs of sparse rows (default {FULL.sparse_epochs})")
    parser.add_argument("--threads", type=int, help=f"training threads (default {FULL.threads}); timing uses 1")
    parser.add_argument("--restart", action="store_true", help="ignore the rows recorded in --out")
    parser.add_argument("--retime", action="store_true",
                        help="time every recorded row again from its saved model (on an idle machine), then go on")
    parser.add_argument("--work", default=str(REPO / "runs" / "bench" / NAME),
                        help="where each row's model is saved (default: %(default)s)")
    return parse(parser, NAME, argv)


def settings_from(args: argparse.Namespace) -> Settings:
    s = common_settings(args, QUICK, FULL, ("criteria", "screen_epochs", "compare_epochs", "iterative_steps",
                                            "headline_epochs", "ratios", "sparsities", "sparse_epochs", "threads"))
    counts = (s.screen_epochs, s.compare_epochs, s.headline_epochs, s.sparse_epochs)
    if min(counts) < 0 or min(s.iterative_steps, s.threads) < 1 or not s.criteria:
        raise TorchSlimError(f"epochs must be >= 0, iterative steps and threads >= 1 and criteria non-empty; got "
                             f"epochs {counts}, steps {s.iterative_steps}, threads {s.threads}, criteria {s.criteria}.")
    return s


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    with torch_threads(settings.threads):
        return run_benchmark(args, settings)


if __name__ == "__main__":
    sys.exit(main())
