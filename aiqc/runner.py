"""Claiming, running and recording jobs; local worker processes; the progress bar.

A worker claims a job in one short write transaction (``BEGIN IMMEDIATE`` on SQLite), so
no two workers get the same job. While a job runs, a thread refreshes its heartbeat; a
RUNNING job whose worker process is gone (same host) or whose heartbeat is stale is put
back in the queue. A result is recorded only if the job is still RUNNING under the same
worker, in one transaction, so a job is COMPLETE exactly once.

``run_jobs(workers=N)`` starts N ``python -m aiqc.worker`` processes (fresh interpreters: the
caller's script is never re-imported, so no ``if __name__ == "__main__":`` guard is needed),
follows them through the database, and raises :class:`~aiqc.exceptions.WorkerError`, with
the end of its stderr, when one dies while jobs remain.

A fault of the database file leaves as a :class:`~aiqc.exceptions.DatabaseError` subclass
(read-only, full, locked, corrupt; :func:`aiqc.database.translate`); the running job goes back
to the queue first, so that ``run_jobs()`` again finishes it exactly once. The file is checked
between jobs and by the heartbeat: deleted or replaced under a worker, it raises
:class:`~aiqc.exceptions.DatabaseGoneError` instead of recording results nobody can read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import traceback
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from aiqc.database import check_file, current_path, translate, translated
from aiqc.exceptions import DatabaseError, DatabaseGoneError
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


@translated()
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


@translated()
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
    worker = worker_id()
    cache: dict = {}
    ran = 0
    check_file()
    requeue_abandoned(queue_id)
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
    """Run a queue's remaining jobs, in this process (``workers=1``) or in ``workers`` worker
    processes (``python -m aiqc.worker``), with a progress bar; Ctrl-C stops cleanly. Returns the
    :class:`RunSummary`; raises :class:`~aiqc.exceptions.WorkerError` if a worker process died
    while jobs remained."""
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
    _warn_unfinished(queue, summary)
    return summary


def _warn_unfinished(queue: Queue, summary: RunSummary) -> None:
    """A run that left work undone says so where a user sees it: a Python warning."""
    import warnings

    if summary.failed:
        first = queue.jobs.where(Job.state == JobState.FAILED).order_by(Job.id).first()
        last_line = (first.error or "").strip().splitlines()[-1:] if first is not None else []
        warnings.warn(f"aiqc: queue {queue.id}: {summary.failed} job(s) {JobState.FAILED}"
                      + (f"; job {first.id}: {last_line[0].rstrip('.')}" if last_line else "")
                      + ". See job.error or `aiqc show job ID`; run_jobs(retry_failed=True) retries them.",
                      RuntimeWarning, stacklevel=4)
    if summary.interrupted:
        warnings.warn(f"aiqc: queue {queue.id}: interrupted with {summary.queued} job(s) {JobState.QUEUED}; "
                      "run_jobs() again to finish.", RuntimeWarning, stacklevel=4)


def worker_command(queue_id: int, database: str, threads: int) -> list[str]:
    """The command line of one local worker process of ``run_jobs(workers=N)``:
    ``python -m aiqc.worker --queue ID --db PATH --threads T`` with this interpreter. A fresh
    interpreter never re-imports the caller's script or notebook (the user's functions are
    stored by value in the database). Called once per worker, so a test can replace it."""
    return [sys.executable, "-m", "aiqc.worker", "--queue", str(queue_id), "--db", database, "--threads", str(threads)]


def worker_environment() -> dict[str, str]:
    """The environment of a worker process: this process's, with this process's own
    ``sys.path`` folders (the script's or notebook's folder, folders added at run time; not
    the standard library nor site-packages) put first in ``PYTHONPATH``, so that a module
    importable here is importable in the worker."""
    environment = dict(os.environ)
    entries = [os.path.abspath(entry or os.curdir) for entry in sys.path]
    inherited = [entry for entry in environment.get("PYTHONPATH", "").split(os.pathsep) if entry]
    folders = [entry for entry in entries if _own_folder(entry)]
    pythonpath = list(dict.fromkeys(folders + inherited))
    if pythonpath:
        environment["PYTHONPATH"] = os.pathsep.join(pythonpath)
    return environment


def _own_folder(entry: str) -> bool:
    """Whether a ``sys.path`` entry is a folder of the user's (not the interpreter's, not an installed package's)."""
    if not os.path.isdir(entry) or {"site-packages", "dist-packages"} & set(Path(entry).parts):
        return False
    entry = os.path.normcase(entry)
    for name in ("stdlib", "platstdlib", "purelib", "platlib"):
        library = sysconfig.get_path(name)
        if library and (entry == os.path.normcase(library) or entry.startswith(os.path.normcase(library) + os.sep)):
            return False
    return True


