"""torchslim.federated without an engine: the split, the recipe, the wire checks and what a client sends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

flwr = pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, Context, Message, MessageType, MetricRecord, RecordDict  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

from torchslim.federated import client, data, local, wire  # noqa: E402
from torchslim.federated.config import parse  # noqa: E402

PUBLIC, CLASSES = 24, 4


def tiny_recipe(**federated):
    section = {"method": "fd",
               "data": {"name": "synthetic", "options": {"train_size": 120, "test_size": 40, "num_classes": CLASSES,
                                                         "shape": [1, 28, 28]}},
               "clients": {"count": 2, "architectures": ["cnn-tiny", "mlp"]}, "split": {"alpha": 0.5},
               "public": {"size": PUBLIC}, "server": {"architecture": "cnn-tiny", "epochs": 1},
               "rounds": 2, "min_clients": 1, "batch_size": 32, **federated}
    return parse({"version": 1, "name": "tiny", "seed": 0, "threads": 1, "federated": section})


# -- the split -------------------------------------------------------------------------------------


def test_dirichlet_split_is_seeded_disjoint_and_complete():
    labels = np.repeat(np.arange(10), 50)
    a = data.dirichlet_split(labels, 5, alpha=0.3, seed=1, min_size=2)
    b = data.dirichlet_split(labels, 5, alpha=0.3, seed=1, min_size=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    joined = np.concatenate(a)
    assert len(joined) == len(labels) and len(np.unique(joined)) == len(labels)
    assert not all(np.array_equal(x, y) for x, y in zip(a, data.dirichlet_split(labels, 5, 0.3, seed=2, min_size=2), strict=True))


def test_small_alpha_concentrates_labels():
    labels = np.repeat(np.arange(10), 200)

    def dominant(alpha):  # mean share of each client's most common label
        shards = data.dirichlet_split(labels, 8, alpha=alpha, seed=0, min_size=1)
        return np.mean([np.bincount(labels[s], minlength=10).max() / len(s) for s in shards])

    assert dominant(0.1) > 0.5 > 0.2 > dominant(100.0)


def test_public_set_is_disjoint_and_histograms_add_up():
    recipe = tiny_recipe()
    fdata = data.build(recipe.federated, recipe.seed)
    shards = np.concatenate(fdata.shards)
    assert len(fdata.public) == PUBLIC and not set(fdata.public) & set(shards)
    assert len(shards) + PUBLIC == len(fdata.train)
    hist = fdata.histograms()
    assert [sum(h) for h in hist] == [len(s) for s in fdata.shards] and len(hist[0]) == CLASSES


def test_shipped_recipe_loads():
    from pathlib import Path

    from torchslim.federated import load

    recipe = load(Path(__file__).resolve().parents[1] / "recipes" / "federated-fashion-mnist.yaml")
    assert recipe.federated.clients.count == 10 and len(set(recipe.federated.clients.architectures)) == 3


def test_ensemble_is_the_mean_of_softened_probabilities_and_kd_recovers_it():
    a, b = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 4.0]])
    probs = local.ensemble([a, b], temperature=2.0)
    expected = (torch.softmax(a / 2, 1) + torch.softmax(b / 2, 1)) / 2
    assert torch.allclose(probs, expected)
    # T·log p as teacher logits gives back p under softmax(·/T): the kd loss sees the ensemble itself
    assert torch.allclose(torch.softmax(2.0 * probs.log() / 2.0, 1), probs)


def test_class_reliability_discounts_a_client_for_a_class_it_never_predicts():
    # client a learnt classes 0 and 1, client b classes 1 and 2 (rows: four public images)
    a = torch.tensor([[0.9, 0.08, 0.02], [0.08, 0.9, 0.02], [0.7, 0.28, 0.02], [0.5, 0.48, 0.02]]).log()
    b = torch.tensor([[0.34, 0.33, 0.33], [0.02, 0.9, 0.08], [0.02, 0.38, 0.6], [0.02, 0.28, 0.7]]).log()
    # mean probability per class, over the images, scaled so each client's top class is 1
    assert torch.allclose(local.class_reliability([a, b]),
                          torch.tensor([[1.0, 0.7982, 0.0367], [0.2116, 1.0, 0.9048]]), atol=1e-4)
    # image 3: a is unsure between 0 and 1, b is sure of 2. The mean follows the mass both put on
    # class 1; weighting class 2 by who predicts it gives b's answer.
    assert local.ensemble([a, b], 1.0, "mean")[3].argmax() == 1
    rel = local.ensemble([a, b], 1.0, "class-reliability")
    assert torch.allclose(rel, torch.tensor([[0.5990, 0.1636, 0.2374], [0.0664, 0.8595, 0.0742],
                                             [0.3890, 0.2246, 0.3864], [0.2853, 0.2529, 0.4618]]), atol=1e-4)
    assert rel[3].argmax() == 2 and torch.allclose(rel.sum(1), torch.ones(4))
    sq = local.ensemble([a, b], 1.0, "class-reliability-sq")
    assert torch.allclose(sq[3], torch.tensor([0.3121, 0.2329, 0.4550]), atol=1e-4)
    # reliabilities from other logits (the public set) when given: identical clients weigh equally
    assert torch.allclose(local.ensemble([a, b], 1.0, "class-reliability", reference=[a, a]),
                          local.ensemble([a, b], 1.0, "mean"), atol=1e-6)


def test_entropy_weights_let_a_confident_correct_client_outweigh_unsure_wrong_ones():
    unsure = torch.tensor([[0.5, 0.25, 0.25]]).log()  # four clients leaning to the wrong class 0
    sure = torch.tensor([[0.05, 0.05, 0.9]]).log()  # one client sure of the right class 2
    logits, equal = [unsure] * 4 + [sure], [torch.zeros(1, 3)] * 5  # equal class reliabilities
    assert local.ensemble(logits, 1.0, "mean").argmax() == 0
    # entropies 1.0397 and 0.3944 nats: weights 1/(H + 0.001) = 0.9609 (each) and 2.5292
    probs = local.ensemble(logits, 1.0, "class-reliability-entropy", reference=equal)
    assert torch.allclose(probs, torch.tensor([[0.3214, 0.1706, 0.5080]]), atol=1e-4)


# -- the wire --------------------------------------------------------------------------------------


@pytest.fixture
def identity(monkeypatch):
    """A Flower task identity, so Messages can be built outside a running app."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 7)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


