"""Running a federation on Flower's engines.

* ``simulation``: Flower's simulation engine (Ray) runs ``clients.count`` virtual SuperNodes on this
  machine; the ServerApp runs in this process.
* ``deployment``: a SuperLink and SuperNodes that are already running (here or on other machines,
  started with ``flower-superlink --insecure`` and ``flower-supernode --insecure --superlink
  HOST:PORT --node-config "partition-id=I num-partitions=N"``) receive the run from ``flwr run``;
  the recipe travels in the run config and the ServerApp writes into ``out`` on the SuperLink's
  machine. :func:`torchslim.federated.deploy.local_federation` starts such a federation on loopback.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from torchslim.core.errors import TorchSlimError
from torchslim.federated import config as fconfig
from torchslim.federated import data, state
from torchslim.federated.report import JSON_NAME
from torchslim.federated.server import FederationError, Server, log

ENGINES = ("simulation", "deployment")
APP_NAME = "torchslim-federated"


def prepare(recipe: fconfig.FederatedRecipe | str | Path, out: str | Path, restart: bool = False):
    """Validate the recipe and the split before anything runs; returns (recipe, out).

    Raises:
        RecipeError / TorchSlimError: a bad recipe, or a split that cannot be made (more clients
            than samples, an empty or oversized public set), before any process starts.
    """
    recipe = recipe if isinstance(recipe, fconfig.FederatedRecipe) else fconfig.load(recipe)
    out = Path(out)
    if not restart:  # a state of another recipe in `out` is refused here, not after the engine started
        state.load(out / "checkpoint", state.fingerprint(recipe.plain()))
    data.shared(recipe.federated, recipe.seed)  # loads and splits: refuses an impossible split now
    if restart:
        for name in ("checkpoint", "clients", "model", JSON_NAME, "federated.png", "federated.log"):
            target = out / name
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return recipe, out


def attach_log(out: Path) -> logging.Handler:
    """Send the federation's log lines to ``out/federated.log`` (and the console, once)."""
    handler = logging.FileHandler(out / "federated.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in log.handlers):
        log.addHandler(logging.StreamHandler(sys.stderr))
    return handler


def server_app(recipe: fconfig.FederatedRecipe, out: Path, result: dict[str, Any],
               client_state_dir: str | None = None) -> ServerApp:
    """A ServerApp bound to this recipe and output folder; the record lands in ``result``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        result.update(Server(grid, recipe, out, client_state_dir).run())

    return app


def simulate(recipe: fconfig.FederatedRecipe, out: Path, client_app=None) -> dict[str, Any]:
    """Run the federation on Flower's simulation engine; returns the ``federated.json`` record.

    ``client_app`` replaces the torchslim ClientApp (tests pass one that fails on purpose).
    """
    from flwr.simulation import run_simulation

    from torchslim.federated.client import app as default_client

    result: dict[str, Any] = {}
    threads = recipe.threads or 1
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"num_cpus": max(1, min(os.cpu_count() or 1, recipe.federated.clients.count)),
                             "include_dashboard": False, "logging_level": "error", "log_to_driver": False},
               "actor": {"tensorflow": 0}}
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    run_simulation(server_app(recipe, out, result, str(out / "clients")), client_app or default_client,
                   num_supernodes=recipe.federated.clients.count, backend_config=backend)
    if not result:
        raise FederationError(f"the simulation ended without a result; see {out / 'federated.log'}.")
    return result


# -- deployment ------------------------------------------------------------------------------------


def deployed_main(grid: Grid, context: Context) -> None:
    """The ServerApp entry of a deployed run: the recipe and ``out`` come from the run config."""
    config = context.run_config
    if "recipe-b64" not in config or "out" not in config:
        raise TorchSlimError("this run has no 'recipe-b64'/'out' run config; start it with "
                             "`torchslim federated RECIPE --out DIR --engine deployment`.")
    from torchslim.pipeline.recipe_yaml import read_yaml

    text = base64.b64decode(str(config["recipe-b64"])).decode("utf-8")
    source = str(config.get("source", "<recipe>"))
    recipe = fconfig.parse(read_yaml(text, source)[0], source, text)
    out = Path(str(config["out"]))
    out.mkdir(parents=True, exist_ok=True)
    handler = attach_log(out)
    try:
        Server(grid, recipe, out).run()
    finally:
        log.removeHandler(handler)


deployed_server_app = ServerApp()
deployed_server_app.main()(deployed_main)

APP_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{name}"
version = "1.0.0"
description = "torchslim federated distillation (its code is the installed torchslim package)"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "torchslim"

[tool.flwr.app.components]
serverapp = "torchslim.federated.engine:deployed_server_app"
clientapp = "torchslim.federated.client:app"

[tool.flwr.app.config]
recipe-b64 = ""
source = ""
out = ""
"""


def write_app(directory: Path) -> Path:
    """The Flower App that ``flwr run`` ships: a pyproject naming torchslim's components."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pyproject.toml").write_text(APP_PYPROJECT.format(name=APP_NAME), encoding="utf-8")
    return directory


def write_connection(home: Path, superlink: str) -> Path:
    """A Flower config (``$FLWR_HOME/config.toml``) naming the SuperLink, without TLS."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "torchslim"\n\n[superlink.torchslim]\naddress = "{superlink}"\ninsecure = true\n',
        encoding="utf-8")
    return home


