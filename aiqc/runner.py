"""A worker's loop: claiming, running and recording jobs. Executors (:mod:`aiqc.executors`)
decide where workers run; every worker runs this loop against the shared database.

A worker claims a job in one short write transaction (``BEGIN IMMEDIATE`` on SQLite; ``FOR
UPDATE SKIP LOCKED`` on PostgreSQL), so no two workers get the same job. While a job runs, a
thread refreshes its heartbeat; a RUNNING job whose worker is gone (a dead process on this
host, or a worker of this process that is no longer running) or whose heartbeat is stale is
put back in the queue. A result is recorded only if the job is still RUNNING under the same
worker, in one transaction, so a job is COMPLETE exactly once.

A fault of the database leaves as a :class:`~aiqc.exceptions.DatabaseError` subclass
(read-only, full, locked, corrupt, unreachable; :func:`aiqc.database.translate`); the running
job goes back to the queue first, so that ``run_jobs()`` again finishes it exactly once. A
SQLite file is checked between jobs and by the heartbeat: deleted or replaced under a worker,
it raises :class:`~aiqc.exceptions.DatabaseGoneError` instead of recording results nobody can read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from typing import Any, Iterator

from peewee import IntegrityError

from aiqc.database import check_file, translate, translated, write_transaction
from aiqc.exceptions import DatabaseError, DatabaseGoneError
from aiqc.orm import HistoryEntry, Job, JobState, Metric, Prediction, Queue, TrainedModel, database_proxy
from aiqc.orm.base import insert_rows, utcnow
from aiqc.versions import runtime as runtime_versions

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 60.0  # a heartbeat older than this means the worker is gone


#: the ids of the workers running in this process now (several: threads, Ray actors)
_running_here: set[str] = set()
_running_lock = threading.Lock()


def worker_id() -> str:
    """A new worker's id, ``host:pid:token``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def running_here(worker: str) -> Iterator[str]:
    """Mark ``worker`` as running in this process while the block runs, so that
    :func:`requeue_abandoned` leaves its jobs alone."""
    with _running_lock:
        _running_here.add(worker)
    try:
        yield worker
    finally:
        with _running_lock:
            _running_here.discard(worker)


def _is_gone(worker: str, host: str) -> bool:
    """Whether the worker that holds a job is known to be gone: on this host, its process is
    dead, or it is this process and none of this process's running workers has that id (a
    claim cut short by Ctrl-C). Workers on other hosts are judged by their heartbeat only."""
    worker_host, _, rest = (worker or "").partition(":")
    pid = rest.partition(":")[0]
    if worker_host != host or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        with _running_lock:
            return worker not in _running_here
    return not _pid_alive(int(pid))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@translated()
def requeue_abandoned(queue_id: int) -> int:
    """Put back RUNNING jobs whose worker is gone (see :func:`_is_gone`) or silent for longer
    than :data:`STALE_SECONDS`; returns how many. Safe beside workers running in threads or
    actors of this very process."""
    host = socket.gethostname()
    stale_before = utcnow() - dt.timedelta(seconds=STALE_SECONDS)
    abandoned = []
    for job in Job.select(Job.id, Job.worker, Job.heartbeat_at).where(
            (Job.queue == queue_id) & (Job.state == JobState.RUNNING)):
        if _is_gone(job.worker, host) or job.heartbeat_at is None or job.heartbeat_at < stale_before:
            abandoned.append((job.id, job.worker))
    for job_id, worker in abandoned:
        (Job.update(state=JobState.QUEUED, worker=None, heartbeat_at=None)
         .where((Job.id == job_id) & (Job.state == JobState.RUNNING) & (Job.worker == worker)).execute())
        logger.warning("job %s: worker %s is gone; job requeued", job_id, worker)
    return len(abandoned)


@translated()
def claim(queue_id: int, worker: str) -> int | None:
    """Atomically move the next QUEUED job of the queue to RUNNING for ``worker``. In a
    sampled search with no job left, the next trial is sampled outside any transaction (other
    workers go on claiming and recording meanwhile), then added, with one of the queue's jobs
    claimed, in one short write transaction. Hyperparamset's unique (experiment, index) lets
    one worker only add each trial; a worker that loses the race takes a job again, else
    samples anew, so the search stops at exactly ``n_trials`` trials."""
    while True:
        with write_transaction():
            job_id = _take_next(queue_id, worker)
        if job_id is not None or not _is_sampled_search(queue_id):
            return job_id
        try:
            return _extend_search(queue_id, worker)
        except IntegrityError:
            logger.debug("queue %s: another worker added that trial first; claiming again", queue_id)


