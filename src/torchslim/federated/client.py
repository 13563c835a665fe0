"""The Flower ClientApp: one client's round of federated distillation or FedAvg.

A client learns who it is from its node config (``partition-id``, ``num-partitions``: set by the
simulation engine, or by ``flower-supernode --node-config``), derives its shard from the recipe the
server sends, and keeps its own model between rounds on its own disk (``state-dir`` in the node
config, else the directory the server suggests, else Flower's in-memory ``context.state``).

In ``fd`` mode a reply holds the logits on the public set and scalar metadata, nothing else (see
:mod:`torchslim.federated.wire`); the model's weights and the private images never leave.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.federated import data, local, wire
from torchslim.federated.config import FederatedRecipe, from_plain

STATE_KEY = "torchslim-model"  # context.state entry when no state directory is available

app = ClientApp()


@app.train()
def train(message: Message, context: Context) -> Message:
    """Run one round for this client and reply; any exception becomes Flower's error reply."""
    return Message(handle(message.content, context), reply_to=message)


def identity(context: Context, clients: int) -> int:
    """This client's partition id, checked against the recipe's client count."""
    config = context.node_config
    if "partition-id" not in config:
        raise TorchSlimError("this SuperNode has no partition-id; start it with --node-config "
                             f"'partition-id=<0..{clients - 1}> num-partitions={clients}'.")
    pid, total = int(config["partition-id"]), int(config.get("num-partitions", clients))
    if total != clients or not 0 <= pid < clients:
        raise TorchSlimError(f"node config partition-id={pid} num-partitions={total} does not fit the "
                             f"recipe's {clients} clients (federated.clients.count).")
    return pid


def handle(content: RecordDict, context: Context) -> RecordDict:
    """The reply content for one task (exposed so tests can inspect exactly what a client sends)."""
    plain, server_round = wire.read_config(content)
    recipe = from_plain(plain)
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    cfg = recipe.federated
    pid = identity(context, cfg.clients.count)
    fdata = data.shared(cfg, recipe.seed)
    store = _Store(context, pid, content)
    if cfg.method == "fedavg":
        return _fedavg_round(recipe, fdata, pid, content, server_round)
    return _fd_round(recipe, fdata, pid, content, server_round, store)


def _new_model(recipe: FederatedRecipe, fdata: data.FederatedData, pid: int) -> nn.Module:
    arch = recipe.federated.clients.architecture(pid)
    return local.make_model(arch, fdata.num_classes, fdata.input_shape[0], seed=recipe.seed * 1000 + pid)


def _train_shard(model: nn.Module, recipe: FederatedRecipe, fdata: data.FederatedData, pid: int,
                 server_round: int) -> float:
    cfg = recipe.federated
    return local.train_ce(model, fdata.train, fdata.shards[pid], epochs=cfg.local_epochs, lr=cfg.lr,
                          batch_size=cfg.batch_size, seed=recipe.seed * 7919 + pid * 31 + server_round,
                          where=f"client {pid}, round {server_round}")


def _metrics(pid: int, fdata: data.FederatedData, loss: float, model: nn.Module, server_round: int) -> dict:
    return {"num-examples": len(fdata.shards[pid]), "partition-id": pid, "server-round": server_round,
            "train-loss": loss, "test-accuracy": local.accuracy(model, fdata.test_loader())}


def _fd_round(recipe: FederatedRecipe, fdata: data.FederatedData, pid: int, content: RecordDict,
              server_round: int, store: _Store) -> RecordDict:
    cfg = recipe.federated
    model = _new_model(recipe, fdata, pid)
    store.restore(model, server_round - 1)
    public = fdata.public_images()
    soft = wire.read_soft_labels(content)
    if soft is not None and cfg.distill_epochs:  # digest: learn the ensemble's view of the public set first
        if tuple(soft.shape) != (len(public), fdata.num_classes):
            raise TorchSlimError(f"soft labels of shape {tuple(soft.shape)}; expected "
                                 f"({len(public)}, {fdata.num_classes}).")
        local.distil(model, public, soft, temperature=cfg.temperature, epochs=cfg.distill_epochs, lr=cfg.lr,
                     batch_size=cfg.batch_size, seed=recipe.seed + pid + server_round,
                     where=f"client {pid}, round {server_round} distillation")
    loss = _train_shard(model, recipe, fdata, pid, server_round)  # revisit: the private shard
    store.save(model, server_round)
    return wire.logits_content(local.logits_on(model, public), _metrics(pid, fdata, loss, model, server_round))


def _fedavg_round(recipe: FederatedRecipe, fdata: data.FederatedData, pid: int, content: RecordDict,
                  server_round: int) -> RecordDict:
    record = content.array_records.get(wire.ARRAYS)
    if record is None:
        raise TorchSlimError(f"a fedavg task without the global model ({wire.ARRAYS!r} record).")
    model = _new_model(recipe, fdata, pid)
    model.load_state_dict(record.to_torch_state_dict())
    loss = _train_shard(model, recipe, fdata, pid, server_round)
    return RecordDict({wire.ARRAYS: ArrayRecord(model.state_dict()),
                       wire.METRICS: MetricRecord(_metrics(pid, fdata, loss, model, server_round))})


class _Store:
    """A client's model between rounds: ``<state-dir>/client-<id>/round-<r>`` or ``context.state``.

    One directory per round (the last two kept), so a round re-run after an interruption starts from
    the model of the round before it, exactly as the first attempt did.
    """

    def __init__(self, context: Context, pid: int, content: RecordDict) -> None:
        config = content.config_records[wire.CONFIG]
        root = context.node_config.get("state-dir") or config.get("client-state-dir")
        self.dir = Path(str(root)) / f"client-{pid}" if root else None
        self.context = context

    def restore(self, model: nn.Module, last_round: int) -> bool:
        if last_round < 1:
            return False
        from torchslim.models.checkpoint import load_model

        if self.dir is not None and (self.dir / f"round-{last_round}" / "model.json").is_file():
            load_model(self.dir / f"round-{last_round}", model=model)
            return True
        record = self.context.state.array_records.get(STATE_KEY)
        saved = self.context.state.config_records.get(STATE_KEY + "-round")
        if record is not None and saved is not None and int(saved["round"]) == last_round:
            model.load_state_dict(record.to_torch_state_dict())
            return True
        return False  # a client that joins late (or lost its disk) starts from fresh weights

    def save(self, model: nn.Module, server_round: int) -> None:
        from flwr.app import ConfigRecord

        from torchslim.models.checkpoint import save_model

        if self.dir is None:
            self.context.state[STATE_KEY] = ArrayRecord(model.state_dict())
            self.context.state[STATE_KEY + "-round"] = ConfigRecord({"round": server_round})
            return
        save_model(model, self.dir / f"round-{server_round}", {"round": server_round})
        for old in self.dir.glob("round-*"):
            if old.name.split("-")[-1].isdigit() and int(old.name.split("-")[-1]) < server_round - 1:
                shutil.rmtree(old, ignore_errors=True)