def deploy(recipe_path: str | Path, out: Path, superlink: str, timeout: float | None = None) -> dict[str, Any]:
    """Submit the federation to a running SuperLink with ``flwr run`` and wait for it to finish.

    Raises:
        FederationError: ``flwr run`` failed or the run stopped before its last round (the log in
            ``out/federated.log`` says why; the same command resumes from the last round).
    """
    import json

    text = Path(recipe_path).read_text(encoding="utf-8")
    app = write_app(out / ".flower-app")
    home = write_connection(out / ".flwr", superlink)
    overrides = (f'recipe-b64="{base64.b64encode(text.encode()).decode()}" '
                 f'source="{Path(recipe_path).resolve()}" out="{out.resolve()}"')
    flwr = Path(sys.executable).with_name("flwr")
    env = {**os.environ, "FLWR_HOME": str(home), "PATH": f"{flwr.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        done = subprocess.run([str(flwr), "run", str(app), "torchslim", "--run-config", overrides, "--stream"],
                              env=env, timeout=timeout, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        raise FederationError(f"`flwr run` did not finish within {timeout} s; see {out / 'federated.log'}.") from None
    path = out / JSON_NAME
    record = json.loads(path.read_text()) if path.is_file() else {}
    if done.returncode != 0 or not record.get("complete"):
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise FederationError(f"the deployed run did not complete (flwr run exit {done.returncode}); "
                              f"see {out / 'federated.log'}. Last output:\n{tail}")
    return record


def run(recipe: fconfig.FederatedRecipe | str | Path, out: str | Path, *, engine: str = "simulation",
        superlink: str = "127.0.0.1:9091", restart: bool = False, timeout: float | None = None,
        client_app=None) -> dict[str, Any]:
    """Run (or resume) a federation; returns the ``federated.json`` record.

    Args:
        recipe: a :class:`FederatedRecipe` or the path of a recipe file (``deployment`` needs a path).
        out: output folder: ``federated.json``, ``federated.png``, ``federated.log``, ``model/``
            (the server's model, a torchslim checkpoint) and ``checkpoint/`` (resume state).
        engine: ``simulation`` (Flower's simulation engine) or ``deployment`` (``flwr run`` against
            the SuperLink at ``superlink``, host:port).
        restart: discard a previous run's state in ``out`` instead of resuming it.

    Raises:
        TorchSlimError: bad recipe or engine, before any training; FederationError when a round
            cannot complete.
    """
    if engine not in ENGINES:
        raise TorchSlimError(f"Unknown federated engine {engine!r}; engines: {', '.join(ENGINES)}.")
    if engine == "deployment" and isinstance(recipe, fconfig.FederatedRecipe):
        raise TorchSlimError("the deployment engine sends the recipe file to the SuperLink; pass its path.")
    parsed, out = prepare(recipe, out, restart)
    done = state.load(out / "checkpoint", state.fingerprint(parsed.plain()))
    if done is not None and done.round >= parsed.federated.rounds:  # finished before: nothing to send
        return Server(None, parsed, out).finish()
    if engine == "deployment":
        return deploy(recipe, out, superlink, timeout)
    handler = attach_log(out)
    try:
        return simulate(parsed, out, client_app)
    finally:
        log.removeHandler(handler)
        handler.close()
