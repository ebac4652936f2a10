"""The storage contract suite: the same tests on every database back end (SQLite and PostgreSQL),
as Optuna's storage tests do. Each test gets the ``storage`` fixture (tests/conftest.py): the
``db`` argument of a fresh database, already opened by ``aiqc.setup``. PostgreSQL runs on a
throwaway server (tests/pgserver.py); without its binaries or psycopg that half is skipped,
and under ``CI=true`` it fails instead."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import aiqc
from aiqc import datum
from aiqc.orm import (MODELS, SCHEMA_VERSION, Dataset, Experiment, Feature, Fold, Hyperparamset, Job, JobState,
                      Label, Metric, Queue, SchemaInfo, Splitset, TrainedModel, database_proxy)

import fns
from fns import reference_make
from pgserver import PASSWORD, free_port

pytestmark = [pytest.mark.backends]

TESTS = Path(__file__).resolve().parent
SPLITS = ("train", "validation", "test")


# --- helpers ---------------------------------------------------------------------------------------
def _torch_queue(job_count: int, *, fold_count: int | None = None, splitset: Splitset | None = None,
                 **make: Any) -> Queue:
    """A PyTorch queue on iris with ``job_count`` grid combinations (neuron_count 4, 5, ...),
    1 epoch each; with ``fold_count``, each combination trains once per fold."""
    pytest.importorskip("torch")
    if splitset is None:
        overrides = {} if fold_count is None else dict(size_validation=None, fold_count=fold_count)
        splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0, **overrides)
    return aiqc.Experiment.make(
        library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build, fn_train=fns.torch_train,
        hyperparameters={"neuron_count": list(range(4, 4 + job_count)), "batch_size": [32], "epoch_count": [1]},
        repeat_count=1, splitset_id=splitset.id, **make)


def _environment(db: str) -> dict[str, str]:
    """A subprocess's environment: the database in ``AIQC_DB`` (never on the command line, where
    ``ps`` shows it) and tests/ importable."""
    pythonpath = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "AIQC_DB": db, "PYTHONPATH": pythonpath}


def _unbind() -> None:
    """Close and forget the open database, as a new process would start."""
    from aiqc.database import clear_caches

    if database_proxy.obj is not None:
        database_proxy.obj.close()
        database_proxy.initialize(None)
    clear_caches()


def _assert_each_job_recorded_once(queue: Queue) -> None:
    """Every job COMPLETE after one claim, with one model and each (split, metric) once."""
    jobs = list(queue.jobs.order_by(Job.id))
    assert [(j.state, j.attempts) for j in jobs] == [(JobState.COMPLETE, 1)] * len(jobs), \
        [(j.id, j.state, j.attempts, j.error) for j in jobs]
    names = set(queue.experiment.metric_set.names)
    for job in jobs:
        assert TrainedModel.select().where(TrainedModel.job == job).count() == 1
        keys = [(m.split, m.name) for m in Metric.select(Metric.split, Metric.name).where(Metric.job == job)]
        assert sorted(keys) == sorted((split, name) for split in SPLITS for name in names), (job.id, keys)


# --- 0. the server itself -----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["postgresql"])
def test_postgres_server_is_reachable_and_needs_the_password(postgres_server: Any, postgres_url: str,
                                                            backend: str) -> None:
    """The harness: the URL connects (SELECT 1), a wrong password is refused."""
    import psycopg

    with psycopg.connect(postgres_url, connect_timeout=10) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)
        assert connection.execute("SELECT current_user").fetchone() == (postgres_server.user,)
    wrong = postgres_url.replace(f":{PASSWORD}@", ":not-the-password@")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=10)


# --- 1. every model written and read back -------------------------------------------------------------
def test_every_model_round_trips(storage: str) -> None:
    """A pipeline with 3 folds and a 2-combination grid, run in-process: each table holds exactly
    the rows the setup implies, and what was stored reads back as it was written."""
    iris = datum.to_pandas("iris.tsv")
    splitset = reference_make(iris, random_state=0, size_validation=None, fold_count=3)
    queue = _torch_queue(2, splitset=splitset)
    summary = queue.run_jobs(progress=False)
    assert (summary.complete, summary.failed, summary.queued) == (6, 0, 0)

    metric_names = list(queue.experiment.metric_set.names)
    jobs, folds = 2 * 3, 3  # combinations x folds (repeat_count=1)
    history_names = 4  # loss, accuracy, val_loss, val_accuracy; 1 epoch
    expected = {
        "Dataset": 1, "DatasetPart": 1, "DatasetArray": 0, "Label": 1, "Feature": 1, "Splitset": 1, "Fold": folds,
        "Encoder": 2 * (1 + folds),  # label + feature encoder, fit on the train split and on each fold
        "Experiment": 1, "Hyperparamset": 2, "Queue": 1, "Job": jobs, "JobAlias": 0,
        "Metric": jobs * len(SPLITS) * len(metric_names), "HistoryEntry": jobs * history_names * 1,
        "IntermediateValue": 0, "Prediction": jobs * len(SPLITS), "TrainedModel": jobs,
    }
    counts = {model.__name__: model.select().count() for model in MODELS if model is not SchemaInfo}
    assert counts == expected
    assert SchemaInfo.get(SchemaInfo.key == "schema_version").value == str(SCHEMA_VERSION)

    # the data, byte for byte, and the column choices
    dataset = Dataset.get()
    pd.testing.assert_frame_equal(dataset.to_pandas(), iris)
    assert Label.get().column == "species" and Label.get().classes == ["setosa", "versicolor", "virginica"]
    assert Feature.get().columns == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    # splits: train and test partition the rows; the folds partition the training rows
    stored = Splitset.get_by_id(splitset.id)
    train, test = stored.indices("train"), stored.indices("test")
    assert np.intersect1d(train, test).size == 0 and np.array_equal(np.sort(np.concatenate([train, test])),
                                                                    np.arange(150))
    held_out = np.concatenate([f.indices_validation for f in stored.folds.order_by(Fold.fold_index)])
    assert np.array_equal(np.sort(held_out), np.sort(train))
    # encoders: unpickled, fit on the training rows
    scaler = stored.encoders_for(side="feature")[0].fitted
    np.testing.assert_allclose(scaler.mean_, iris.iloc[train, :4].mean().to_numpy())
    assert list(stored.label_encoder().categories_[0]) == ["setosa", "versicolor", "virginica"]
    # the grid and the jobs
    assert sorted(h.hyperparameters["neuron_count"] for h in Hyperparamset.select()) == [4, 5]
    assert sorted((j.hyperparameters["neuron_count"], j.fold_index) for j in queue.jobs) == [
        (n, f) for n in (4, 5) for f in range(folds)]
    for job in queue.jobs:
        assert isinstance(job.started_at, dt.datetime) and job.started_at.tzinfo is None
        assert job.started_at <= job.finished_at and job.seconds > 0
        assert {name: len(values) for name, values in job.history().items()} == {
            "loss": 1, "accuracy": 1, "val_loss": 1, "val_accuracy": 1}
    # results: one row per job x split, the same values as the Metric rows
    frame = queue.metrics_to_pandas()
    assert len(frame) == jobs * len(SPLITS) and set(frame["split"]) == set(SPLITS)
    first = queue.jobs.order_by(Job.id).first()
    row = frame[(frame["job_id"] == first.id) & (frame["split"] == "test")].iloc[0]
    assert {name: row[name] for name in metric_names} == pytest.approx(first.metrics()["test"])
    # the model loads, and predicting the test rows again gives the stored probabilities
    import torch

    assert isinstance(first.get_model(), torch.nn.Module)
    indices, _, probabilities = first.predictions("test")
    assert np.array_equal(np.sort(indices), np.sort(test))
    predicted = first.predict(iris.iloc[indices])
    columns = [f"probability_{c}" for c in ("setosa", "versicolor", "virginica")]
    np.testing.assert_allclose(predicted[columns].to_numpy(), probabilities, rtol=1e-5, atol=1e-6)
    assert set(predicted["prediction"]) <= {"setosa", "versicolor", "virginica"}


# --- 2. claims: each job to exactly one of several concurrent workers -----------------------------------
CLAIM_SCRIPT = """
import os, sys, time
import aiqc
from aiqc import runner