def _task(content: RecordDict, node: int = 11) -> Message:
    return Message(content, dst_node_id=node, message_type=MessageType.TRAIN)


def _reply(task: Message, content: RecordDict) -> Message:
    return Message(content, reply_to=task)


def _valid_content() -> RecordDict:
    return wire.logits_content(torch.zeros(PUBLIC, CLASSES), {"num-examples": 3, "partition-id": 0})


BAD_REPLIES = {
    "wrong-shape": (lambda: wire.logits_content(torch.zeros(PUBLIC, CLASSES + 1), {"num-examples": 3, "partition-id": 0}),
                    "shape [24, 5]"),
    "transposed": (lambda: wire.logits_content(torch.zeros(CLASSES, PUBLIC), {"num-examples": 3, "partition-id": 0}), "[24, 4]"),
    "float64": (lambda: RecordDict({wire.LOGITS: ArrayRecord({"logits": Array(np.zeros((PUBLIC, CLASSES)))}),
                                    wire.METRICS: MetricRecord({"num-examples": 3, "partition-id": 0})}), "float64"),
    "nan": (lambda: wire.logits_content(torch.full((PUBLIC, CLASSES), float("nan")), {"num-examples": 3, "partition-id": 0}), "NaN"),
    "weights-smuggled": (lambda: RecordDict({**_valid_content(), "weights": ArrayRecord(torch.nn.Linear(2, 2).state_dict())}),
                         "expected exactly"),
    "images-as-extra-array": (lambda: RecordDict({
        wire.LOGITS: ArrayRecord({"logits": Array(np.zeros((PUBLIC, CLASSES), np.float32)),
                                  "x": Array(np.zeros((PUBLIC, 1, 28, 28), np.float32))}),
        wire.METRICS: MetricRecord({"num-examples": 3, "partition-id": 0})}), "the one array 'logits'"),
    "no-metrics": (lambda: RecordDict({wire.LOGITS: _valid_content()[wire.LOGITS]}), "expected exactly"),
    "no-partition": (lambda: wire.logits_content(torch.zeros(PUBLIC, CLASSES), {"num-examples": 3}), "partition-id"),
}


