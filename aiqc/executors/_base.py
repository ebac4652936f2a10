"""What every executor shares: the interface, the summary of a run, and the progress bar read
from the database (which records every job's state, whoever runs it)."""

from __future__ import annotations

import abc
import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from aiqc.orm import Queue
from aiqc.states import JobState


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

    @classmethod
    def of(cls, queue: Queue, ran: int, interrupted: bool) -> RunSummary:
        """The queue's state now, with how many jobs this call ran."""
        counts = queue.state_counts()
        return cls(queue.id, counts[JobState.COMPLETE], counts[JobState.FAILED], counts[JobState.QUEUED],
                   counts[JobState.RUNNING], ran, interrupted, counts[JobState.PRUNED])


logger = logging.getLogger(__name__)


class Executor(abc.ABC):
    """Where a queue's jobs run. Every executor's workers claim jobs from the database, so a
    queue can be shared by executors of several kinds at once (and by ``aiqc worker``
    processes started by hand), and each job still runs exactly once."""

    #: worker processes (or tasks) this executor runs at once; sets the default threads per
    #: worker (None: decided at run time, e.g. from a cluster's resources)
    workers: int | None = 1

    def check(self, queue: Queue) -> None:
        """Refuse, before anything runs or is written, what cannot work with this database."""

    @abc.abstractmethod
    def run(self, queue: Queue, threads: int, bar: Any) -> int:
        """Run the queue's remaining jobs with ``threads`` intra-op threads per worker,
        advancing ``bar``; return how many jobs finished during the call. Ctrl-C (a
        KeyboardInterrupt) leaves after the running jobs went back to the queue."""

    def default_threads(self) -> int:
        """Intra-op threads per worker by default: this machine's cores shared among its workers."""
        return max(1, (os.cpu_count() or 1) // max(1, self.workers or 1))


def finished(counts: dict[JobState, int]) -> int:
    """How many jobs are in a finished state."""
    return sum(n for state, n in counts.items() if state.is_finished)


def progress_bar(queue: Queue, enabled: bool) -> Any:
    """The "Training Models" bar, starting at the jobs already finished."""
    from tqdm.auto import tqdm

    return tqdm(total=queue.expected_job_count, initial=finished(queue.state_counts()), desc="Training Models",
                disable=not enabled, unit="job")


def show_progress(bar: Any, counts: dict[JobState, int]) -> None:
    """Move ``bar`` to the finished jobs in ``counts``, failed and running ones beside it."""
    bar.n = finished(counts)
    bar.set_postfix(failed=counts[JobState.FAILED], running=counts[JobState.RUNNING], refresh=True)


def finished_since(before: dict[JobState, int], after: dict[JobState, int]) -> int:
    """Jobs that reached a finished state between two counts."""
    return sum(max(0, after[s] - before[s]) for s in JobState.finished())


@contextlib.contextmanager
def stopping_workers_on_error(queue: Queue, stop: Callable[[], None]) -> Iterator[None]:
    """Any error in the block (Ctrl-C above all) calls ``stop`` (no worker outlives
    ``run_jobs``), then puts the jobs the workers left running back in the queue, and
    re-raises. Not after the database file was deleted or replaced: a write would go to the
    deleted file."""
    from aiqc.exceptions import DatabaseGoneError
    from aiqc.runner import requeue_abandoned

    try:
        yield
    except BaseException as error:
        stop()
        if not isinstance(error, DatabaseGoneError):
            try:
                requeue_abandoned(queue.id)
            except Exception:  # noqa: BLE001 - must not mask the error being raised
                logger.warning("could not requeue the jobs the workers left running; the next run_jobs() will",
                               exc_info=True)
        raise


def settle(queue: Queue, bar: Any) -> dict[JobState, int]:
    """Once every worker has ended: refuse results a deleted or replaced database file lost,
    requeue whatever a dead worker left running, show the final counts and return them."""
    from aiqc.database import check_file
    from aiqc.runner import requeue_abandoned

    check_file()
    requeue_abandoned(queue.id)
    counts = queue.state_counts()
    show_progress(bar, counts)
    return counts