def _take_next(queue_id: int, worker: str) -> int | None:
    """One statement: the lowest QUEUED job's id, set RUNNING for ``worker``. Where the
    database can (PostgreSQL), the row is taken ``FOR UPDATE SKIP LOCKED``, so concurrent
    workers each take another job without waiting; SQLite's write lock serialises them."""
    database = database_proxy.obj
    now = utcnow()
    next_job = (Job.select(Job.id).where((Job.queue == queue_id) & (Job.state == JobState.QUEUED))
                .order_by(Job.id).limit(1))
    if database.for_update:
        next_job = next_job.for_update("FOR UPDATE SKIP LOCKED")
    taken = (Job.update(state=JobState.RUNNING, worker=worker, heartbeat_at=now, started_at=now,
                        attempts=Job.attempts + 1, error=None)
             .where(Job.id == next_job).returning(Job.id).tuples().execute())
    row = next(iter(taken), None)
    return None if row is None else row[0]


def _is_sampled_search(queue_id: int) -> bool:
    """Whether the queue's trials are sampled one at a time (Optuna) rather than a grid."""
    search = Queue.get_by_id(queue_id).experiment.search_settings
    return search is not None and bool(search.samples)


def _extend_search(queue_id: int, worker: str) -> int | None:
    """Sample the next trial of a sampled search (reading only), then add it and claim a job
    in one write transaction; the job's id, or None when the search has all its trials.
    Raises peewee's IntegrityError when another worker added a trial of that index first."""
    from aiqc.experiment import add_trial
    from aiqc.sampling import next_trial

    queue = Queue.get_by_id(queue_id)
    experiment = queue.experiment
    trial = next_trial(experiment)
    if trial is None:
        return None
    index, combination = trial
    with write_transaction():
        add_trial(experiment, queue, index, combination, experiment.search_settings.seed)
        return _take_next(queue_id, worker)


class Heartbeat:
    """Refresh a job's heartbeat from a background thread while it runs."""

    def __init__(self, job_id: int, worker: str, every: float = HEARTBEAT_SECONDS):
        self.job_id, self.worker, self.every = job_id, worker, every
        self.fault: DatabaseGoneError | None = None  # the database file was deleted or replaced meanwhile
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"aiqc-heartbeat-{job_id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                check_file()
                with translated():
                    (Job.update(heartbeat_at=utcnow())
                     .where((Job.id == self.job_id) & (Job.worker == self.worker)).execute())
            except DatabaseGoneError as error:  # the job's result would have nowhere to go
                if self.fault is None:
                    logger.error("job %s: %s", self.job_id, error)
                self.fault = error
            except Exception:  # noqa: BLE001 - a missed beat must not kill the job
                logger.debug("heartbeat of job %s failed", self.job_id, exc_info=True)
        if not database_proxy.obj.is_closed():  # this thread's own connection
            database_proxy.obj.close()

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


@translated()
def record(job_id: int, worker: str, outcome: Any, library: Any, seconds: float,
           state: JobState = JobState.COMPLETE) -> bool:
    """Store a job's results and mark it COMPLETE (or PRUNED), if it is still ours.
    Returns whether it was."""
    with write_transaction():
        updated = (Job.update(state=state, finished_at=utcnow(), seconds=seconds, heartbeat_at=utcnow(),
                              features_shape=list(outcome.features_shape), label_shape=list(outcome.label_shape),
                              versions=runtime_versions())
                   .where((Job.id == job_id) & (Job.worker == worker) & (Job.state == JobState.RUNNING)).execute())
        if not updated:
            logger.warning("job %s was taken from worker %s; its result is discarded", job_id, worker)
            return False
        insert_rows(Metric, [Metric.job, Metric.split, Metric.name, Metric.value], [
            (job_id, split, name, _stored(value)) for split, values in outcome.metrics.items()
            for name, value in values.items()])
        insert_rows(HistoryEntry, [HistoryEntry.job, HistoryEntry.epoch, HistoryEntry.name, HistoryEntry.value], [
            (job_id, epoch, name, _stored(value)) for name, values in outcome.history.items()
            for epoch, value in enumerate(values)])
        Prediction.insert_many([
            dict(job=job_id, split=split, indices=rows, predictions=predictions, probabilities=probabilities)
            for split, (rows, predictions, probabilities) in outcome.predictions.items()
        ]).execute()
        TrainedModel.insert(job=job_id, library=library, blob=outcome.model_blob).execute()
    return True


def _stored(value: Any) -> float | None:
    """A recorded number as stored: NULL for None and NaN."""
    return None if value is None or value != value else float(value)


@translated()
def fail(job_id: int, worker: str, error: str, seconds: float) -> None:
    """Mark a job FAILED with its error and wall time, if it is still RUNNING under ``worker``."""
    (Job.update(state=JobState.FAILED, error=error, finished_at=utcnow(), seconds=seconds)
     .where((Job.id == job_id) & (Job.worker == worker) & (Job.state == JobState.RUNNING)).execute())


@translated()
def release(job_id: int, worker: str) -> None:
    """Give a job back to the queue (Ctrl-C)."""
    (Job.update(state=JobState.QUEUED, worker=None, heartbeat_at=None, started_at=None)
     .where((Job.id == job_id) & (Job.worker == worker) & (Job.state == JobState.RUNNING)).execute())