@dataclass
class _Worker:
    """One worker process started by ``run_jobs(workers=N)`` and the file holding its stderr."""

    number: int
    process: subprocess.Popen
    stderr: IO[bytes]
    exit_seen: bool = False
    death: str | None = None  # how it ended, when it ended badly with work left

    def describe_exit(self) -> str:
        """``exited with status 3`` or ``was killed by signal SIGKILL``."""
        code = self.process.returncode
        if code is not None and code < 0:
            try:
                return f"was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with status {code}"

    def stderr_lines(self, lines: int = 20) -> list[str]:
        """The last ``lines`` non-blank lines the worker wrote to stderr (read once it has exited)."""
        self.stderr.flush()
        size = self.stderr.seek(0, os.SEEK_END)
        self.stderr.seek(max(0, size - 64 * 1024))
        text = self.stderr.read().decode("utf-8", errors="replace")
        return [line.rstrip() for line in text.replace("\r", "\n").splitlines() if line.strip()][-lines:]

    def report(self) -> str:
        """``worker 1 (pid 123) exited with status 3 ...; its stderr ended with:`` and the indented tail."""
        tail = self.stderr_lines()
        return (f"worker {self.number} (pid {self.process.pid}) {self.death or self.describe_exit()}; its stderr "
                + ("ended with:\n" + "\n".join("    " + line for line in tail) if tail else "was empty."))


def _run_processes(queue: Queue, workers: int, threads: int, bar: Any) -> int:
    """Start ``workers`` worker processes on the queue, follow them on the progress bar until
    every one has exited, and return how many jobs were finished meanwhile. Raises
    :class:`~aiqc.exceptions.WorkerError` when a worker died while jobs remained (after the
    others finished); Ctrl-C stops the workers, and their running jobs go back to the queue."""
    database = str(current_path())
    environment = worker_environment()
    before = queue.state_counts()
    started: list[_Worker] = []
    with contextlib.ExitStack() as files:
        try:
            for number in range(1, workers + 1):
                stderr = files.enter_context(tempfile.TemporaryFile(prefix="aiqc-worker-", suffix=".stderr"))
                process = subprocess.Popen(worker_command(queue.id, database, threads), env=environment,
                                           stdin=subprocess.DEVNULL, stderr=stderr)
                started.append(_Worker(number, process, stderr))
            _follow(queue, started, bar)
        except BaseException as error:  # Ctrl-C above all: no worker outlives run_jobs
            _stop(started)
            if not isinstance(error, DatabaseGoneError):
                try:
                    requeue_abandoned(queue.id)
                except Exception:  # noqa: BLE001 - must not mask the error being raised
                    logger.warning("could not requeue the jobs the workers left running; the next run_jobs() "
                                   "will", exc_info=True)
            raise
        check_file()  # deleted or replaced while the workers ran: their results are lost
        requeue_abandoned(queue.id)  # whatever a dead worker left running
        after = queue.state_counts()
        bar.n = _finished(after)
        bar.refresh()
        _check_workers(queue, started, after)
    return sum(max(0, after[s] - before[s]) for s in JobState.finished())


