"""Claiming, running and recording jobs; local worker processes; the progress bar.

A worker claims a job in one short write transaction (``BEGIN IMMEDIATE`` on SQLite), so
no two workers get the same job. While a job runs, a thread refreshes its heartbeat; a
RUNNING job whose worker process is gone (same host) or whose heartbeat is stale is put
back in the queue. A result is recorded only if the job is still RUNNING under the same
worker, in one transaction, so a job is COMPLETE exactly once.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any

from aiqc.orm import (HistoryEntry, Job, JobState, Metric, Prediction, Queue, TrainedModel,
                      database_proxy)
from aiqc.orm.base import utcnow

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 60.0  # a heartbeat older than this means the worker is gone


@dataclass
class RunSummary:
    """What a call to ``run_jobs`` left behind."""

    queue_id: int
    complete: int
    failed: int
    queued: int
    running: int
    ran: int  # jobs this call ran (complete, pruned or failed)
    interrupted: bool = False
    pruned: int = 0

    def __str__(self) -> str:
        text = (f"queue {self.queue_id}: {self.complete} complete, {self.failed} failed, "
                + (f"{self.pruned} pruned, " if self.pruned else "") + f"{self.queued} queued, {self.running} running")
        return text + (" (interrupted)" if self.interrupted else "")


def worker_id() -> str:
    """A new worker's id, ``host:pid:token``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def requeue_abandoned(queue_id: int) -> int:
    """Put back RUNNING jobs whose worker is dead (same host), silent for too long, or this
    very process (nothing runs here while it looks: a claim cut short by Ctrl-C)."""
    host = socket.gethostname()
    stale_before = utcnow() - dt.timedelta(seconds=STALE_SECONDS)
    abandoned = []
    for job in Job.select(Job.id, Job.worker, Job.heartbeat_at).where(
            (Job.queue == queue_id) & (Job.state == JobState.RUNNING)):
        worker_host, _, rest = (job.worker or "").partition(":")
        pid = rest.partition(":")[0]
        dead = worker_host == host and pid.isdigit() and (int(pid) == os.getpid() or not _pid_alive(int(pid)))
        if dead or job.heartbeat_at is None or job.heartbeat_at < stale_before:
            abandoned.append((job.id, job.worker))
    for job_id, worker in abandoned:
        (Job.update(state=JobState.QUEUED, worker=None, heartbeat_at=None)
         .where((Job.id == job_id) & (Job.state == JobState.RUNNING) & (Job.worker == worker)).execute())
        logger.warning("job %s: worker %s is gone; job requeued", job_id, worker)
    return len(abandoned)


def claim(queue_id: int, worker: str) -> int | None:
    """Atomically move the next QUEUED job of the queue to RUNNING for ``worker``. In a
    sampled search with no job left, the next trial is asked for and added first, inside
    the same write transaction, so two workers never create the same trial."""
    database = database_proxy.obj
    now = utcnow()
    sql = ("UPDATE job SET state = ?, worker = ?, heartbeat_at = ?, started_at = ?, "
           "attempts = attempts + 1, error = NULL "
           "WHERE id = (SELECT id FROM job WHERE queue_id = ? AND state = ? ORDER BY id LIMIT 1) "
           "RETURNING id")
    parameters = (JobState.RUNNING.value, worker, now, now, queue_id, JobState.QUEUED.value)
    with database.atomic("IMMEDIATE"):
        row = database.execute_sql(sql, parameters).fetchone()
        if row is None and _extend_search(queue_id):
            row = database.execute_sql(sql, parameters).fetchone()
    return None if row is None else row[0]


def _extend_search(queue_id: int) -> bool:
    """Add the next trial of a sampled search; False when the search is done (or a grid)."""
    from aiqc.experiment import add_trial
    from aiqc.sampling import next_trial

    queue = Queue.get_by_id(queue_id)
    experiment = queue.experiment
    search = experiment.search_settings
    if search is None or not search.samples:
        return False
    combination = next_trial(experiment)
    if combination is None:
        return False
    add_trial(experiment, queue, experiment.hyperparamsets.count(), combination, search.seed)
    return True


