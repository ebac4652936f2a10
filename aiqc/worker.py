"""Join a queue from another terminal:

    python -m aiqc.worker --queue 3 [--db path/to/aiqc.sqlite3] [--threads 1]

The worker claims jobs from the shared database until none is QUEUED, then exits.
"""

from __future__ import annotations

import argparse
import logging


def main(argv: list[str] | None = None) -> int:
    """Run jobs of the ``--queue`` until none is QUEUED; the exit status (0)."""
    parser = argparse.ArgumentParser(prog="python -m aiqc.worker", description="Run jobs of an aiqc queue.")
    parser.add_argument("--queue", type=int, required=True, help="queue id (queue.id)")
    parser.add_argument("--db", help="SQLite file (default: AIQC_DB or the user data directory)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads for TF/torch")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    import aiqc
    from aiqc.orm import Queue
    from aiqc.runner import default_threads, work

    aiqc.setup(args.db)
    queue = Queue.get_by_id(args.queue)
    ran = work(queue.id, threads=args.threads or default_threads(1))
    counts = {state.value: n for state, n in queue.state_counts().items()}
    logging.getLogger("aiqc.worker").info("worker ran %d job(s); %s", ran, counts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
