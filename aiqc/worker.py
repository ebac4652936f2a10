"""Join a queue from another terminal, or from another machine:

    python -m aiqc.worker --queue 3 [--db path/to/aiqc.sqlite3 | --db postgresql://...] [--threads 1]

(``aiqc worker`` is the same.) The database is ``--db``, else ``AIQC_DB`` (prefer the variable
for a PostgreSQL URL: a command line is visible to every user of the machine). The worker
claims jobs from the shared database until none is QUEUED, then exits with status 0. It exits
with status 1 and one line on stderr when it cannot work (no such database file, an
unreachable server, no such queue) or when the database fails under it (read-only, full,
locked, corrupt, unreachable, or the file deleted or replaced: checked between jobs and by
the heartbeat; the running job goes back to the queue where the database still takes the
write), and with status 130 when interrupted (Ctrl-C), after giving its running job back to
the queue. ``queue.run_jobs(workers=N)`` starts N of these.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

PROG = "python -m aiqc.worker"


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1; received {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Run jobs of the ``--queue`` until none is QUEUED. The exit status: 0 when the queue is
    drained; 1, with one line on stderr, when the worker cannot work (database file or queue
    missing) or the database fails under it (a :class:`~aiqc.exceptions.DatabaseError`); 130 when interrupted; argparse's 2 on bad arguments."""
    parser = argparse.ArgumentParser(prog=PROG, description="Run jobs of an aiqc queue.")
    parser.add_argument("--queue", type=int, required=True, help="queue id (queue.id)")
    parser.add_argument("--db", help="SQLite file or postgresql:// URL (default: AIQC_DB or the user data directory)")
    parser.add_argument("--threads", type=_positive_int, default=None, help="intra-op threads for TF/torch")
    args = parser.parse_args(argv)

    from aiqc.database import translate
    from aiqc.exceptions import AIQCError, DatabaseError
    from aiqc.runner import default_threads, work

    try:
        queue = _open_queue(args.db, args.queue)
    except (AIQCError, ValueError, LookupError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        sys.stderr.write(f"{PROG}: error: {message}\n")
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        ran = work(queue.id, threads=args.threads or default_threads(1))
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted; the running job went back to queue {queue.id}\n")
        return 130
    except Exception as error:  # noqa: BLE001 - a database fault is one line; anything else a traceback
        fault = translate(error)
        if not isinstance(fault, DatabaseError):
            raise
        message = str(fault).splitlines()[0]
        sys.stderr.write(f"{PROG}: error: {type(fault).__name__}: {message}\n")
        return 1
    counts = {state.value: n for state, n in queue.state_counts().items()}
    logging.getLogger("aiqc.worker").info("worker ran %d job(s); %s", ran, counts)
    return 0


def _open_queue(db: str | None, queue_id: int) -> Any:
    """Open an existing database (never create a SQLite file: a worker on a new, empty file
    would wait for nothing) and return its queue ``queue_id``."""
    import aiqc
    from aiqc.database.url import parse
    from aiqc.exceptions import NotFoundError
    from aiqc.orm import Queue

    url = parse(db)
    if url.is_sqlite and not url.path.is_file():
        raise NotFoundError(f"--db: expected an existing aiqc database file; {str(url.path)!r} does not exist.")
    shown = aiqc.setup(url)
    queue = Queue.get_or_none(Queue.id == queue_id)
    if queue is None:
        raise NotFoundError(f"--queue: expected the id of a queue in {str(shown)!r}; received {queue_id}, "
                            "which no queue has.")
    return queue


if __name__ == "__main__":
    raise SystemExit(main())
