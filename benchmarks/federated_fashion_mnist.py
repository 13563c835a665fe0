"""Benchmark: federated distillation (fd) against Flower's FedAvg on non-IID Fashion-MNIST.

Ten clients, labels split by Dirichlet(alpha=0.3), the same number of rounds for every method, on
Flower's simulation engine. Three federations and one baseline:

* ``fd-mlp``     — fd, every client an ``mlp``, the server model an ``mlp`` distilled from the
                   clients' ensemble on the public set;
* ``fedavg-mlp`` — Flower's FedAvg over the same ``mlp`` clients (the baseline);
* ``fd-hetero``  — fd with three architectures (cnn-small, mlp, cnn-tiny) and a cnn-small server;
* ``alone``      — each fd-hetero client trained on its own shard only, as many epochs as it trains
                   in the federation.

Targets: the fd server within 2 points of FedAvg at >= 10x fewer bytes per client per round (the
mlp has 235k parameters, so FedAvg moves ~0.94 MB each way; fd moves 2,000x10 float32 logits, 80 kB);
and fd-hetero above every client alone. Bytes are the serialized payloads Flower sends, measured.

    python benchmarks/federated_fashion_mnist.py            # ~20 min on 2 cores; JSON, plot, RESULTS.md
    python benchmarks/federated_fashion_mnist.py --quick    # a minute: tiny subsets, a smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _common import add_output_args, display_path, machine_line, now, write_section

from torchslim.core.io import atomic_write_json
from torchslim.federated import data as fdata_mod
from torchslim.federated import local, report
from torchslim.federated.config import parse
from torchslim.federated.engine import run
from torchslim.measure import machine_info

NAME = "federated_fashion_mnist"
SEED = 0

# How the fd settings were chosen: fd-mlp with 5,000 training images held out of the clients and the
# public set as a validation slice (the test set untouched), 5 rounds, the server's accuracy there.
VALIDATION = """Chosen on a validation slice (5,000 training images held out of every shard and the public set;
server model accuracy after 5 rounds, mlp clients; FedAvg there: 83.76% on the 2,000-image split):

| fd setting | server acc. on validation (%) |
|---|---|
| mean ensemble, clients digest 1 epoch, 4 server epochs, 2,000 public images (the previous default) | 77.10 |
| class-reliability, 4 server epochs | 78.50 |
| class-reliability-sq, 8 server epochs | 80.66 |
| class-reliability-sq + soft_label_momentum 0.5 | 80.82 |
| class-reliability-sq + sharpened soft labels (ERA, T = 0.5) | 79.04 |
| class-reliability-entropy, 8 server epochs | 81.34 |
| class-reliability-entropy + soft_label_momentum 0.5 | 80.54 |
| class-reliability-entropy, 4,000 public images, clients digest 1 epoch | 83.76 |
| class-reliability-entropy, 4,000 public images, no digest (distill_epochs 0; chosen) | **84.72** |

