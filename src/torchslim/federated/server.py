"""The ServerApp's loop: rounds of federated distillation (fd) or Flower's FedAvg, checkpointed.

fd, round r (FedMD/FedDF style): every client digests the ensemble's soft labels from round r-1
(unless ``distill_epochs`` is 0: then none are sent), trains on its shard and sends its logits on
the public set; the server checks each reply (shape, dtype, finiteness, no other records), combines
the clients' softened probabilities into the new soft labels (``federated.ensemble``: the mean, or
per-class reliability weights; optionally mixed with the last round's, ``soft_label_momentum``), and
distils its own model from them on the public set.

fedavg, round r: Flower's ``FedAvg`` strategy configures the round and aggregates the weights.

A client that fails or does not answer within ``round_timeout`` is logged and left out; the round
counts while at least ``min_clients`` answered validly. After every round the server state is
checkpointed atomically and ``federated.json``/``federated.png`` are rewritten.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.federated import data, local, report, state, wire
from torchslim.federated.config import FederatedRecipe

log = logging.getLogger("torchslim.federated")


class FederationError(TorchSlimError):
    """A round that cannot complete (too few valid replies, no clients); the last round is kept."""


def wait_for_nodes(grid: Grid, recipe: FederatedRecipe) -> list[int]:
    """Node ids once every client joined, or at least ``min_clients`` after ``join_timeout`` s."""
    cfg = recipe.federated
    deadline = time.monotonic() + cfg.join_timeout
    nodes = list(grid.get_node_ids())
    while len(nodes) < cfg.clients.count and time.monotonic() < deadline:
        time.sleep(0.2)
        nodes = list(grid.get_node_ids())
    if len(nodes) < cfg.min_clients:
        raise FederationError(f"only {len(nodes)} client(s) connected within {cfg.join_timeout:g} s; "
                              f"the recipe needs at least min_clients = {cfg.min_clients}.")
    return sorted(nodes)


class Server:
    """One federation's server side: data it holds (public + test set), models and state."""

    def __init__(self, grid: Grid, recipe: FederatedRecipe, out: Path, client_state_dir: str | None = None):
        self.grid, self.recipe, self.cfg, self.out = grid, recipe, recipe.federated, Path(out)
        if recipe.threads:
            torch.set_num_threads(recipe.threads)  # the recipe's threads hold for the server's process too
        self.plain = recipe.plain()
        self.data = data.shared(self.cfg, recipe.seed)
        self.public = self.data.public_images()
        self.client_state_dir = client_state_dir
        fp = state.fingerprint(self.plain)
        self.state = state.load(self.out / "checkpoint", fp) or state.ServerState(fp)
        self.model = self._model()

    def _model(self) -> nn.Module:
        arch = self.cfg.server.architecture if self.cfg.method == "fd" else self.cfg.clients.architectures[0]
        model = local.make_model(arch, self.data.num_classes, self.data.input_shape[0], seed=self.recipe.seed)
        saved = self.state.prefixed("model.")
        if saved:
            model.load_state_dict(saved)
        return model

    def run(self) -> dict[str, Any]:
        """Rounds from the last completed one to ``rounds``; returns the output record."""
        if self.state.round:
            log.info("resuming after round %d of %d (state in %s)", self.state.round, self.cfg.rounds,
                     self.out / "checkpoint")
        if self.state.round < self.cfg.rounds:
            nodes = wait_for_nodes(self.grid, self.recipe)
            log.info("%d client(s) connected: method %s, %d round(s)", len(nodes), self.cfg.method, self.cfg.rounds)
        for r in range(self.state.round + 1, self.cfg.rounds + 1):
            started = time.perf_counter()
            entry = self._fd_round(r) if self.cfg.method == "fd" else self._fedavg_round(r)
            entry["seconds"] = time.perf_counter() - started
            self.state.history.append(entry)
            self.state.round = r
            self.state.tensors.update({f"model.{k}": v for k, v in self.model.state_dict().items()})
            state.save(self.out / "checkpoint", self.state)
            report.write(self.out, self.recipe, self.data, self.state.history, complete=r == self.cfg.rounds)
            log.info("round %d/%d: server %.2f%%, mean client %.2f%%, %d answered, %.1f kB/client sent+received, "
                     "%.1f s", r, self.cfg.rounds, entry["server_accuracy"], entry["client_accuracy_mean"],
                     len(entry["answered"]), entry["bytes_per_client"] / 1e3, entry["seconds"])
        return self.finish()

    def finish(self) -> dict[str, Any]:
        from torchslim.models.checkpoint import save_model

        record = report.write(self.out, self.recipe, self.data, self.state.history, complete=True)
        save_model(self.model, self.out / "model", {
            "federated": {"method": self.cfg.method, "rounds": self.cfg.rounds, "recipe": self.plain},
            "metrics": {"test": {"accuracy": record["final"]["server_accuracy"]}},
            # what `torchslim eval OUT/model` loads to measure it (the dataset's full test split)
            "data": {"name": self.cfg.data.name,
                     "kwargs": {**self.cfg.data.options, **({"root": self.cfg.data.root} if self.cfg.data.root else {})}}})
        return record

    # -- one round of each method ---------------------------------------------------------------

    def _task_config(self, r: int) -> ConfigRecord:
        config = wire.task_content(self.plain, r).config_records[wire.CONFIG]
        if self.client_state_dir:
            config["client-state-dir"] = self.client_state_dir
        return config

    def _fd_round(self, r: int) -> dict[str, Any]:
        extra = {}
        if "soft_labels" in self.state.tensors and self.cfg.distill_epochs:  # nothing to digest: nothing sent
            extra[wire.SOFT_LABELS] = wire.soft_labels_record(self.state.tensors["soft_labels"])
        content = RecordDict({wire.CONFIG: self._task_config(r), **extra})
        nodes = list(self.grid.get_node_ids())
        messages = [Message(content, dst_node_id=n, message_type=MessageType.TRAIN) for n in nodes]
        replies = list(self.grid.send_and_receive(messages, timeout=self.cfg.round_timeout))
        size = (len(self.public), self.data.num_classes)
        accepted, dropped = self._accept(r, nodes, replies, lambda m: wire.check_logits_reply(m, *size))
        probs = local.ensemble([logits for logits, _ in accepted.values()], self.cfg.temperature, self.cfg.ensemble)
        previous = self.state.tensors.get("soft_labels")
        if previous is not None and self.cfg.soft_label_momentum:  # damps the round-to-round swing of the ensemble
            probs = self.cfg.soft_label_momentum * previous + (1 - self.cfg.soft_label_momentum) * probs
        server = self.cfg.server
        local.distil(self.model, self.public, probs, temperature=self.cfg.temperature, epochs=server.epochs,
                     lr=server.lr, batch_size=self.cfg.batch_size, seed=self.recipe.seed + r,
                     where=f"server, round {r}")
        self.state.tensors["soft_labels"] = probs
        return self._entry(r, replies, accepted, dropped, wire.payload_bytes(content))

    def _fedavg_round(self, r: int) -> dict[str, Any]:
        strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=self.cfg.min_clients,
                          min_available_nodes=self.cfg.min_clients, arrayrecord_key=wire.ARRAYS,
                          configrecord_key=wire.CONFIG)
        arrays = ArrayRecord(self.model.state_dict())
        messages = list(strategy.configure_train(r, arrays, self._task_config(r), self.grid))
        nodes = [m.metadata.dst_node_id for m in messages]
        replies = list(self.grid.send_and_receive(messages, timeout=self.cfg.round_timeout))
        accepted, dropped = self._accept(r, nodes, replies, lambda m: wire.check_weights_reply(m, arrays))
        aggregated, _ = strategy.aggregate_train(r, [m for _, m in accepted.values()])
        if aggregated is None:
            raise FederationError(f"round {r}: FedAvg aggregated nothing.")
        self.model.load_state_dict(aggregated.to_torch_state_dict())
        sent = wire.payload_bytes(messages[0].content) if messages else 0
        return self._entry(r, replies, accepted, dropped, sent)

    # -- replies --------------------------------------------------------------------------------

    def _accept(self, r: int, nodes: list[int], replies: list[Message], check) -> tuple[dict, list[dict[str, Any]]]:
        """(valid replies by node id, the clients left out); failures, malformed replies and silence
        are logged and left out.

        Raises:
            FederationError: fewer than ``min_clients`` valid replies.
        """
        accepted: dict[int, tuple[Any, Message]] = {}
        dropped: list[dict[str, Any]] = []
        for reply in replies:
            node = reply.metadata.src_node_id
            try:
                value = check(reply)
                pid = int(reply.content.metric_records[wire.METRICS]["partition-id"])  # checked: an int
                if pid in {self.state.clients.get(str(n)) for n in accepted}:
                    raise wire.MalformedReply(f"partition-id {pid} already answered this round (two SuperNodes "
                                              "started with the same --node-config partition-id?)")
                accepted[node] = (value, reply)
                self.state.clients[str(node)] = pid
            except wire.MalformedReply as exc:
                kind = "failed" if reply.has_error() else "rejected"
                log.warning("round %d: %s %s: %s", r, kind, wire.describe(reply, self.state.clients.get(str(node))), exc)
                dropped.append({"node": node, "client": wire.client_of(reply, self.state.clients.get(str(node))),
                                      "why": kind, "detail": str(exc)[:500]})
        for node in sorted(set(nodes) - {m.metadata.src_node_id for m in replies}):
            log.warning("round %d: dropped node %d (client %s): no reply within %g s", r, node,
                        self.state.clients.get(str(node), "?"), self.cfg.round_timeout)
            dropped.append({"node": node, "client": self.state.clients.get(str(node)), "why": "no reply"})
        if len(accepted) < self.cfg.min_clients:
            raise FederationError(
                f"round {r}: only {len(accepted)} of {len(nodes)} clients sent a valid reply; min_clients is "
                f"{self.cfg.min_clients}. Dropped: {dropped}. The state after round {r - 1} is kept; "
                "run the same command again to resume.")
        return accepted, dropped

    def _entry(self, r: int, replies: list[Message], accepted: dict, dropped: list, sent: int) -> dict[str, Any]:
        """The round's record: accuracies, who answered and who was left out, bytes each way."""
        received = {str(self.state.clients.get(str(m.metadata.src_node_id), m.metadata.src_node_id)):
                    wire.payload_bytes(m.content) for m in replies if m.has_content()}
        metrics = {n: m.content.metric_records[wire.METRICS] for n, (_, m) in accepted.items()}
        client_acc = {str(int(v["partition-id"])): float(v["test-accuracy"]) for v in metrics.values()}
        per_client = sent + (sum(received.values()) / max(len(received), 1))
        return {"round": r, "server_accuracy": local.accuracy(self.model, self.data.test_loader()),
                "client_accuracy": client_acc,
                "client_accuracy_mean": sum(client_acc.values()) / len(client_acc),
                "answered": sorted(int(k) for k in client_acc), "dropped": dropped,
                "bytes_sent_per_client": sent, "bytes_received": received, "bytes_per_client": per_client}