def _start_up(queue_id: int, threads: int | None, cache: dict) -> None:
    """Pay a worker's start-up before its first claim, when there is a job to run: the
    library, the user's functions and the encoded data of the next job's scope (see
    :func:`aiqc.training.prepare`). A failure here is left to the job that meets it (it
    fails the job, with its traceback, rather than the worker)."""
    from aiqc.training import prepare

    job = Job.select().where((Job.queue == queue_id) & (Job.state == JobState.QUEUED)).order_by(Job.id).first()
    if job is None:
        return
    try:
        experiment, _ = _shared(queue_id, cache)
        prepare(job, experiment, threads)
    except DatabaseError:
        raise
    except Exception:  # noqa: BLE001 - the job that meets it again fails with the traceback
        cache.pop(queue_id, None)
        logger.debug("start-up of a worker of queue %s failed; the first job will say why", queue_id, exc_info=True)


def _shared(queue_id: int, cache: dict) -> tuple[Any, dict[str, Any]]:
    """(the queue's experiment, its user functions), read once per worker into ``cache``:
    every job of a queue shares them, and the experiment keeps the splitset and label it
    reads, so that no job selects them again."""
    if queue_id not in cache:
        experiment = Queue.get_by_id(queue_id).experiment
        cache[queue_id] = (experiment, experiment.load_functions())
    return cache[queue_id]


def run_one(job_id: int, worker: str, threads: int | None, cache: dict) -> JobState:
    """Run a claimed job to COMPLETE or FAILED (a KeyboardInterrupt puts it back)."""
    from aiqc.orm import Hyperparamset
    from aiqc.training import run_job

    job = Job.select(Job, Hyperparamset).join(Hyperparamset).where(Job.id == job_id).get()
    experiment, functions = _shared(job.queue_id, cache)
    start = time.perf_counter()
    try:
        with Heartbeat(job_id, worker):
            outcome = run_job(job, experiment, functions, threads=threads)
    except KeyboardInterrupt:
        release(job_id, worker)
        raise
    except Exception as error:  # noqa: BLE001 - any error of user code fails the job, not the queue
        fault = translate(error)
        if fault is not None:  # the database's fault, not the job's: it goes back to the queue
            _give_back(job_id, worker, fault)
            if fault is error:
                raise
            raise fault from error
        seconds = time.perf_counter() - start
        fail(job_id, worker, traceback.format_exc(), seconds)
        logger.warning("job %s failed:\n%s", job_id, traceback.format_exc(limit=-3))
        return JobState.FAILED
    seconds = time.perf_counter() - start
    state = JobState.PRUNED if outcome.pruned else JobState.COMPLETE
    check_file()  # deleted or replaced while the job ran: its result would have nowhere to go
    try:
        record(job_id, worker, outcome, experiment.library, seconds, state)
    except DatabaseError as error:
        _give_back(job_id, worker, error)
        raise
    return state


def _give_back(job_id: int, worker: str, fault: DatabaseError) -> None:
    """After a database fault, put the job back in the queue if the file takes the write; if
    it does not, leave it RUNNING (the next ``run_jobs()`` requeues it: its worker is gone)
    and let the fault, not this second error, reach the caller."""
    if isinstance(fault, DatabaseGoneError):
        return  # a write would go to the deleted file
    try:
        release(job_id, worker)
    except Exception:  # noqa: BLE001 - must not mask the fault being raised
        logger.warning("job %s could not go back to the queue (%s); the next run_jobs() requeues it",
                       job_id, fault, exc_info=True)


def work(queue_id: int, threads: int | None = None, on_done: Any = None) -> int:
    """Claim and run QUEUED jobs of the queue until none is left; returns how many ran."""
    cache: dict = {}
    ran = 0
    check_file()
    with running_here(worker_id()) as worker:
        requeue_abandoned(queue_id)
        _start_up(queue_id, threads, cache)
        while True:
            check_file()  # between jobs: deleted or replaced under this worker, it stops
            job_id = claim(queue_id, worker)
            if job_id is None and requeue_abandoned(queue_id):  # a fellow worker died meanwhile
                job_id = claim(queue_id, worker)
            if job_id is None:
                return ran
            state = run_one(job_id, worker, threads, cache)
            ran += 1
            if on_done is not None:
                on_done(state)


@translated()
def requeue_failed(queue_id: int) -> int:
    """Put a queue's FAILED jobs back in the queue; returns how many."""
    return (Job.update(state=JobState.QUEUED, worker=None, heartbeat_at=None)
            .where((Job.queue == queue_id) & (Job.state == JobState.FAILED)).execute())


def default_threads(workers: int) -> int:
    """Intra-op threads per worker by default: the CPU cores shared among ``workers`` (at least 1)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))
