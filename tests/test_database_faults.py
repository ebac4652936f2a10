"""Faults of the database file: each reaches the user as one DatabaseError subclass with a
one-line message (what happened, which file, what to do), never as a raw peewee traceback,
never masked by a second error, and never as a silent exit 0 with the results lost."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import aiqc
from aiqc import cli, datum, runner
from aiqc.exceptions import (DatabaseCorruptError, DatabaseError, DatabaseFullError, DatabaseGoneError,
                             DatabaseLockedError, DatabaseReadOnlyError, SchemaTooNewError, SchemaTooOldError)
from aiqc.orm import SCHEMA_VERSION, Dataset, Job, JobState, Metric, SchemaInfo, TrainedModel, database_proxy

from fns import reference_make

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def torch_queue(db):
    pytest.importorskip("torch")
    import fns

    def make(job_count: int, sleep: float = 0.0, neurons: int = 4):
        splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
        return aiqc.Experiment.make(
            library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build, fn_train=fns.torch_train,
            hyperparameters={"neuron_count": list(range(neurons, neurons + job_count)), "batch_size": [32], "epoch_count": [1],
                             "sleep": [sleep]},
            repeat_count=1, splitset_id=splitset.id)

    return make


def _unbind() -> None:
    database_proxy.obj.close()
    database_proxy.initialize(None)


def _causes(error: BaseException) -> list[str]:
    chain, seen = [], error
    while seen is not None:
        chain.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return chain


def _one_line(error: BaseException, path: Path, *phrases: str) -> None:
    message = str(error)
    assert "\n" not in message and str(path) in message, message
    for phrase in phrases:
        assert phrase in message, message


def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    err = capsys.readouterr().err
    return code, err


def _each_job_complete_once(queue) -> None:
    jobs = list(queue.jobs)
    assert all(j.state is JobState.COMPLETE for j in jobs), [(j.id, j.state, j.error) for j in jobs]
    for job in jobs:
        assert TrainedModel.select().where(TrainedModel.job == job).count() == 1
        keys = [(m.split, m.name) for m in Metric.select(Metric.split, Metric.name).where(Metric.job == job)]
        assert keys and len(keys) == len(set(keys)), keys


# --- read-only ------------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes through chmod; test_read_only_setup covers read-only as root")
def test_a_read_only_file_and_folder_raise_database_read_only_error(tmp_path, db, iris):
    Dataset.Tabular.from_pandas(iris)
    _unbind()
    os.chmod(db, 0o444)
    os.chmod(tmp_path, 0o555)
    try:
        with pytest.raises(DatabaseReadOnlyError) as caught:
            aiqc.setup(db)
            Dataset.Tabular.from_pandas(iris)
        _one_line(caught.value, db, "read-only", "chmod")
    finally:
        os.chmod(tmp_path, 0o755)
        os.chmod(db, 0o644)


def test_read_only_setup_reads_and_refuses_every_write(db, torch_queue):
    queue = torch_queue(job_count=1)
    _unbind()
    assert aiqc.setup(db, read_only=True) == db
    assert queue.jobs.count() == 1 and Dataset.select().count() == 1  # reading works
    with pytest.raises(DatabaseReadOnlyError) as caught:
        queue.run_jobs(progress=False)
    _one_line(caught.value, db, "is read-only", "read_only=True")
    assert "attempt to write a readonly database" in _causes(caught.value)[1]
    assert aiqc.setup(db) == db  # writable again
    assert queue.state_counts()[JobState.QUEUED] == 1


# --- disk full ------------------------------------------------------------------------------------
def test_disk_full_while_recording_raises_leaves_no_job_running_and_the_next_run_finishes(db, torch_queue):
    queue = torch_queue(job_count=3, neurons=4000)  # a model of ~100 KB: more than the pages' free room
    database = database_proxy.obj  # this thread's connection: the one run_jobs(workers=1) records with
    database.execute_sql("VACUUM")  # no free page left either
    pages = database.execute_sql("PRAGMA page_count").fetchone()[0]
    database.execute_sql(f"PRAGMA max_page_count = {pages}")  # not one page more: a full disk
    with pytest.raises(DatabaseFullError) as caught:
        queue.run_jobs(progress=False)
    _one_line(caught.value, db, "is full", "free disk space", "run_jobs() again")
    causes = _causes(caught.value)
    assert "database or disk is full" in causes[1], causes  # the original, kept as the cause
    assert not any("cannot rollback" in cause for cause in causes), causes  # nothing masks it
    counts = queue.state_counts()
    assert counts[JobState.RUNNING] == 0 and counts[JobState.QUEUED] == 3, counts
    assert TrainedModel.select().count() == 0 and Metric.select().count() == 0  # the write was rolled back

    database.execute_sql("PRAGMA max_page_count = 1073741823")
    summary = queue.run_jobs(progress=False)
    assert (summary.complete, summary.failed, summary.queued, summary.running) == (3, 0, 0, 0)
    _each_job_complete_once(queue)
    assert [j.attempts for j in queue.jobs.order_by(Job.id)] == [2, 1, 1]


def test_a_failed_commit_is_not_masked_by_the_rollback(db):
    from aiqc.database import translated

    database = database_proxy.obj
    pages = database.execute_sql("PRAGMA page_count").fetchone()[0]
    database.execute_sql(f"PRAGMA max_page_count = {pages}")
    try:
        with pytest.raises(DatabaseFullError) as caught:
            with translated(), database.atomic("IMMEDIATE"):
                with database.atomic():  # a savepoint inside, as services nest them
                    SchemaInfo.insert_many([dict(key=f"k{i}", value="x" * 4000) for i in range(100)]).execute()
        assert not any("rollback" in cause or "savepoint" in cause for cause in _causes(caught.value))
    finally:
        database.execute_sql("PRAGMA max_page_count = 1073741823")
    assert SchemaInfo.select().count() == 1 and not database.connection().in_transaction


#: A COMMIT that fails writing the WAL (a file-size limit stands in for a full disk): SQLite rolls
#: the transaction back itself, and peewee's own ROLLBACK would raise "cannot rollback - no
#: transaction is active" in place of the real error. In a subprocess: the limit is per process.
COMMIT_FAILS = """
import os, resource, signal
import aiqc
from aiqc.database import translated
from aiqc.orm import SchemaInfo, database_proxy
path = aiqc.setup({path!r})
database = database_proxy.obj
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = max(os.path.getsize(str(path) + "-wal"), os.path.getsize(path)) + 40000
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
try:
    with translated(), database.atomic("IMMEDIATE"):
        SchemaInfo.insert_many([dict(key=f"k{{i}}", value="x" * 4000) for i in range(100)]).execute()
