"""Running a queue on a Ray cluster (``pip install 'aiqc[ray]'``).

Each Ray task is an aiqc worker: it opens the database (:func:`aiqc.setup`) and runs the
worker loop (:func:`aiqc.runner.work`), claiming jobs from the shared database until none is
left, so a queue can be shared by Ray tasks and ``aiqc worker`` processes started by hand,
and each job still runs exactly once. Ray places the tasks by their resources: ``num_cpus``
and ``num_gpus`` per task (``cpus_per_job``, ``gpus_per_job``); for a task given GPUs, Ray
sets ``CUDA_VISIBLE_DEVICES`` to the GPUs it assigned, so the job's framework sees only
those.

A task whose worker process dies (killed, out of memory) is retried by Ray; the retry first
puts back the job the dead process left running (on the same host: its process is gone;
elsewhere: once its heartbeat is older than :data:`aiqc.runner.STALE_SECONDS`). A task that
fails for good raises :class:`~aiqc.exceptions.WorkerError` after the other tasks finished.
Ctrl-C cancels the tasks: each gives its running job back to the queue (a task still
running 30 seconds later has its process killed, and its job is requeued as a dead worker's).

Each task runs in a fresh worker process (``max_calls=1``), as :class:`~aiqc.executors.Processes`
starts fresh interpreters: it pays its start-up once (imports, the user's functions, the
splitset's encoded data) and reuses it for every job it claims; a process whose task was
cancelled is never reused, and a GPU's memory is given back when the task ends.

The user's functions are stored by value in the database, so the nodes need only aiqc and
the deep-learning library installed, and a database every node can reach: a PostgreSQL
server for a cluster of several hosts (a SQLite file works only where every task runs on
the same host).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiqc.database import check_file, current_url
from aiqc.database.url import DatabaseURL
from aiqc.exceptions import MissingExtraError, ValidationError, WorkerError
from aiqc.executors._base import (Executor, RunSummary, finished_since, settle, show_progress,
                                  stopping_workers_on_error)
from aiqc.executors.local import own_folder
from aiqc.orm import Queue
from aiqc.runner import requeue_abandoned
from aiqc.states import JobState

logger = logging.getLogger(__name__)

#: retries Ray makes of a task whose worker process died (killed, out of memory, node lost)
MAX_RETRIES = 3
#: addresses of ``ray.init`` that start or join a cluster on this machine
_LOCAL_ADDRESSES = (None, "local", "auto")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "::1", "0.0.0.0", "::"}
_MISSING = "Ray is not installed: pip install 'aiqc[ray]' (the Ray executor runs workers as Ray tasks)."


def _import_ray() -> Any:
    """The ``ray`` module; :class:`~aiqc.exceptions.MissingExtraError` when it is not installed."""
    try:
        import ray
    except ImportError as error:
        raise MissingExtraError(_MISSING) from error
    return ray


class Ray(Executor):
    """Run jobs as tasks on a Ray cluster: ``queue.run_jobs(executor=Ray(...))``.

    Parameters
    ----------
    address : str or None
        The cluster to join, as ``ray.init(address=...)`` takes it: ``None`` starts a local
        cluster for the run and stops it afterwards (unless ``RAY_ADDRESS`` names one to
        join), as ``"local"`` always does; ``"auto"`` joins the cluster already started on
        this machine; ``"ray://host:10001"`` (Ray Client) or ``"host:6379"`` joins a remote
        one. Ray is connected to only for the run, unless it is already initialised in this
        process (``ray.init`` was called): then the run uses that cluster and leaves it be.
    cpus_per_job : float
        CPUs Ray reserves for each task (``num_cpus``; > 0). Each task runs one job at a
        time, with ``cpus_per_job`` intra-op threads unless ``run_jobs(threads=...)`` says.
    gpus_per_job : float
        GPUs Ray reserves for each task (``num_gpus``; >= 0, a fraction shares a GPU). Ray
        sets ``CUDA_VISIBLE_DEVICES`` for the task to the GPUs it assigned.
    workers : int or None
        Tasks to start. None: as many as the cluster's available resources hold (CPUs //
        ``cpus_per_job``, or GPUs // ``gpus_per_job`` when ``gpus_per_job`` > 0); either way
        at least 1 and at most the jobs left to run.
    """

    def __init__(self, address: str | None = None, cpus_per_job: float = 1, gpus_per_job: float = 0,
                 workers: int | None = None) -> None:
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ValidationError.expected("address", "None or a Ray address ('auto', 'ray://host:10001', "
                                           "'host:6379')", address)
        if not _is_number(cpus_per_job) or not cpus_per_job > 0:
            raise ValidationError.expected("cpus_per_job", "a number > 0", cpus_per_job)
        if not _is_number(gpus_per_job) or not gpus_per_job >= 0:
            raise ValidationError.expected("gpus_per_job", "a number >= 0", gpus_per_job)
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValidationError.expected("workers", "None or an integer >= 1", workers)
        self.address = address
        self.cpus_per_job = cpus_per_job
        self.gpus_per_job = gpus_per_job
        self.workers = workers

    def __repr__(self) -> str:
        return (f"Ray(address={self.address!r}, cpus_per_job={self.cpus_per_job!r}, "
                f"gpus_per_job={self.gpus_per_job!r}, workers={self.workers!r})")

    def default_threads(self) -> int:
        """Intra-op threads per task by default: the CPUs Ray reserves for it (at least 1)."""
        return max(1, int(self.cpus_per_job))

    def check(self, queue: Queue) -> None:
        """Refuse, before anything runs or is written: Ray not installed
        (:class:`~aiqc.exceptions.MissingExtraError`), or a database the cluster's nodes
        cannot reach (a SQLite file, or a PostgreSQL server on ``localhost``) with a remote
        cluster (:class:`~aiqc.exceptions.ValidationError`)."""
        ray = _import_ray()
        url = current_url()
        if url is None or not _only_this_host(url):
            return
        where = self._remote_address()
        if where is None and ray.is_initialized():
            where = _other_hosts(ray)
        if where is not None:
            raise _unreachable(url, where)

    def run(self, queue: Queue, threads: int, bar: Any) -> int:
        """Start the Ray tasks (connecting to, or starting, the cluster first) and follow them
        until every one has returned; return how many jobs finished meanwhile. Raises
        :class:`~aiqc.exceptions.WorkerError` when a task failed for good while jobs remained,
        or when every task returned yet jobs are still queued."""
        url = current_url()
        if url is None:
            raise ValidationError.expected("db", "a database opened with aiqc.setup()", None)
        ray = _import_ray()
        counts = queue.state_counts()
        if not (_jobs_left(queue, counts) or counts[JobState.RUNNING]):
            show_progress(bar, counts)
            return 0  # nothing to run: no cluster to start
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address)
        try:
            where = _other_hosts(ray) if _only_this_host(url) else None
            if where is not None:  # the address did not say so ("auto", RAY_ADDRESS): refused all the same
                raise _unreachable(url, where)
            requeue_abandoned(queue.id)  # counted as work left below, and taken by the tasks
            before = queue.state_counts()
            if not _jobs_left(queue, before):
                show_progress(bar, before)
                return 0
            return self._run_tasks(ray, queue, url, threads, bar, before)
        finally:
            if started:
                ray.shutdown()

    def _remote_address(self) -> str | None:
        """How the cluster is remote, from its address alone (``Ray address 'ray://...'``); None
        for this machine's cluster."""
        if self.address is None or self.address.strip().lower() in _LOCAL_ADDRESSES:
            return None
        host = _address_host(self.address)
        return None if host is not None and _is_this_host(host) else f"Ray address {self.address!r}"

    def _task_count(self, ray: Any, left: int) -> int:
        """``workers``, or as many tasks as the cluster's available resources hold; at least 1,
        at most ``left``."""
        count = self.workers
        if count is None:
            key, each = ("GPU", self.gpus_per_job) if self.gpus_per_job > 0 else ("CPU", self.cpus_per_job)
            count = int(ray.available_resources().get(key, 0) // each)
            if count < 1:  # busy now: the tasks wait their turn for the cluster's resources
                count = int(ray.cluster_resources().get(key, 0) // each)
        if not self._fits(ray):
            warnings.warn(f"aiqc: no node of the Ray cluster has {self.cpus_per_job} CPU(s) and {self.gpus_per_job} "
                          "GPU(s) for a task now: the tasks wait until one joins (an autoscaling cluster); Ctrl-C "
                          "stops them.", RuntimeWarning, stacklevel=6)  # the run_jobs() call
        return max(1, min(count, left))

    def _fits(self, ray: Any) -> bool:
        """Whether an alive node of the cluster holds the CPUs and GPUs of one task."""
        return any(node.get("Alive") and node.get("Resources", {}).get("CPU", 0) >= self.cpus_per_job
                   and node.get("Resources", {}).get("GPU", 0) >= self.gpus_per_job for node in ray.nodes())

    def _run_tasks(self, ray: Any, queue: Queue, url: DatabaseURL, threads: int, bar: Any,
                   before: dict[JobState, int]) -> int:
        """Submit the tasks, follow them, and check how they ended."""
        count = self._task_count(ray, _jobs_left(queue, before))
        # max_calls=1: a fresh worker process per task, as Processes starts fresh interpreters;
        # a process whose task was cancelled (Ctrl-C) is never reused, and GPU memory is freed
        remote = ray.remote(max_calls=1)(_work).options(num_cpus=self.cpus_per_job, num_gpus=self.gpus_per_job,
                                                        max_retries=MAX_RETRIES, name=f"aiqc-queue-{queue.id}")
        folders = [entry for entry in dict.fromkeys(os.path.abspath(e or os.curdir) for e in sys.path)
                   if own_folder(entry)]
        tasks: list[_Task] = []
        with stopping_workers_on_error(queue, lambda: _stop(ray, tasks)):
            for number in range(1, count + 1):
                tasks.append(_Task(number, remote.remote(url.secret, queue.id, threads, folders)))
            _follow(ray, queue, tasks, url, bar)
        after = settle(queue, bar)
        _check_tasks(queue, tasks, after)
        return finished_since(before, after)


def _work(db: str, queue_id: int, threads: int, folders: list[str]) -> int:
    """One Ray task: an aiqc worker on the queue; returns how many jobs it ran. ``folders``,
    the driver's own ``sys.path`` folders, come first on ``sys.path`` while it runs (where
    they exist on this node), so that a module importable there is importable here. The
    process leaves as it came: those folders removed, the database closed and forgotten."""
    from aiqc.database import clear_caches, setup
    from aiqc.orm import database_proxy
    from aiqc.runner import work

    added = [folder for folder in folders if folder not in sys.path and os.path.isdir(folder)]
    sys.path[:0] = added
    try:
        setup(db)
        return work(queue_id, threads=threads)
    finally:
        for folder in added:
            if folder in sys.path:
                sys.path.remove(folder)
        if database_proxy.obj is not None:
            database_proxy.obj.close()
            database_proxy.initialize(None)
        clear_caches()


@dataclass
class _Task:
    """One Ray task of a run and how it ended."""

    number: int
    ref: Any  # its ray.ObjectRef
    ran: int | None = None  # jobs it ran, once it returned
    error: str | None = None  # why it failed, once it failed for good
    death: bool = False  # it failed while jobs remained

    def report(self) -> str:
        """``task 2 returned after 3 job(s)`` or ``task 2 failed: ...``."""
        if self.error is not None:
            return f"task {self.number} {self.error}"
        return f"task {self.number} returned after {self.ran} job(s)"


def _follow(ray: Any, queue: Queue, tasks: list[_Task], url: DatabaseURL, bar: Any, every: float = 0.5) -> None:
    """Wait for every task to return, updating the bar from the database; note each task that
    fails for good while jobs remain, and put the jobs it left running back at once, so that
    the tasks still running can take them."""
    pending = {task.ref: task for task in tasks}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=every, fetch_local=False)
        check_file()  # deleted or replaced: stop the tasks at once, their results would be lost
        for ref in ready:
            task = pending.pop(ref)
            try:
                task.ran = ray.get(ref)
            except ray.exceptions.RayError as error:
                task.error = url.scrub(_describe(ray, error))
                requeued = requeue_abandoned(queue.id)
                counts = queue.state_counts()
                task.death = bool(requeued or _jobs_left(queue, counts) or counts[JobState.RUNNING])
                if task.death:
                    logger.warning("Ray task %d of queue %d %s", task.number, queue.id, task.error)
                else:
                    warnings.warn(f"aiqc: queue {queue.id}: Ray {task.report()}\n(it ended after the queue was "
                                  "drained: no job was lost)", RuntimeWarning, stacklevel=6)  # the run_jobs() call
        show_progress(bar, queue.state_counts())


def _describe(ray: Any, error: Exception) -> str:
    """How a task failed, in one line: the exception raised inside it, or what Ray says
    happened to its worker process (after its retries)."""
    if isinstance(error, ray.exceptions.RayTaskError):
        cause = getattr(error, "cause", None)
        if isinstance(cause, BaseException):
            lines = [line for line in str(cause).splitlines() if line.strip()]
            return f"raised {type(cause).__name__}" + (f": {lines[0].strip()}" if lines else "")
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    retried = "" if isinstance(error, ray.exceptions.TaskCancelledError) else f" (after {MAX_RETRIES} retries)"
    return f"failed{retried}: {type(error).__name__}" + (f": {lines[0]}" if lines else "")


def _check_tasks(queue: Queue, tasks: list[_Task], counts: dict[JobState, int]) -> None:
    """Raise :class:`~aiqc.exceptions.WorkerError` if a task failed while jobs remained, or if
    every task returned yet jobs are still queued: either way, work asked for did not run."""
    dead = [task for task in tasks if task.death]
    if not dead and not counts[JobState.QUEUED]:
        return
    summary = RunSummary.of(queue, 0, False)
    if dead:
        head = (f"{len(dead)} of {len(tasks)} Ray task(s) of queue {queue.id} failed while jobs remained: "
                f"{dead[0].report()} (now: {summary}).")
    else:
        head = (f"every Ray task of queue {queue.id} returned, yet {counts[JobState.QUEUED]} job(s) are still "
                f"queued (now: {summary}).")
    details = ["    " + task.report() for task in (dead or tasks)]
    raise WorkerError("\n".join([head, *details, "Any job a failed task left running went back to the queue (on "
                                 "another host: once its heartbeat is stale); fix the cause, then run_jobs() again "
                                 "to finish the remaining jobs."]))


def _stop(ray: Any, tasks: list[_Task], grace: float = 30.0) -> None:
    """Cancel the tasks still running (Ctrl-C): an interrupt first, so that each gives its
    running job back to the queue; after ``grace`` seconds, or a second Ctrl-C, their
    worker processes are killed."""
    running = [task.ref for task in tasks if task.ran is None and task.error is None]
    if not running:
        return
    try:
        for ref in running:
            ray.cancel(ref, force=False)
        _, running = ray.wait(running, num_returns=len(running), timeout=grace, fetch_local=False)
    except KeyboardInterrupt:
        pass
    finally:
        for ref in running:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished, or the cluster is gone
                logger.debug("could not cancel a Ray task", exc_info=True)


def _jobs_left(queue: Queue, counts: dict[JobState, int]) -> int:
    """Jobs still to run: queued ones and trials of a sampled search not created yet."""
    return counts[JobState.QUEUED] + max(0, queue.expected_job_count - sum(counts.values()))


def _is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (not a bool, not NaN)."""
    import numbers

    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value


def _address_host(address: str) -> str | None:
    """The host of a Ray address (``ray://host:port``, ``host:port``, ``host``); None when it
    names none."""
    text = address.strip()
    try:
        return urlsplit(text if "://" in text else f"//{text}").hostname
    except ValueError:
        return None


def _is_this_host(host: str) -> bool:
    """Whether ``host`` names this machine: a loopback name or address, its host name, or one
    of the addresses that name resolves to (nothing else is looked up)."""
    host = host.lower().rstrip(".")
    if host in _LOOPBACK_NAMES or host.startswith("127."):
        return True
    name = socket.gethostname().lower()
    if host in (name, name.partition(".")[0]):
        return True
    try:
        return host in socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        return False


def _only_this_host(url: DatabaseURL) -> bool:
    """Whether only this machine can reach the database: a SQLite file, or a server on a
    loopback address (or a Unix socket)."""
    if url.is_sqlite:
        return True
    host = (url.host or "localhost").lower()
    return host.startswith("/") or host in _LOOPBACK_NAMES or host.startswith("127.")


def _other_hosts(ray: Any) -> str | None:
    """``a Ray cluster with node(s) on other hosts ('gpu-1', 'gpu-2')`` when an alive node of
    the cluster Ray is connected to is on another host than this one; None otherwise."""
    others = set()
    for node in ray.nodes():
        name, address = str(node.get("NodeManagerHostname") or ""), str(node.get("NodeManagerAddress") or "")
        if node.get("Alive") and not (name and _is_this_host(name)) and not (address and _is_this_host(address)):
            others.add(name or address)
    if not others:
        return None
    return f"a Ray cluster with node(s) on other hosts ({', '.join(map(repr, sorted(others)))})"


def _unreachable(url: DatabaseURL, where: str) -> ValidationError:
    """The error for a database that some of the cluster's hosts cannot reach."""
    if url.is_sqlite:
        received = f"the SQLite file {str(url.path)!r}"
        advice = ("A SQLite file works only where every worker is on the same host: use "
                  "postgresql://user:password@host:port/dbname (pip install 'aiqc[postgres]').")
    else:
        received = f"the PostgreSQL server at {url.address!r}, which other hosts cannot reach at that name"
        advice = "Name the server by an address every Ray node can reach (postgresql://user:password@host:port/dbname)."
    return ValidationError(f"executor: expected a database every Ray node can reach; received {received} with "
                           f"{where}. {advice}")