class Heartbeat:
    """Refresh a job's heartbeat from a background thread while it runs."""

    def __init__(self, job_id: int, worker: str, every: float = HEARTBEAT_SECONDS):
        self.job_id, self.worker, self.every = job_id, worker, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"aiqc-heartbeat-{job_id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                (Job.update(heartbeat_at=utcnow())
                 .where((Job.id == self.job_id) & (Job.worker == self.worker)).execute())
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


def record(job_id: int, worker: str, outcome: Any, library: Any, seconds: float,
           state: JobState = JobState.COMPLETE) -> bool:
    """Store a job's results and mark it COMPLETE (or PRUNED), if it is still ours.
    Returns whether it was."""
    database = database_proxy.obj
    with database.atomic("IMMEDIATE"):
        updated = (Job.update(state=state, finished_at=utcnow(), seconds=seconds, heartbeat_at=utcnow())
                   .where((Job.id == job_id) & (Job.worker == worker) & (Job.state == JobState.RUNNING)).execute())
        if not updated:
            logger.warning("job %s was taken from worker %s; its result is discarded", job_id, worker)
            return False
        Metric.insert_many([
            dict(job=job_id, split=split, name=name, value=None if value != value else float(value))
            for split, values in outcome.metrics.items() for name, value in values.items()
        ]).execute()
        entries = [dict(job=job_id, epoch=epoch, name=name, value=None if v is None or v != v else float(v))
                   for name, values in outcome.history.items() for epoch, v in enumerate(values)]
        for start in range(0, len(entries), 500):
            HistoryEntry.insert_many(entries[start:start + 500]).execute()
        for split, (rows, predictions, probabilities) in outcome.predictions.items():
            Prediction.create(job=job_id, split=split, indices=rows, predictions=predictions, probabilities=probabilities)
        TrainedModel.create(job=job_id, library=library, blob=outcome.model_blob)
    return True


def fail(job_id: int, worker: str, error: str, seconds: float) -> None:
    """Mark a job FAILED with its error and wall time, if it is still RUNNING under ``worker``."""
    (Job.update(state=JobState.FAILED, error=error, finished_at=utcnow(), seconds=seconds)
     .where((Job.id == job_id) & (Job.worker == worker) & (Job.state == JobState.RUNNING)).execute())


def release(job_id: int, worker: str) -> None:
    """Give a job back to the queue (Ctrl-C)."""
    (Job.update(state=JobState.QUEUED, worker=None, heartbeat_at=None, started_at=None)
     .where((Job.id == job_id) & (Job.worker == worker) & (Job.state == JobState.RUNNING)).execute())


def run_one(job_id: int, worker: str, threads: int | None, cache: dict) -> JobState:
    """Run a claimed job to COMPLETE or FAILED (a KeyboardInterrupt puts it back)."""
    from aiqc.training import run_job

    job = Job.get_by_id(job_id)
    experiment = job.queue.experiment
    if experiment.id not in cache:
        cache[experiment.id] = experiment.load_functions()
    start = time.perf_counter()
    try:
        with Heartbeat(job_id, worker):
            outcome = run_job(job, experiment, cache[experiment.id], threads=threads)
    except KeyboardInterrupt:
        release(job_id, worker)
        raise
    except Exception:  # noqa: BLE001 - any error of user code fails the job, not the queue
        seconds = time.perf_counter() - start
        fail(job_id, worker, traceback.format_exc(), seconds)
        logger.warning("job %s failed:\n%s", job_id, traceback.format_exc(limit=-3))
        return JobState.FAILED
    seconds = time.perf_counter() - start
    state = JobState.PRUNED if outcome.pruned else JobState.COMPLETE
    record(job_id, worker, outcome, experiment.library, seconds, state)
    return state


def work(queue_id: int, threads: int | None = None, on_done: Any = None) -> int:
    """Claim and run QUEUED jobs of the queue until none is left; returns how many ran."""
    worker = worker_id()
    cache: dict = {}
    ran = 0
    requeue_abandoned(queue_id)
    while True:
        job_id = claim(queue_id, worker)
        if job_id is None and requeue_abandoned(queue_id):  # a fellow worker died meanwhile
            job_id = claim(queue_id, worker)
        if job_id is None:
            return ran
        state = run_one(job_id, worker, threads, cache)
        ran += 1
        if on_done is not None:
            on_done(state)


