"""`torchslim federated`: run a federated recipe (distillation by logits, or FedAvg) on Flower."""

from __future__ import annotations

import argparse
from typing import Any

from torchslim.cli.common import console, positive_int
from torchslim.core.errors import TorchSlimError

EXAMPLE = """example:
  torchslim federated recipes/federated-fashion-mnist.yaml --out runs/federated

deployment: start `flower-superlink --insecure` and, on each client machine,
  flower-supernode --insecure --superlink HOST:9091 --node-config "partition-id=I num-partitions=N"
then
  torchslim federated RECIPE --out DIR --engine deployment --superlink HOST:9091"""


def add_parser(sub: Any) -> None:
    fed = sub.add_parser(
        "federated", help="federated distillation (or FedAvg) across clients on Flower",
        description="Run the recipe's `federated:` section: clients with private non-IID shards share only "
                    "their logits on a public set (method fd; or their weights, method fedavg); the server "
                    "distils its own model from the clients' ensemble. Writes OUT/federated.json (per round: "
                    "accuracies, bytes per client, wall-clock), OUT/federated.png, OUT/federated.log and "
                    "OUT/model (a torchslim checkpoint for eval/prune/quantize). After an interruption the "
                    "same command resumes from the last completed round.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    fed.add_argument("recipe", metavar="RECIPE",
                     help="a YAML recipe with a `federated:` section (see recipes/federated-fashion-mnist.yaml)")
    fed.add_argument("--out", required=True, help="output directory")
    fed.add_argument("--engine", default="simulation", choices=["simulation", "deployment"],
                     help="simulation: Flower's simulation engine on this machine (default); deployment: a "
                          "running SuperLink and SuperNodes, via `flwr run`")
    fed.add_argument("--superlink", default="127.0.0.1:9091",
                     help="HOST:PORT of the SuperLink (deployment engine; default %(default)s)")
    fed.add_argument("--timeout", type=positive_int, default=None,
                     help="seconds to wait for a deployed run to finish (default: no limit)")
    fed.add_argument("--force", action="store_true",
                     help="OUT holds a run (finished, or of another recipe): discard its state and start afresh from "
                          "round 1")
    fed.set_defaults(func=cmd_federated)


def cmd_federated(args: argparse.Namespace) -> int:
    try:
        from torchslim.federated import run
    except ImportError as exc:  # flwr is an optional extra
        raise TorchSlimError(f"torchslim federated needs Flower ({exc}); install it with "
                             "`pip install 'torchslim[federated]'`.") from None
    record = run(args.recipe, args.out, engine=args.engine, superlink=args.superlink, restart=args.force,
                 timeout=args.timeout)
    final = record["final"]
    console.print(f"{record['method']}: server model {final['server_accuracy']:.2f}%, mean client "
                  f"{final['client_accuracy_mean']:.2f}% after {final['rounds']} round(s); "
                  f"{final['bytes_per_client_per_round'] / 1e3:,.1f} kB per client per round. "
                  f"Wrote {args.out}/federated.json, federated.png and model/.", highlight=False)
    return 0
