"""Running a queue on this machine: in this process, or in local worker processes.

:class:`InProcess` (the default) claims and runs jobs one at a time in the caller's process.
:class:`Processes` starts N ``python -m aiqc.worker`` processes (fresh interpreters: the
caller's script is never re-imported, so no ``if __name__ == "__main__":`` guard is needed),
follows them through the database, and raises :class:`~aiqc.exceptions.WorkerError`, with
the end of its stderr, when one dies while jobs remain. Each worker pays its start-up once
(imports, the user's functions, the splitset's encoded data) and reuses it for every job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from aiqc.config import ENV_DB
from aiqc.database import check_file, current_url
from aiqc.exceptions import ValidationError
from aiqc.executors._base import (Executor, RunSummary, finished_since, settle, show_progress,
                                  stopping_workers_on_error)
from aiqc.orm import Job, Queue
from aiqc.runner import requeue_abandoned, work
from aiqc.states import JobState

logger = logging.getLogger(__name__)


class InProcess(Executor):
    """Run jobs one at a time in this process (``run_jobs()``'s default)."""

    workers = 1

    def __repr__(self) -> str:
        return "InProcess()"

    def run(self, queue: Queue, threads: int, bar: Any) -> int:
        """Claim and run jobs here until none is left, advancing ``bar`` per job."""
        def on_done(state: JobState) -> None:
            bar.update(1)  # processed: complete, pruned or failed
            if state is JobState.FAILED:
                bar.set_postfix(failed=queue.state_counts()[JobState.FAILED], refresh=False)

        return work(queue.id, threads=threads, on_done=on_done)


class Processes(Executor):
    """Run jobs in ``workers`` local worker processes (``run_jobs(workers=N)``), each with
    ``threads`` intra-op threads (default: this machine's cores shared among them)."""

    def __init__(self, workers: int = 2) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValidationError.expected("workers", "an integer >= 1", workers)
        self.workers = workers

    def __repr__(self) -> str:
        return f"Processes(workers={self.workers})"

    def run(self, queue: Queue, threads: int, bar: Any) -> int:
        """Start the worker processes and follow them until every one has exited."""
        return _run_processes(queue, self.workers, threads, bar)


def worker_command(queue_id: int, threads: int) -> list[str]:
    """The command line of one local worker process of :class:`Processes`:
    ``python -m aiqc.worker --queue ID --threads T`` with this interpreter; the database
    reaches it as ``AIQC_DB`` in :func:`worker_environment` (never on the command line, where
    ``ps`` would show a PostgreSQL password). A fresh interpreter never re-imports the
    caller's script or notebook (the user's functions are stored by value in the database).
    Called once per worker, so a test can replace it."""
    return [sys.executable, "-m", "aiqc.worker", "--queue", str(queue_id), "--threads", str(threads)]


def worker_environment() -> dict[str, str]:
    """The environment of a worker process: this process's, with ``AIQC_DB`` naming the open
    database, and this process's own ``sys.path`` folders (the script's or notebook's folder,
    folders added at run time; not the standard library nor site-packages) put first in
    ``PYTHONPATH``, so that a module importable here is importable in the worker."""
    environment = dict(os.environ)
    url = current_url()
    if url is not None:
        environment[ENV_DB] = url.secret
    entries = [os.path.abspath(entry or os.curdir) for entry in sys.path]
    inherited = [entry for entry in environment.get("PYTHONPATH", "").split(os.pathsep) if entry]
    folders = [entry for entry in entries if own_folder(entry)]
    pythonpath = list(dict.fromkeys(folders + inherited))
    if pythonpath:
        environment["PYTHONPATH"] = os.pathsep.join(pythonpath)
    return environment


def own_folder(entry: str) -> bool:
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
    environment = worker_environment()
    before = queue.state_counts()
    started: list[_Worker] = []
    with contextlib.ExitStack() as files:
        with stopping_workers_on_error(queue, lambda: _stop(started)):
            for number in range(1, workers + 1):
                stderr = files.enter_context(tempfile.TemporaryFile(prefix="aiqc-worker-", suffix=".stderr"))
                process = subprocess.Popen(worker_command(queue.id, threads), env=environment,
                                           stdin=subprocess.DEVNULL, stderr=stderr)
                started.append(_Worker(number, process, stderr))
            _follow(queue, started, bar)
        after = settle(queue, bar)
        _check_workers(queue, started, after)
    return finished_since(before, after)


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
            show_progress(bar, counts)
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
    summary = RunSummary.of(queue, 0, False)
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
