"""What crosses the wire: the records of each message, their checks, and their measured size.

Distillation (``fd``) replies carry exactly two records: ``logits`` (an ArrayRecord holding one
float32 array of shape [public_size, num_classes]) and ``metrics`` (a MetricRecord of round
metadata). Anything else — another array, another shape, a non-finite value, a missing record —
is refused by :func:`check_logits_reply`, so a client cannot leak (or be tricked into sending)
images or weights through this protocol. FedAvg replies carry the model's arrays by design.

Sizes are the bytes Flower's transport moves: every object of a record tree serialized with
``deflate()`` (arrays travel as chunks; identical objects travel once), summed.
"""

from __future__ import annotations

import json
import re

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from torchslim.core.errors import TorchSlimError

CONFIG, SOFT_LABELS, LOGITS, METRICS, ARRAYS = "config", "soft-labels", "logits", "metrics", "arrays"


class MalformedReply(TorchSlimError):
    """A client's reply that does not follow the protocol; the message says what was wrong."""


def payload_bytes(content: RecordDict) -> int:
    """Serialized size in bytes of a message's content, as Flower's transport sends it."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(content).values())


def task_content(recipe_plain: dict, server_round: int, extra: dict[str, ArrayRecord] | None = None) -> RecordDict:
    """What the server sends each client: the recipe, the round and (fd) the soft labels."""
    config = ConfigRecord({"recipe": json.dumps(recipe_plain, sort_keys=True), "server-round": server_round})
    return RecordDict({CONFIG: config, **(extra or {})})


def soft_labels_record(probs: torch.Tensor) -> ArrayRecord:
    return ArrayRecord({"probs": Array(probs.detach().float().contiguous().numpy())})


def logits_content(logits: torch.Tensor, metrics: dict[str, int | float]) -> RecordDict:
    """A distillation reply: the logits on the public set and scalar round metadata, nothing else."""
    return RecordDict({LOGITS: ArrayRecord({"logits": Array(logits.detach().float().contiguous().numpy())}),
                       METRICS: MetricRecord(metrics)})


def read_config(content: RecordDict) -> tuple[dict, int]:
    """(recipe as plain data, server round) from a task message's content."""
    config = content.config_records.get(CONFIG)
    if config is None or "recipe" not in config or "server-round" not in config:
        raise MalformedReply(f"the task has no {CONFIG!r} record with 'recipe' and 'server-round' "
                             f"(records: {sorted(content)})")
    return json.loads(str(config["recipe"])), int(config["server-round"])


def read_soft_labels(content: RecordDict) -> torch.Tensor | None:
    record = content.array_records.get(SOFT_LABELS)
    return None if record is None else torch.from_numpy(record["probs"].numpy().copy())


def client_of(reply: Message, known: int | None = None) -> int | None:
    """The partition id a reply names (for messages only; never trusted for anything else), else ``known``."""
    if reply.has_content() and METRICS in reply.content.metric_records:
        part = reply.content.metric_records[METRICS].get("partition-id")
        if isinstance(part, int | float):
            return int(part)
    return known


def describe(reply: Message, known: int | None = None) -> str:
    """``node N (client I)`` for log lines."""
    part = client_of(reply, known)
    return f"node {reply.metadata.src_node_id}" + (f" (client {part})" if part is not None else "")


def failure(reply: Message) -> str:
    """The client's own error message from Flower's error reply, without the worker's traceback."""
    reason = reply.error.reason
    found = re.findall(r"Message: (.+?)(?:\\n|\n|'>|$)", reason)
    return (found[-1] if found else reason.strip().splitlines()[-1] if reason.strip() else "no reason given")[:300]


def _only_records(content: RecordDict, expected: set[str]) -> None:
    if set(content) != expected:
        raise MalformedReply(f"records {sorted(content)}; expected exactly {sorted(expected)}")
    if METRICS not in content.metric_records:
        raise MalformedReply(f"{METRICS!r} is not a MetricRecord")
    for key in ("num-examples", "partition-id"):
        if not isinstance(content.metric_records[METRICS].get(key), int):
            raise MalformedReply(f"{METRICS!r} lacks the integer {key!r}")


def check_logits_reply(reply: Message, public_size: int, num_classes: int) -> torch.Tensor:
    """The logits (public_size, num_classes) of a valid distillation reply.

    Raises:
        MalformedReply: an error reply, extra or missing records, another array name, shape or
            dtype, or a non-finite value; the message names what arrived and what was expected.
    """
    if reply.has_error():
        raise MalformedReply(f"the client failed: {failure(reply)}")
    content = reply.content
    _only_records(content, {LOGITS, METRICS})
    record = content.array_records.get(LOGITS)
    if record is None or list(record) != ["logits"]:
        raise MalformedReply(f"{LOGITS!r} must be an ArrayRecord with the one array 'logits'; "
                             f"got {sorted(record) if record is not None else 'another record type'}")
    array = record["logits"]
    want = [public_size, num_classes]
    if list(array.shape) != want or array.dtype != "float32":
        raise MalformedReply(f"logits of shape {list(array.shape)} and dtype {array.dtype}; "
                             f"expected {want} float32 (public set x classes)")
    values = array.numpy()
    if not np.isfinite(values).all():
        raise MalformedReply("the logits contain NaN or Inf")
    return torch.from_numpy(values.copy())


def check_weights_reply(reply: Message, reference: ArrayRecord) -> None:
    """Check a FedAvg reply holds the global model's arrays (same names, shapes) and finite values.

    Raises:
        MalformedReply: naming the first missing, unexpected or mis-shaped array.
    """
    if reply.has_error():
        raise MalformedReply(f"the client failed: {failure(reply)}")
    _only_records(reply.content, {ARRAYS, METRICS})
    record = reply.content.array_records.get(ARRAYS)
    if record is None or list(record) != list(reference):
        got = sorted(record) if record is not None else "no ArrayRecord"
        raise MalformedReply(f"{ARRAYS!r} holds {got}; expected the model's {len(reference)} arrays")
    for name, array in record.items():
        if list(array.shape) != list(reference[name].shape):
            raise MalformedReply(f"array {name!r} has shape {list(array.shape)}; the model's is "
                                 f"{list(reference[name].shape)}")
        if array.dtype.startswith("float") and not np.isfinite(array.numpy()).all():
            raise MalformedReply(f"array {name!r} contains NaN or Inf")