aiqc.setup()  # AIQC_DB
worker = runner.worker_id()
go = sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.01)
claimed = []
while True:
    job = runner.claim(int(sys.argv[1]), worker)
    if job is None:
        break
    claimed.append(job)
print(worker, *claimed, flush=True)
"""


def test_concurrent_workers_claim_each_job_exactly_once(storage: str, tmp_path: Path) -> None:
    """4 processes claim from one 40-job queue at the same moment: every job is claimed once,
    by the worker the database records."""
    queue = _torch_queue(40)
    go = tmp_path / "go"
    processes = [subprocess.Popen([sys.executable, "-c", CLAIM_SCRIPT, str(queue.id), str(go)], env=_environment(storage),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    time.sleep(2.0)  # let every process import aiqc and open the database
    go.touch()
    claims: dict[int, str] = {}
    every: list[int] = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        worker, *ids = out.split()
        every += [int(i) for i in ids]
        claims.update({int(i): worker for i in ids})
    assert len(every) == len(set(every)), sorted(every)  # nobody got a job twice
    jobs = list(queue.jobs.order_by(Job.id))
    assert sorted(every) == [j.id for j in jobs]
    assert all(j.state is JobState.RUNNING and j.attempts == 1 and j.worker == claims[j.id] for j in jobs)
    assert runner_claim_none(queue.id)


def runner_claim_none(queue_id: int) -> bool:
    """Whether a claim on a drained queue returns None."""
    from aiqc.runner import claim, worker_id

    return claim(queue_id, worker_id()) is None


# --- 3. heartbeats: a dead or silent worker's job goes back to the queue --------------------------------
def test_abandoned_jobs_are_requeued(storage: str) -> None:
    """Of three RUNNING jobs, the one whose worker process on this host is dead and the one whose
    heartbeat is stale go back to QUEUED; the one alive elsewhere stays RUNNING."""
    from aiqc.orm.base import utcnow
    from aiqc.runner import STALE_SECONDS, requeue_abandoned

    queue = _torch_queue(4)
    dead, stale, alive, untouched = queue.jobs.order_by(Job.id)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                              check=True)
    dead_pid = int(finished.stdout)  # exited and reaped: no such process
    now = utcnow()
    running = {dead.id: (f"{socket.gethostname()}:{dead_pid}:abcd", now),
               stale.id: ("elsewhere.invalid:123:abcd", now - dt.timedelta(seconds=STALE_SECONDS + 5)),
               alive.id: ("elsewhere.invalid:124:abcd", now)}
    for job_id, (worker, heartbeat) in running.items():
        Job.update(state=JobState.RUNNING, worker=worker, heartbeat_at=heartbeat).where(Job.id == job_id).execute()

    assert requeue_abandoned(queue.id) == 2
    after = {j.id: (j.state, j.worker) for j in queue.jobs}
    assert after == {dead.id: (JobState.QUEUED, None), stale.id: (JobState.QUEUED, None),
                     alive.id: (JobState.RUNNING, "elsewhere.invalid:124:abcd"), untouched.id: (JobState.QUEUED, None)}
    assert Job.get_by_id(alive.id).heartbeat_at == now  # naive UTC, to the microsecond, as written
    assert requeue_abandoned(queue.id) == 0


def test_a_worker_of_this_very_process_keeps_its_job_while_it_runs(storage: str) -> None:
    """Workers in threads or Ray actors share a PID: a job held by a worker of this process is
    requeued only once that worker stopped running (a claim cut short by Ctrl-C)."""
    from aiqc.runner import claim, requeue_abandoned, running_here, worker_id

    queue = _torch_queue(2)
    with running_here(worker_id()) as worker:
        job_id = claim(queue.id, worker)
        assert requeue_abandoned(queue.id) == 0  # e.g. another thread's worker looking
        assert Job.get_by_id(job_id).state is JobState.RUNNING
    assert requeue_abandoned(queue.id) == 1  # its worker is gone
    assert Job.get_by_id(job_id).state is JobState.QUEUED


# --- 4. schema version and migration --------------------------------------------------------------------
def test_schema_version_and_additive_migration(storage: str) -> None:
    """The recorded schema version is this aiqc's; a nullable column missing from an older database
    is added back when it is opened, with the data intact; a newer schema is refused."""
    from aiqc.database import schema_version
    from aiqc.exceptions import SchemaTooNewError

    assert schema_version() == SCHEMA_VERSION
    queue = _torch_queue(2)
    experiment_id = queue.experiment.id
    database_proxy.obj.execute_sql("ALTER TABLE experiment DROP COLUMN positive_class")
    assert "positive_class" not in {c.name for c in database_proxy.obj.get_columns("experiment")}
    _unbind()

    aiqc.setup(storage)
    assert "positive_class" in {c.name for c in database_proxy.obj.get_columns("experiment")}
    experiment = Experiment.get_by_id(experiment_id)
    assert experiment.positive_class is None and experiment.hyperparameters["neuron_count"] == [4, 5]
    assert Job.select().where(Job.queue == queue.id).count() == 2
    assert schema_version() == SCHEMA_VERSION

    SchemaInfo.update(value=str(SCHEMA_VERSION + 1)).where(SchemaInfo.key == "schema_version").execute()
    _unbind()
    with pytest.raises(SchemaTooNewError, match="newer") as caught:
        aiqc.setup(storage)
    assert PASSWORD not in str(caught.value)


# --- 5. a sampled search shared by two worker processes --------------------------------------------------
@pytest.mark.slow  # worker processes: CI runs it
def test_two_workers_share_a_search(storage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A random search of 6 trials run by 2 worker processes: 6 trials, indices 0..5, each job
    COMPLETE once with one model and its metrics once; the password is on no command line."""
    pytest.importorskip("optuna")
    from aiqc.search import Int, Search

    commands: list[list[str]] = []

    class Recording(subprocess.Popen):
        """Popen that records each command line it starts."""

        def __init__(self, args: Any, *more: Any, **options: Any) -> None:
            commands.append([str(a) for a in args] if isinstance(args, (list, tuple)) else [str(args)])
            super().__init__(args, *more, **options)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    pytest.importorskip("torch")
    splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
    queue = aiqc.Experiment.make(
        library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build, fn_train=fns.torch_train,
        hyperparameters={"neuron_count": Int(2, 16), "batch_size": [32], "epoch_count": [1]}, repeat_count=1,
        splitset_id=splitset.id, search=Search("random", n_trials=6, seed=0))
    summary = queue.run_jobs(workers=2, threads=1, progress=False)
    assert (summary.complete, summary.failed, summary.queued, summary.running) == (6, 0, 0, 0)
    trials = list(queue.experiment.hyperparamsets.order_by(Hyperparamset.index))
    assert [t.index for t in trials] == list(range(6))
    assert all(t.jobs.count() == 1 and 2 <= t.hyperparameters["neuron_count"] <= 16 for t in trials)
    _assert_each_job_recorded_once(queue)
    workers = [c for c in commands if "aiqc.worker" in c]
    assert len(workers) == 2 and not any(PASSWORD in " ".join(c) for c in commands), commands


