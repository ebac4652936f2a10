"""Where a queue's jobs run: ``queue.run_jobs(executor=...)``.

- :class:`InProcess` (the default): one job at a time in this process.
- :class:`Processes` (``run_jobs(workers=N)``): N local worker processes.
- :class:`Ray` (``pip install 'aiqc[ray]'``): workers as Ray tasks on a Ray cluster, with
  CPUs and GPUs requested through Ray's resources.

Whatever the executor, workers claim jobs from the shared database, which records every
state: a queue can mix executors and ``aiqc worker`` processes, and each job runs once.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

from aiqc.exceptions import ValidationError
from aiqc.executors._base import Executor, RunSummary, progress_bar
from aiqc.executors.local import InProcess, Processes
from aiqc.runner import requeue_failed
from aiqc.states import JobState

if TYPE_CHECKING:
    from aiqc.executors.ray import Ray
    from aiqc.orm import Queue

__all__ = ["Executor", "InProcess", "Processes", "Ray", "RunSummary", "run_queue", "resolve"]

logger = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    """``aiqc.executors.Ray`` without importing Ray's module (or Ray) until it is used."""
    if name == "Ray":
        from aiqc.executors.ray import Ray

        return Ray
    raise AttributeError(f"module 'aiqc.executors' has no attribute {name!r}")


def resolve(executor: Executor | None, workers: int) -> Executor:
    """The executor a ``run_jobs`` call asked for: ``executor``, or ``workers`` local processes
    (one: in this process)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValidationError.expected("workers", "an integer >= 1", workers)
    if executor is None:
        return InProcess() if workers == 1 else Processes(workers)
    if not isinstance(executor, Executor):
        raise ValidationError.expected(
            "executor", "None or an executor of aiqc.executors (InProcess(), Processes(workers=N), Ray(...))", executor)
    if workers != 1:
        raise ValidationError(f"workers: expected 1 (the default) when executor= is given; received workers={workers} "
                              f"with executor={executor!r}; set the workers on the executor instead.")
    return executor


def run_queue(queue: Queue, workers: int = 1, threads: int | None = None, progress: bool = True,
              retry_failed: bool = False, executor: Executor | None = None) -> RunSummary:
    """Run a queue's remaining jobs with an executor (see :func:`resolve`), with a progress bar
    read from the database; Ctrl-C stops cleanly. Returns the :class:`RunSummary`; raises
    :class:`~aiqc.exceptions.WorkerError` if a worker died while jobs remained. Everything is
    checked before anything runs or is written."""
    executor = resolve(executor, workers)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValidationError.expected("threads", "None or an integer >= 1", threads)
    executor.check(queue)
    threads = threads or executor.default_threads()
    if retry_failed:
        requeue_failed(queue.id)
    bar = progress_bar(queue, progress)
    ran, interrupted = 0, False
    try:
        ran = executor.run(queue, threads, bar)
    except KeyboardInterrupt:
        interrupted = True
        logger.warning("interrupted: the running jobs went back to the queue; run_jobs() again to finish")
    finally:
        bar.close()
    summary = RunSummary.of(queue, ran, interrupted)
    (logger.warning if summary.failed else logger.info)("%s", summary)
    _warn_unfinished(queue, summary)
    return summary


def _warn_unfinished(queue: Queue, summary: RunSummary) -> None:
    """A run that left work undone says so where a user sees it: a Python warning."""
    from aiqc.orm import Job

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