def requeue_failed(queue_id: int) -> int:
    """Put a queue's FAILED jobs back in the queue; returns how many."""
    return (Job.update(state=JobState.QUEUED, worker=None, heartbeat_at=None)
            .where((Job.queue == queue_id) & (Job.state == JobState.FAILED)).execute())


def _summary(queue: Queue, ran: int, interrupted: bool) -> RunSummary:
    counts = queue.state_counts()
    return RunSummary(queue.id, counts[JobState.COMPLETE], counts[JobState.FAILED], counts[JobState.QUEUED],
                      counts[JobState.RUNNING], ran, interrupted, counts[JobState.PRUNED])


def _finished(counts: dict[JobState, int]) -> int:
    return sum(n for state, n in counts.items() if state.is_finished)


def _progress_bar(queue: Queue, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=queue.expected_job_count, initial=_finished(queue.state_counts()), desc="Training Models",
                disable=not enabled, unit="job")


def default_threads(workers: int) -> int:
    """Intra-op threads per worker by default: the CPU cores shared among ``workers`` (at least 1)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def run_queue(queue: Queue, workers: int = 1, threads: int | None = None, progress: bool = True,
              retry_failed: bool = False) -> RunSummary:
    """Run a queue's remaining jobs, in this process (``workers=1``) or in ``workers`` spawned
    processes, with a progress bar; Ctrl-C stops cleanly. Returns the :class:`RunSummary`."""
    from aiqc.exceptions import ValidationError

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValidationError.expected("workers", "an integer >= 1", workers)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValidationError.expected("threads", "None or an integer >= 1", threads)
    threads = threads or default_threads(workers)
    if retry_failed:
        requeue_failed(queue.id)
    bar = _progress_bar(queue, progress)
    ran, interrupted = 0, False
    try:
        if workers == 1:
            def on_done(state: JobState) -> None:
                bar.update(1)  # processed: complete or failed
                if state is JobState.FAILED:
                    bar.set_postfix(failed=queue.state_counts()[JobState.FAILED], refresh=False)

            ran = work(queue.id, threads=threads, on_done=on_done)
        else:
            ran = _run_processes(queue, workers, threads, bar)
    except KeyboardInterrupt:
        interrupted = True
        logger.warning("interrupted: the running job went back to the queue; run_jobs() again to finish")
    finally:
        bar.close()
    summary = _summary(queue, ran, interrupted)
    (logger.warning if summary.failed else logger.info)("%s", summary)
    return summary


def _run_processes(queue: Queue, workers: int, threads: int, bar: Any) -> int:
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # never fork a process that imported TF
    database = str(database_proxy.obj.database)
    processes = [context.Process(target=worker_main, args=(database, queue.id, threads), daemon=False)
                 for _ in range(workers)]
    before = queue.state_counts()
    for process in processes:
        process.start()
    try:
        while any(p.is_alive() for p in processes):
            time.sleep(0.5)
            counts = queue.state_counts()
            bar.n = _finished(counts)
            bar.set_postfix(failed=counts[JobState.FAILED], running=counts[JobState.RUNNING], refresh=True)
    except KeyboardInterrupt:
        for process in processes:
            process.join(timeout=30)
        raise
    for process in processes:
        process.join()
    after = queue.state_counts()
    bar.n = _finished(after)
    bar.refresh()
    failed_exits = [p.exitcode for p in processes if p.exitcode not in (0, None)]
    if failed_exits:
        logger.warning("%d worker process(es) exited with codes %s", len(failed_exits), failed_exits)
    return sum(max(0, after[s] - before[s]) for s in JobState.finished())


def worker_main(database: str, queue_id: int, threads: int | None = None) -> int:
    """Entry point of a worker process: bind the database, then work the queue."""
    from aiqc.database import setup

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    setup(database)
    try:
        return work(queue_id, threads=threads)
    except KeyboardInterrupt:
        return 0