# --- 6. a fresh process reads back what this one wrote ----------------------------------------------------
READ_SCRIPT = """
import aiqc
aiqc.setup()  # AIQC_DB
queue = aiqc.Queue.get_by_id({queue_id})
print(queue.metrics_to_pandas().to_json(orient="split", double_precision=15))
"""


def test_a_fresh_process_reads_the_same_results(storage: str) -> None:
    """``metrics_to_pandas`` in another process, opened through ``AIQC_DB``, equals this one's."""
    queue = _torch_queue(2)
    queue.run_jobs(progress=False)
    here = queue.metrics_to_pandas()
    assert len(here) == 2 * len(SPLITS)
    finished = subprocess.run([sys.executable, "-c", READ_SCRIPT.format(queue_id=queue.id)], env=_environment(storage),
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    there = json.loads(finished.stdout.strip().splitlines()[-1])
    assert there == json.loads(here.to_json(orient="split", double_precision=15))


# --- 7. the password is never shown ------------------------------------------------------------------------
@pytest.mark.parametrize("storage", ["postgresql"], indirect=True)
def test_password_is_never_shown(storage: str, postgres_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture) -> None:
    """Not in setup's return value, its log records, ``aiqc db path``, nor the one-line error of an
    unreachable server (which names host and port, and leaves nothing written)."""
    import logging

    import aiqc.cli
    from aiqc.exceptions import DatabaseError

    assert PASSWORD in storage
    where = f"{postgres_server.host}:{postgres_server.port}"
    _unbind()
    with caplog.at_level(logging.DEBUG, logger="aiqc"):
        returned = aiqc.setup(storage)
        assert aiqc.setup(storage) == returned  # the same database stays open
    assert PASSWORD not in str(returned) and PASSWORD not in repr(returned)
    assert caplog.records and any(where in record.getMessage() for record in caplog.records), caplog.text
    assert PASSWORD not in caplog.text and not any(PASSWORD in record.getMessage() for record in caplog.records)

    assert aiqc.cli.main(["--db", storage, "db", "path"]) == 0
    out, err = capsys.readouterr()
    assert where in out and storage.rsplit("/", 1)[1] in out, out
    assert PASSWORD not in out + err

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    before = sorted(tmp_path.rglob("*"))
    port = free_port()
    unreachable = f"postgresql://{postgres_server.user}:{PASSWORD}@127.0.0.1:{port}/x"
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="aiqc"), pytest.raises(DatabaseError) as caught:
        aiqc.setup(unreachable)
    message = str(caught.value)
    assert "\n" not in message.strip() and f"127.0.0.1:{port}" in message, message
    shown = "".join(traceback.format_exception(caught.value))
    assert PASSWORD not in shown and PASSWORD not in caplog.text, shown
    assert sorted(tmp_path.rglob("*")) == before  # no file made of the URL, no default database