def _follow(queue: Queue, started: list[_Worker], bar: Any, every: float = 0.1, bar_every: float = 0.5) -> None:
    """Wait for every worker to exit, updating the bar from the database; note each worker
    that ends badly while jobs remain, and put the jobs it left running back at once, so
    that the workers still alive can take them."""
    shown = 0.0
    while True:
        alive = [w for w in started if w.process.poll() is None]
        newly_exited = [w for w in started if w.process.returncode is not None and not w.exit_seen]
        counts = None
        if newly_exited or time.monotonic() - shown >= bar_every or not alive:
            check_file()  # deleted or replaced: stop the workers at once, their results would be lost
            counts = queue.state_counts()
        for worker in newly_exited:
            worker.exit_seen = True
            if worker.process.returncode == 0:
                continue
            worker.death = _work_left(queue, worker, counts)
            if worker.death is not None:
                logger.warning("worker %d (pid %d) %s", worker.number, worker.process.pid, worker.death)
                requeue_abandoned(queue.id)
            else:
                warnings.warn(f"aiqc: queue {queue.id}: {worker.report()}\n(it ended after the queue was drained: "
                              "no job was lost)", RuntimeWarning, stacklevel=5)  # the run_jobs() call
        if counts is not None:
            shown = time.monotonic()
            bar.n = _finished(counts)
            bar.set_postfix(failed=counts[JobState.FAILED], running=counts[JobState.RUNNING], refresh=True)
        if not alive:
            return
        time.sleep(every)


def _work_left(queue: Queue, worker: _Worker, counts: dict[JobState, int]) -> str | None:
    """How a worker that ended badly left work undone: jobs of its own still running, jobs
    queued, or trials of a sampled search not added yet; None when it left nothing (it ended
    after the queue was drained, while others ran their last jobs)."""
    own = [job.id for job in Job.select(Job.id).where(
        (Job.queue == queue.id) & (Job.state == JobState.RUNNING)
        & Job.worker.startswith(f"{socket.gethostname()}:{worker.process.pid}:"))]
    queued = counts[JobState.QUEUED]
    pending = max(0, queue.expected_job_count - sum(counts.values()))
    if not (own or queued or pending):
        return None
    left = ([f"job(s) {', '.join(map(str, own))} running"] if own else []) + \
        ([f"{queued} job(s) queued"] if queued else []) + ([f"{pending} search job(s) not created yet"] if pending else [])
    return f"{worker.describe_exit()}, leaving {' and '.join(left)}"


def _check_workers(queue: Queue, started: list[_Worker], counts: dict[JobState, int]) -> None:
    """Raise :class:`~aiqc.exceptions.WorkerError` if a worker died while jobs remained, or if
    every worker exited yet jobs are still queued: either way, work asked for did not run."""
    from aiqc.exceptions import WorkerError

    dead = [w for w in started if w.death is not None]
    if not dead and not counts[JobState.QUEUED]:
        return
    summary = _summary(queue, 0, False)
    if dead:
        last = (dead[0].stderr_lines(1) or ["(empty)"])[0]
        head = (f"{len(dead)} of {len(started)} worker process(es) of queue {queue.id} died while jobs remained: "
                f"worker {dead[0].number} {dead[0].death}; its stderr ends with {last!r} "
                f"(now: {summary}).")
    else:
        head = (f"every worker process of queue {queue.id} exited, yet {counts[JobState.QUEUED]} job(s) are "
                f"still queued (now: {summary}).")
    details = [w.report() for w in (dead or started)]
    raise WorkerError("\n".join([head, *details, "Any job a dead worker left running went back to the queue; "
                                 "fix the cause, then run_jobs() again to finish the remaining jobs."]))


def _stop(started: list[_Worker], grace: float = 30.0) -> None:
    """Stop the workers still running (Ctrl-C): an interrupt first, so that each gives its
    running job back to the queue; after ``grace`` seconds, or a second Ctrl-C, a kill."""
    try:
        deadline = time.monotonic() + 1.0  # a terminal's Ctrl-C reaches the workers as well
        while any(w.process.poll() is None for w in started) and time.monotonic() < deadline:
            time.sleep(0.05)
        for worker in started:
            if worker.process.poll() is None:
                if os.name == "nt":
                    worker.process.terminate()
                else:
                    worker.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + grace
        for worker in started:
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    except KeyboardInterrupt:
        pass
    finally:
        for worker in started:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()