@pytest.mark.parametrize("name", sorted(BAD_REPLIES))
def test_malformed_replies_are_rejected_with_the_reason(identity, name):
    build, needle = BAD_REPLIES[name]
    reply = _reply(_task(RecordDict()), build())
    with pytest.raises(wire.MalformedReply, match=None) as info:
        wire.check_logits_reply(reply, PUBLIC, CLASSES)
    assert needle.lower() in str(info.value).lower()


def test_a_valid_reply_passes_and_its_size_is_measured(identity):
    reply = _reply(_task(RecordDict()), _valid_content())
    assert wire.check_logits_reply(reply, PUBLIC, CLASSES).shape == (PUBLIC, CLASSES)
    size = wire.payload_bytes(reply.content)
    assert PUBLIC * CLASSES * 4 < size < PUBLIC * CLASSES * 4 + 2048


# -- privacy: every message the real ClientApp sends ----------------------------------------------


def _only_logits(reply: Message, public: int, classes: int) -> None:
    """Fails on anything but one [public, classes] float32 array and scalar metadata."""
    assert not reply.has_error(), reply.error
    content = reply.content
    assert set(content) == {wire.LOGITS, wire.METRICS}
    assert not content.config_records
    arrays = [a for record in content.array_records.values() for a in record.values()]
    assert len(arrays) == 1 and list(arrays[0].shape) == [public, classes] and arrays[0].dtype == "float32"
    for value in content.metric_records[wire.METRICS].values():
        assert isinstance(value, int | float)  # scalars only: no lists that could carry pixels or weights
    assert wire.payload_bytes(content) < public * classes * 4 + 1024


def test_a_client_sends_nothing_but_logits(identity, tmp_path):
    recipe = tiny_recipe()
    fdata = data.shared(recipe.federated, recipe.seed)
    context = Context(run_id=7, node_id=11, node_config={"partition-id": 1, "num-partitions": 2},
                      state=RecordDict(), run_config={})
    first = client.app(_task(wire.task_content(recipe.plain(), 1)), context)
    _only_logits(first, PUBLIC, fdata.num_classes)
    soft = local.ensemble([torch.from_numpy(first.content[wire.LOGITS]["logits"].numpy())], 3.0)
    second = client.app(_task(wire.task_content(recipe.plain(), 2, {wire.SOFT_LABELS: wire.soft_labels_record(soft)})),
                        context)
    _only_logits(second, PUBLIC, fdata.num_classes)
    # the client kept its model between rounds (Flower's context.state here: no state-dir was given)
    assert client.STATE_KEY in context.state.array_records


def test_a_client_with_a_wrong_partition_refuses(identity):
    recipe = tiny_recipe()
    context = Context(run_id=7, node_id=11, node_config={"partition-id": 5, "num-partitions": 6},
                      state=RecordDict(), run_config={})
    with pytest.raises(Exception, match="partition-id=5 num-partitions=6"):
        client.app(_task(wire.task_content(recipe.plain(), 1)), context)


# -- the server's view of a round ------------------------------------------------------------------


def test_a_silent_client_is_dropped_and_too_few_replies_stop_the_round(identity, tmp_path, caplog):
    from torchslim.federated.server import FederationError, Server

    recipe = tiny_recipe(min_clients=2, clients={"count": 3, "architectures": ["mlp"]})
    server = Server(grid=None, recipe=recipe, out=tmp_path)  # the grid is only needed to send
    server.state.clients = {"21": 0, "22": 1, "23": 2}
    tasks = {node: _task(RecordDict(), node) for node in (21, 22, 23)}
    replies = [_reply(tasks[21], _valid_content()),
               _reply(tasks[22], wire.logits_content(torch.zeros(PUBLIC, CLASSES), {"num-examples": 3,
                                                                                    "partition-id": 1}))]
    check = lambda m: wire.check_logits_reply(m, PUBLIC, CLASSES)  # noqa: E731
    with caplog.at_level("WARNING", logger="torchslim.federated"):
        accepted, dropped = server._accept(4, [21, 22, 23], replies, check)
    assert sorted(accepted) == [21, 22]
    assert dropped == [{"node": 23, "client": 2, "why": "no reply"}]
    assert "round 4: dropped node 23 (client 2): no reply" in caplog.text

    with pytest.raises(FederationError, match=r"round 5: only 1 of 3 clients .* min_clients is 2"):
        server._accept(5, [21, 22, 23], replies[:1], check)