except Exception as error:
    print(type(error).__name__, "|", error, "|", repr(error.__cause__))
"""


def test_a_failed_commit_is_not_masked_by_cannot_rollback(tmp_path):
    pytest.importorskip("resource")
    script = COMMIT_FAILS.format(path=str(tmp_path / "limited.sqlite3"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "cannot rollback" not in done.stdout, done.stdout
    kind, message, cause = done.stdout.strip().split(" | ")
    assert kind in ("DatabaseError", "DatabaseFullError") and "limited.sqlite3" in message, done.stdout
    assert "disk I/O error" in cause or "database or disk is full" in cause, done.stdout


# --- malformed, schema too new / too old -------------------------------------------------------------
def test_random_bytes_raise_database_corrupt_error_in_setup_and_the_cli(tmp_path, db, capsys):
    bad = tmp_path / "random.sqlite3"
    bad.write_bytes(os.urandom(64 * 1024))
    with pytest.raises(DatabaseCorruptError) as caught:
        aiqc.setup(bad)
    _one_line(caught.value, bad, "cannot open", "not a SQLite database or is corrupt", "restore it")
    assert aiqc.database.current_path() == db  # nothing half-open is bound: the database open before stays open
    code, err = _cli(capsys, "--db", str(bad), "list")
    assert code == 2 and err.count("\n") == 1 and err.startswith("aiqc: error: db: cannot open"), err


def test_schema_too_new_raises_schema_too_new_error(db, capsys):
    SchemaInfo.update(value=str(SCHEMA_VERSION + 1)).where(SchemaInfo.key == "schema_version").execute()
    _unbind()
    with pytest.raises(SchemaTooNewError) as caught:
        aiqc.setup(db)
    _one_line(caught.value, db, f"schema version {SCHEMA_VERSION + 1}, newer", "upgrade aiqc")
    code, err = _cli(capsys, "--db", str(db), "db", "path")
    assert code == 2 and err.count("\n") == 1 and "newer than this aiqc" in err, err


def test_a_required_column_no_migration_adds_raises_schema_too_old_error(db):
    _unbind()
    with sqlite3.connect(db) as connection:
        connection.execute("ALTER TABLE dataset DROP COLUMN dtypes")
    with pytest.raises(SchemaTooOldError) as caught:
        aiqc.setup(db)
    _one_line(caught.value, db, "'dataset'", "'dtypes'", "no migration")


# --- locked ----------------------------------------------------------------------------------------
def test_a_lock_held_past_the_busy_timeout_raises_database_locked_error(db):
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    database_proxy.obj.execute_sql("PRAGMA busy_timeout = 50")  # this test's tiny timeout
    try:
        start = time.monotonic()
        with pytest.raises(DatabaseLockedError) as caught:
            runner.claim(1, "test:1:worker")
        assert time.monotonic() - start < 10
        _one_line(caught.value, db, "locked by another connection", "50 ms", "try again")
        assert "database is locked" in _causes(caught.value)[1]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert runner.requeue_failed(1) == 0  # a write goes through again


# --- the file deleted under a worker -------------------------------------------------------------------
def _delete_when_running(path: Path, done: dict) -> None:
    """Wait (own connection) until a job is RUNNING, then delete the database as `rm` would."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        connection = sqlite3.connect(path)
        try:
            running = connection.execute("SELECT COUNT(*) FROM job WHERE state = ?", (JobState.RUNNING.value,))
            if running.fetchone()[0]:
                break
        finally:
            connection.close()
        time.sleep(0.05)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    done["deleted"] = True


