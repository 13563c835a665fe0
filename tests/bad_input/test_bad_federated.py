"""Bad federated recipes and arguments: refused before any training, with the value and what is valid."""

from __future__ import annotations

import copy

import pytest
import yaml

pytest.importorskip("flwr")

from torchslim.core.errors import TorchSlimError  # noqa: E402

BASE = {
    "version": 1, "name": "bad", "seed": 0,
    "federated": {
        "method": "fd", "data": {"name": "fashion-mnist"},
        "clients": {"count": 2, "architectures": ["cnn-tiny", "mlp"]},
        "split": {"alpha": 0.5}, "public": {"size": 10}, "rounds": 1, "min_clients": 2,
    },
}


def _set(data: dict, path: str, value) -> dict:
    data = copy.deepcopy(data)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is _DROP:
        del node[last]
    else:
        node[last] = value
    return data


_DROP = object()

CASES = [
    # (id, key path, value, needles the message must contain)
    ("alpha-zero", "federated.split.alpha", 0, ["federated.split.alpha", "0", "greater than 0"]),
    ("alpha-negative", "federated.split.alpha", -0.3, ["federated.split.alpha", "-0.3", "greater than 0"]),
    ("alpha-nan", "federated.split.alpha", float("nan"), ["federated.split.alpha", "finite"]),
    ("unknown-architecture", "federated.clients.architectures", ["cnn-tiny", "resnet2O"],
     ["architectures[1]", "resnet2O", "resnet20", "cnn-small"]),
    ("unknown-server-architecture", "federated.server", {"architecture": "vit"},
     ["federated.server.architecture", "'vit'", "mlp"]),
    ("empty-public-set", "federated.public.size", 0, ["federated.public.size", "greater than 0"]),
    ("zero-rounds", "federated.rounds", 0, ["federated.rounds", "greater than 0"]),
    ("min-clients-above-count", "federated.min_clients", 3, ["min_clients = 3", "clients.count = 2"]),
    ("unknown-key", "federated.clients.cuont", 2, ["federated.clients.cuont", "count"]),
    ("unknown-top-key", "federated.round", 3, ["federated.round", "rounds"]),
    ("unknown-method", "federated.method", "fedprox", ["federated.method", "fedprox", "fd", "fedavg"]),
    ("fedavg-mixed-architectures", "federated.method", "fedavg", ["fedavg", "one architecture"]),
    ("zero-temperature", "federated.temperature", 0, ["federated.temperature", "greater than 0"]),
    ("unknown-ensemble", "federated.ensemble", "median",
     ["federated.ensemble", "median", "mean", "class-reliability-sq", "class-reliability-entropy"]),
    ("ensemble-not-a-name", "federated.ensemble", 3, ["federated.ensemble", "3", "class-reliability"]),
    ("negative-distill-epochs", "federated.distill_epochs", -1,
     ["federated.distill_epochs", "-1", "greater than or equal to 0"]),
    ("momentum-one", "federated.soft_label_momentum", 1.0, ["federated.soft_label_momentum", "1", "less than 1"]),
    ("momentum-negative", "federated.soft_label_momentum", -0.5,
     ["federated.soft_label_momentum", "-0.5", "greater than or equal to 0"]),
    ("no-clients-section", "federated.clients", _DROP, ["federated.clients", "required"]),
]


def _write(sandbox, data) -> str:
    path = sandbox.inputs / "federated.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


@pytest.mark.parametrize("path,value,needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_recipe_value_exits_2(sandbox, path, value, needles):
    recipe = _write(sandbox, _set(BASE, path, value))
    text = sandbox.expect_exit_2(sandbox.cli("federated", recipe, "--out", sandbox.out), *needles)
    assert "federated.yaml:" in text  # file:line of the bad key
    assert not sandbox.out.exists()


def _with_data(sandbox, write_fmnist, **changes) -> str:
    root = write_fmnist(sandbox.inputs / "fmnist")  # 40 training images
    data = _set(BASE, "federated.data", {"name": "fashion-mnist", "root": str(root)})
    for path, value in changes.items():
        data = _set(data, path.replace("__", "."), value)
    return _write(sandbox, data)


def test_more_clients_than_samples_exits_2(sandbox, write_fmnist):
    recipe = _with_data(sandbox, write_fmnist, federated__clients={"count": 25, "architectures": ["mlp"]})
    sandbox.expect_exit_2(sandbox.cli("federated", recipe, "--out", sandbox.out),
                          "25 clients", "30", "federated.clients.count")
    assert not sandbox.out.exists()


def test_public_set_as_large_as_the_data_exits_2(sandbox, write_fmnist):
    recipe = _with_data(sandbox, write_fmnist, federated__public__size=40)
    sandbox.expect_exit_2(sandbox.cli("federated", recipe, "--out", sandbox.out),
                          "federated.public.size = 40", "40 images")


def test_missing_recipe_exits_2(sandbox):
    sandbox.expect_exit_2(sandbox.cli("federated", "nope.yaml", "--out", sandbox.out),
                          "nope.yaml", "recipes/federated-fashion-mnist.yaml")


def test_bad_engine_in_the_api(sandbox):
    from torchslim.federated import run

    recipe = _write(sandbox, BASE)
    exc = sandbox.call(lambda: run(recipe, sandbox.out, engine="cluster"), TorchSlimError)
    sandbox.expect_message(exc, "'cluster'", "simulation", "deployment")


def test_bad_engine_flag_exits_2(sandbox):
    recipe = _write(sandbox, BASE)
    code, out, err = sandbox.cli("federated", recipe, "--out", sandbox.out, "--engine", "cluster")
    assert code == 2 and "cluster" in err and "simulation" in err


def test_output_holding_another_federation_exits_2(sandbox):
    from torchslim.federated import state

    state.save(sandbox.out / "checkpoint", state.ServerState(fingerprint="another recipe", round=1))
    recipe = _write(sandbox, BASE)
    sandbox.expect_exit_2(sandbox.cli("federated", recipe, "--out", sandbox.out),
                          str(sandbox.out), "different recipe", "--force")