class _LoopbackGrid:
    """Delivers the server's messages to the real ClientApp in this process (one Context per node)."""

    def __init__(self, nodes: dict[int, int]):
        self.contexts = {node: Context(run_id=7, node_id=node, state=RecordDict(), run_config={},
                                       node_config={"partition-id": pid, "num-partitions": len(nodes)})
                         for node, pid in nodes.items()}
        self.sent, self.received = [], []

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, timeout=None):
        self.sent.append(messages)
        replies = [client.app(m, self.contexts[m.metadata.dst_node_id]) for m in messages]
        self.received.append(replies)
        return replies


@pytest.mark.parametrize("distill_epochs,momentum", [(0, 0.0), (1, 0.5)])
def test_soft_labels_go_only_to_clients_that_digest_them_and_keep_the_momentum_share(
        identity, tmp_path, distill_epochs, momentum):
    from torchslim.federated.server import Server

    recipe = tiny_recipe(distill_epochs=distill_epochs, soft_label_momentum=momentum)
    grid = _LoopbackGrid({21: 0, 22: 1})
    server = Server(grid=grid, recipe=recipe, out=tmp_path)
    before = server._fd_round(1)["bytes_sent_per_client"]  # round 1: only the config goes down
    first = server.state.tensors["soft_labels"].clone()
    extra = server._fd_round(2)["bytes_sent_per_client"] - before
    assert (wire.read_soft_labels(grid.sent[1][0].content) is not None) == bool(distill_epochs)
    assert extra >= PUBLIC * CLASSES * 4 if distill_epochs else abs(extra) < 16  # float32 soft labels, or none
    logits = [torch.from_numpy(m.content[wire.LOGITS]["logits"].numpy()) for m in grid.received[1]]
    fresh = local.ensemble(logits, recipe.federated.temperature, recipe.federated.ensemble)
    assert torch.allclose(server.state.tensors["soft_labels"], momentum * first + (1 - momentum) * fresh, atol=1e-6)


def test_fedavg_clients_send_the_model_and_flower_averages_it(identity):
    from flwr.serverapp.strategy import FedAvg

    recipe = tiny_recipe(method="fedavg", clients={"count": 2, "architectures": ["cnn-tiny"]})
    fdata = data.shared(recipe.federated, recipe.seed)
    model = local.make_model("cnn-tiny", fdata.num_classes, 1, seed=0)  # has BatchNorm buffers
    arrays = ArrayRecord(model.state_dict())
    content = RecordDict({wire.ARRAYS: arrays,
                          wire.CONFIG: wire.task_content(recipe.plain(), 1)[wire.CONFIG]})
    replies = []
    for pid, node in ((0, 31), (1, 32)):
        context = Context(run_id=7, node_id=node, node_config={"partition-id": pid, "num-partitions": 2},
                          state=RecordDict(), run_config={})
        reply = client.app(_task(content, node), context)
        wire.check_weights_reply(reply, arrays)  # the model's arrays, nothing else
        replies.append(reply)
    averaged, _ = FedAvg().aggregate_train(1, replies)
    model.load_state_dict(averaged.to_torch_state_dict())
    weights = [r.content[wire.METRICS]["num-examples"] for r in replies]
    first = [torch.from_numpy(r.content[wire.ARRAYS]["fc.weight"].numpy()) for r in replies]
    expected = (first[0] * weights[0] + first[1] * weights[1]) / sum(weights)
    assert torch.allclose(model.state_dict()["fc.weight"], expected, atol=1e-6)


def test_two_replies_for_one_partition_count_once(identity, tmp_path):
    from torchslim.federated.server import Server

    server = Server(grid=None, recipe=tiny_recipe(min_clients=1), out=tmp_path)
    tasks = {node: _task(RecordDict(), node) for node in (41, 42)}
    replies = [_reply(tasks[n], _valid_content()) for n in (41, 42)]  # both claim partition 0
    accepted, dropped = server._accept(1, [41, 42], replies, lambda m: wire.check_logits_reply(m, PUBLIC, CLASSES))
    assert list(accepted) == [41]
    assert dropped[0]["node"] == 42 and "partition-id 0 already answered" in dropped[0]["detail"]
