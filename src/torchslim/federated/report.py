"""``OUT/federated.json`` (written atomically after every round) and ``OUT/federated.png``."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

from torchslim.core.io import atomic_write, atomic_write_json

JSON_NAME, PLOT_NAME = "federated.json", "federated.png"


def summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The last round's accuracies and the totals of the traffic (bytes per client, summed over rounds)."""
    if not history:
        return {}
    last = history[-1]
    return {"rounds": last["round"], "server_accuracy": last["server_accuracy"],
            "client_accuracy_mean": last["client_accuracy_mean"],
            "bytes_per_client_per_round": sum(h["bytes_per_client"] for h in history) / len(history),
            "bytes_per_client_total": sum(h["bytes_per_client"] for h in history),
            "seconds": sum(h["seconds"] for h in history)}


def record(recipe, fdata, history: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
    import flwr
    import torch

    import torchslim

    cfg = recipe.federated
    return {
        "name": recipe.name, "method": cfg.method, "complete": complete, "recipe": recipe.plain(),
        "clients": [{"client": i, "architecture": cfg.clients.architecture(i), "examples": int(len(s)),
                     "label_histogram": h} for i, (s, h) in enumerate(zip(fdata.shards, fdata.histograms(), strict=True))],
        "public_size": int(len(fdata.public)), "test_size": len(fdata.test), "num_classes": fdata.num_classes,
        "rounds": history, "final": summary(history),
        "versions": {"torchslim": getattr(torchslim, "__version__", "0.1.0"), "torch": torch.__version__,
                     "flwr": flwr.__version__, "python": platform.python_version()},
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write(out: str | Path, recipe, fdata, history: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
    """Write the JSON and the plot for ``history`` into ``out``; returns the JSON record."""
    out = Path(out)
    rec = record(recipe, fdata, history, complete)
    atomic_write_json(out / JSON_NAME, rec)
    plot({cfg_label(rec): history}, out / PLOT_NAME)
    return rec


def cfg_label(rec: dict[str, Any]) -> str:
    archs = sorted({c["architecture"] for c in rec["clients"]})
    return f"{rec['method']} ({'/'.join(archs)})"


def plot(runs: dict[str, list[dict[str, Any]]], path: str | Path) -> Path:
    """Accuracy vs round and accuracy vs cumulative bytes per client, one line pair per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_round, by_bytes) = plt.subplots(1, 2, figsize=(11, 4))
    for label, history in runs.items():
        rounds = [h["round"] for h in history]
        server = [h["server_accuracy"] for h in history]
        clients = [h["client_accuracy_mean"] for h in history]
        cumulative, total = [], 0.0
        for h in history:
            total += h["bytes_per_client"]
            cumulative.append(total / 1e6)
        line = by_round.plot(rounds, server, marker="o", label=f"{label}: server")[0]
        by_round.plot(rounds, clients, marker=".", linestyle="--", color=line.get_color(),
                      label=f"{label}: mean client")
        by_bytes.plot(cumulative, server, marker="o", color=line.get_color(), label=f"{label}: server")
    by_round.set(xlabel="round", ylabel="test accuracy (%)", title="accuracy vs round")
    by_bytes.set(xlabel="cumulative MB sent + received per client", ylabel="test accuracy (%)",
                 title="accuracy vs traffic", xscale="log")
    for ax in (by_round, by_bytes):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return Path(path)
