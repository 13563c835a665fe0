"""The ``postgres_url`` fixture gives a real PostgreSQL server: what one connection commits another
reads, and an Optuna study stored there is read back whole by a fresh storage object (the basis of
``torchslim search`` with several workers on one study).

They skip where the server binaries (Debian's postgresql; ``make postgres``) or psycopg2 are missing.
"""

from __future__ import annotations

import optuna
import sqlalchemy as sa

from postgres_server import postgres_url  # noqa: F401


def test_two_connections_see_one_database(postgres_url):  # noqa: F811
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as first:
            first.execute(sa.text("CREATE TABLE trials_seen (id integer PRIMARY KEY, name text)"))
            first.execute(sa.text("INSERT INTO trials_seen VALUES (7, 'seven')"))
        with engine.connect() as second:
            version = second.execute(sa.text("SELECT version()")).scalar()
            rows = second.execute(sa.text("SELECT id, name FROM trials_seen")).all()
            second.execute(sa.text("DROP TABLE trials_seen"))
            second.commit()
    finally:
        engine.dispose()
    assert [tuple(row) for row in rows] == [(7, "seven")]
    assert version.startswith("PostgreSQL "), version


def test_optuna_study_round_trips_through_postgres(postgres_url):  # noqa: F811
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(postgres_url)
    try:
        study = optuna.create_study(storage=storage, study_name="round-trip")
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
    finally:
        storage.remove_session()
        storage.engine.dispose()

    fresh = optuna.storages.RDBStorage(postgres_url)
    try:
        trials = optuna.load_study(study_name="round-trip", storage=fresh).get_trials(deepcopy=False)
    finally:
        fresh.engine.dispose()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert all(0 <= t.params["x"] <= 1 and t.value == t.params["x"] for t in trials)