def _clean_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("AIQC_DB", "PYTHONPATH")}
    return {**env, "PYTHONPATH": str(TESTS)}


@pytest.mark.slow
def test_a_worker_whose_database_is_deleted_exits_non_zero_with_one_line(db, torch_queue):
    queue = torch_queue(job_count=3, sleep=1.0)
    worker = subprocess.Popen([sys.executable, "-m", "aiqc.worker", "--queue", str(queue.id), "--db", str(db),
                               "--threads", "1"], env=_clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    done: dict = {}
    _delete_when_running(db, done)
    _, err = worker.communicate(timeout=120)
    assert done and worker.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("python -m aiqc.worker: error: DatabaseGoneError: database ") and "was deleted" in last, err
    assert "Traceback" not in err, err


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "job_count", "hints"), [(2, 4, ()), (1, 2, ("run_jobs() again",))],
                         ids=["worker processes", "in process"])
def test_run_jobs_raises_when_the_database_is_deleted(db, torch_queue, workers, job_count, hints):
    queue = torch_queue(job_count=job_count, sleep=1.0)
    done: dict = {}
    deleter = threading.Thread(target=_delete_when_running, args=(db, done), daemon=True)
    deleter.start()
    with pytest.raises(DatabaseGoneError) as caught:
        queue.run_jobs(workers=workers, threads=1, progress=False)
    deleter.join()
    _one_line(caught.value, db, "was deleted", *hints)


def test_a_replaced_or_truncated_file_is_noticed(db):
    from aiqc.database import check_file

    check_file()
    database_proxy.obj.close()  # (the proxy stays bound: check_file compares with what setup opened)
    db.write_bytes(b"")  # truncated in place: same inode
    with pytest.raises(DatabaseGoneError, match="truncated to 0 bytes"):
        check_file()
    replacement = db.with_name("other.sqlite3")
    replacement.write_bytes(b"SQLite format 3\x00" + bytes(100))
    os.replace(replacement, db)  # another file at the same path
    with pytest.raises(DatabaseGoneError, match="replaced by another file"):
        check_file()


def test_translate_leaves_other_errors_alone():
    from aiqc.database import translate

    assert translate(ValueError("x")) is None
    assert translate(sqlite3.IntegrityError("UNIQUE constraint failed: job.id")) is None
    assert isinstance(translate(sqlite3.OperationalError("database is locked")), DatabaseLockedError)
    error = DatabaseError("already ours")
    assert translate(error) is error