# --- 8. an unknown URL scheme ----------------------------------------------------------------------------
def test_unknown_url_scheme_is_a_validation_error(storage: str) -> None:
    """``mysql://`` is refused naming ``db`` and the scheme, without the password, and the open
    database stays open."""
    from aiqc.database import schema_version
    from aiqc.exceptions import ValidationError

    with pytest.raises(ValidationError) as caught:
        aiqc.setup(f"mysql://u:{PASSWORD}@h/db")
    message = str(caught.value)
    assert message.startswith("db") and "mysql" in message, message
    assert PASSWORD not in "".join(traceback.format_exception(caught.value))
    assert schema_version() == SCHEMA_VERSION  # the database opened before is still the one in use


# --- 9. caches know which database they read ----------------------------------------------------------------
def test_caches_tell_same_named_databases_apart(storage: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Two databases with the same name (``aiqc.sqlite3`` in two folders; the same database name
    on two PostgreSQL servers): what was read from the first is never served for the second."""
    iris = datum.to_pandas("iris.tsv")
    first = Dataset.Tabular.from_pandas(iris)
    assert first.to_pandas().shape == (150, 5)  # now cached
    if storage.startswith("postgresql://"):
        import pgserver

        server = request.getfixturevalue("postgres_server")
        other = pgserver.PostgresServer(server.bin_dir).start()
        request.addfinalizer(other.stop)
        name = storage.rsplit("/", 1)[1]
        second_db = other.create_database(name)
    else:
        (tmp_path / "other").mkdir()
        second_db = str(tmp_path / "other" / "aiqc.sqlite3")
    aiqc.setup(second_db)
    try:
        second = Dataset.Tabular.from_pandas(iris.head(10))
        assert second.id == first.id  # same id, same database name: only the URL tells them apart
        assert second.to_pandas().shape == (10, 5)
    finally:
        database_proxy.obj.close()
        database_proxy.initialize(None)