On one set of final client logits (the previous default's run) the rules score on validation: mean
77.92, max-probability weights 78.66, inverse entropy 79.14, softmax(-entropy/0.1) 79.76,
class-reliability 80.20. Dropping the digest step halves the bytes
(no soft labels go down), which pays for the larger public set; the digest made the clients agree
with a weak consensus and made the ensemble less diverse.

Caveat: the public set's size changes the seeded split of the remaining images. On the 2,000-image
split, with clients still digesting 1 epoch, the test set gave fd 79.32% against FedAvg 84.38% (a run
stopped after those two federations); on the 4,000-image split above FedAvg itself ends at 80.92%.
The gap between methods moves by more than 2 points from one split to another at 5 rounds."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob of the benchmark, recorded in the JSON."""

    clients: int = 10
    alpha: float = 0.3
    rounds: int = 5
    public: int = 4000
    test_subset: int | None = 5000
    train_subset: int | None = None
    local_epochs: int = 1
    distill_epochs: int = 0
    server_epochs: int = 8
    lr: float = 0.05
    temperature: float = 3.0
    ensemble: str = "class-reliability-entropy"
    soft_label_momentum: float = 0.0
    threads: int = 1


FULL = Settings()
QUICK = Settings(clients=4, rounds=2, public=200, test_subset=300, train_subset=1400, server_epochs=1)


def recipe(name: str, s: Settings, method: str, archs: list[str], server: str) -> Any:
    return parse({
        "version": 1, "name": name, "seed": SEED, "threads": s.threads,
        "federated": {
            "method": method, "data": {"name": "fashion-mnist", "test_subset": s.test_subset,
                                       "train_subset": s.train_subset},
            "clients": {"count": s.clients, "architectures": archs}, "split": {"alpha": s.alpha},
            "public": {"size": s.public}, "server": {"architecture": server, "epochs": s.server_epochs},
            "rounds": s.rounds, "local_epochs": s.local_epochs, "distill_epochs": s.distill_epochs,
            "lr": s.lr, "temperature": s.temperature, "ensemble": s.ensemble,
            "soft_label_momentum": s.soft_label_momentum, "min_clients": max(1, s.clients - 2)}}, f"<{name}>")


def alone(rec: Any) -> list[dict[str, Any]]:
    """Each client trained only on its own shard for rounds x local_epochs epochs."""
    cfg = rec.federated
    fdata = fdata_mod.shared(cfg, rec.seed)
    rows = []
    for pid, shard in enumerate(fdata.shards):
        arch = cfg.clients.architecture(pid)
        model = local.make_model(arch, fdata.num_classes, fdata.input_shape[0], seed=rec.seed * 1000 + pid)
        local.train_ce(model, fdata.train, shard, epochs=cfg.rounds * cfg.local_epochs, lr=cfg.lr,
                       batch_size=cfg.batch_size, seed=rec.seed + pid)
        rows.append({"client": pid, "architecture": arch, "examples": len(shard),
                     "accuracy": local.accuracy(model, fdata.test_loader())})
    return rows


def ensemble_accuracy(work: Path, rec: Any) -> float | None:
    """Test accuracy of the final client models' ensemble by the recipe's rule (fd runs): the teacher
    the server distils from, read from the clients' saved last-round models (per-class reliabilities
    from their logits on the public set, as the server computes them)."""
    from torchslim.models.checkpoint import load_model

    cfg = rec.federated
    dirs = [work / "clients" / f"client-{i}" / f"round-{cfg.rounds}" for i in range(cfg.clients.count)]
    if cfg.method != "fd" or not all((d / "model.json").is_file() for d in dirs):
        return None
    fdata = fdata_mod.shared(cfg, rec.seed)
    x, y, _ = fdata.test[list(range(len(fdata.test)))]
    models = [load_model(d)[0] for d in dirs]
    public = fdata.public_images()
    probs = local.ensemble([local.logits_on(m, x) for m in models], cfg.temperature, cfg.ensemble,
                           reference=[local.logits_on(m, public) for m in models])
    return float((probs.argmax(1) == y).float().mean() * 100)


def targets(runs: dict[str, Any], solo: list[dict[str, Any]]) -> dict[str, Any]:
    """The two targets, measured: fd vs FedAvg (accuracy gap, byte ratio) and fd-hetero vs clients alone.

    The heterogeneous federation's product is its server model; it must beat the best client alone.
    Each client's own accuracy in the federation is compared with its accuracy alone as well.
    """
    fd, avg, het = (runs[k]["final"] for k in ("fd-mlp", "fedavg-mlp", "fd-hetero"))
    ratio = avg["bytes_per_client_per_round"] / fd["bytes_per_client_per_round"]
    best = max(a["accuracy"] for a in solo)
    federated = runs["fd-hetero"]["rounds"][-1]["client_accuracy"]
    gains = {str(a["client"]): federated.get(str(a["client"]), float("nan")) - a["accuracy"] for a in solo}
    return {"fd_minus_fedavg": fd["server_accuracy"] - avg["server_accuracy"], "byte_ratio": ratio,
            "fd_target_met": fd["server_accuracy"] >= avg["server_accuracy"] - 2 and ratio >= 10,
            "hetero_server": het["server_accuracy"], "hetero_clients": het["client_accuracy_mean"],
            "best_alone": best, "hetero_target_met": het["server_accuracy"] > best,
            "client_gain_over_alone": gains, "clients_improved": sum(g > 0 for g in gains.values())}


def _cause(result: dict[str, Any]) -> list[str]:
    """Why the fd target was missed, in measured numbers (nothing when it was met)."""
    t, fd = result["targets"], result["runs"]["fd-mlp"]
    ens = fd.get("ensemble_accuracy")
    if t["fd_target_met"] or ens is None:
        return []
    server = fd["final"]["server_accuracy"]
    rule = result["runs"]["fd-mlp"]["recipe"]["federated"].get("ensemble", "mean")
    return [f"  Cause: the fd server learns from the clients' ensemble ({rule}) of softened probabilities, and that "
            f"ensemble itself scores {ens:.2f}% on the test set (at alpha={result['settings']['alpha']} each client "
            f"sees few labels, so most of its probabilities are guesses); the server ends {ens - server:.2f} points "
            f"below its teacher, while FedAvg's averaged weights reach "
            f"{result['runs']['fedavg-mlp']['final']['server_accuracy']:.2f}%."]


def markdown(result: dict[str, Any]) -> str:
    runs, s = result["runs"], result["settings"]
    lines = [f"## Federated distillation on Fashion-MNIST ({s['clients']} clients, Dirichlet alpha={s['alpha']})", "",
             f"`python benchmarks/{NAME}.py` on {result['machine_line']}; {result['started']}; seed {SEED}, "
             f"{s['threads']} torch thread per process, Flower {result['flwr']} simulation engine. "
             f"{result['note']}", "",
             "| federation | clients | server model | server acc. (%) | mean client acc. (%) | "
             "clients' ensemble acc. (%) | bytes / client / round | wall-clock (s) |", "|---|---|---|---|---|---|---|---|"]
    for name in sorted(runs, key=lambda k: ["fd-mlp", "fedavg-mlp", "fd-hetero"].index(k)):
        r, ens = runs[name], runs[name].get("ensemble_accuracy")
        f = r["final"]
        archs = "/".join(sorted({c["architecture"] for c in r["clients"]}))
        server = r["recipe"]["federated"]["server"]["architecture"] if r["method"] == "fd" else archs
        lines.append(f"| {name} | {archs} | {server} | {f['server_accuracy']:.2f} | {f['client_accuracy_mean']:.2f} | "
                     f"{'—' if ens is None else f'{ens:.2f}'} | {f['bytes_per_client_per_round'] / 1e3:,.1f} kB | "
                     f"{r['wall_seconds']:.0f} |")
    best_alone = max(a["accuracy"] for a in result["alone"])
    t = result["targets"]
    lines += ["", f"Each fd-hetero client alone on its own shard: best {best_alone:.2f}%, mean "
              f"{sum(a['accuracy'] for a in result['alone']) / len(result['alone']):.2f}%.", "",
              f"- fd server vs FedAvg: {t['fd_minus_fedavg']:+.2f} points at {t['byte_ratio']:.1f}x fewer bytes per "
              f"client per round — target (within 2 points, >= 10x): **{'met' if t['fd_target_met'] else 'missed'}**.",
              *_cause(result),
              f"- fd-hetero server model {t['hetero_server']:.2f}% vs the best client alone {best_alone:.2f}% — "
              f"target (beat every client alone): **{'met' if t['hetero_target_met'] else 'missed'}**. Inside the "
              f"federation {t['clients_improved']} of {len(t['client_gain_over_alone'])} clients beat their own "
              f"accuracy alone (mean client {t['hetero_clients']:.2f}%).",
              "", VALIDATION, "", f"Plot: `{result['plot']}`; JSON: `{result['json']}`."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny subsets: a smoke test, not a result")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-federated"), help="federation outputs")
    add_output_args(parser, NAME)
    parser.add_argument("--from-json", action="store_true",
                        help="recompute the targets, plot and Markdown from the JSON at --out (no training)")
    args = parser.parse_args(argv)
    if args.from_json:
        return rewrite(args)
    s = QUICK if args.quick else FULL
    torch.set_num_threads(s.threads)
    started, t0 = now(), time.perf_counter()
    hetero = ["cnn-small", "mlp", "cnn-tiny"]
    plans = {"fd-mlp": recipe("fd-mlp", s, "fd", ["mlp"], "mlp"),
             "fedavg-mlp": recipe("fedavg-mlp", s, "fedavg", ["mlp"], "mlp"),
             "fd-hetero": recipe("fd-hetero", s, "fd", hetero, "cnn-small")}
    runs = {}
    for name, rec in plans.items():
        began = time.perf_counter()
        runs[name] = {**run(rec, args.work / name), "wall_seconds": 0.0}
        runs[name]["wall_seconds"] = time.perf_counter() - began
        print(f"{name}: {runs[name]['final']}", flush=True)
    solo = alone(plans["fd-hetero"])
    for name, rec in plans.items():
        runs[name]["ensemble_accuracy"] = ensemble_accuracy(args.work / name, rec)
    plot_path = args.out.with_suffix(".png")
    report.plot({k: r["rounds"] for k, r in runs.items()}, plot_path)
    import flwr

    result = {"name": NAME, "quick": args.quick, "started": started, "seconds": time.perf_counter() - t0,
              "seed": SEED, "settings": dataclasses.asdict(s), "machine": machine_info(), "flwr": flwr.__version__,
              "note": "The machine was shared with other jobs while this ran (2 cores); wall-clock is indicative only.",
              "runs": runs, "alone": solo, "targets": targets(runs, solo),
              "plot": display_path(plot_path), "json": display_path(args.out)}
    result["machine_line"] = machine_line(result["machine"])
    atomic_write_json(args.out, result)
    if not args.quick:
        write_section(args.results_md, NAME, markdown(result))
    print(markdown(result))
    return 0


def rewrite(args: argparse.Namespace) -> int:
    """Re-derive targets, plot and the RESULTS.md section from a finished run's JSON."""
    import json

    result = json.loads(args.out.read_text(encoding="utf-8"))
    for name, run_record in result["runs"].items():
        if "ensemble_accuracy" not in run_record and (args.work / name).is_dir():
            run_record["ensemble_accuracy"] = ensemble_accuracy(args.work / name, parse(run_record["recipe"]))
    result["targets"] = targets(result["runs"], result["alone"])
    report.plot({k: r["rounds"] for k, r in result["runs"].items()}, args.out.with_suffix(".png"))
    atomic_write_json(args.out, result)
    if not result["quick"]:
        write_section(args.results_md, NAME, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
