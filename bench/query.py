"""Benchmark: the result queries over 10,000 finished jobs, against a raw read measured in the same run.

    python bench/query.py [--jobs 10000] [--repeats 3]

:func:`populate` builds the database once (also imported by other benchmarks): the iris
splitset, a PyTorch classification_multi queue made by ``aiqc.Experiment.make`` from a
3-hyperparameter grid of ``--jobs`` combinations (1 repeat, no folds), then every job marked
COMPLETE with synthetic rows written in bulk: each metric of the experiment's metric set on
train / validation / test, and 10 epochs of history (loss, val_loss, accuracy, val_accuracy).

Each query then runs in a fresh child process (``import aiqc; aiqc.setup(path)``, pandas
imported, then the one call timed, the queue's lookup and the process's first query
included), ``--repeats`` times, interleaved:
``queue.metrics_to_pandas()``, ``queue.metrics_aggregate()``, ``queue.best_job()``,
``queue.best_params()`` and ``aiqc.list_queues()``. The baseline, timed the same way, is a
raw ``sqlite3`` ``SELECT * FROM metric`` fetched whole: reading the rows the queries summarise.

Target (issue #14): each query <= 0.3 s over 10,000 jobs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

TARGET_SECONDS = 0.3
EPOCHS = 10
HISTORY = ("loss", "val_loss", "accuracy", "val_accuracy")
SPLITS = ("train", "validation", "test")


def _grid(jobs: int) -> dict[str, list[int]]:
    """Three hyperparameters whose lists multiply to exactly ``jobs`` (as even as its divisors allow)."""
    first = next(n for n in range(round(jobs ** (1 / 3)), 0, -1) if jobs % n == 0)
    rest = jobs // first
    second = next(n for n in range(math.isqrt(rest), 0, -1) if rest % n == 0)
    sizes = {"neuron_count": rest // second, "batch_size": second, "epoch_count": first}
    return {name: list(range(1, size + 1)) for name, size in sizes.items()}


def _insert(model: Any, fields: list[Any], rows: list[tuple]) -> None:
    """``rows`` inserted with one prepared statement (``executemany``), ``created_at`` appended (as text)."""
    sql, template = model.insert_many([(None,) * len(fields)], fields=fields).sql()
    defaults = tuple(str(value) for value in template[len(fields):])
    model._meta.database.cursor().executemany(sql, [row + defaults for row in rows])


def populate(path: Path, jobs: int = 10_000, seed: int = 0) -> int:
    """Create the aiqc SQLite database at ``path`` with one queue of ``jobs`` COMPLETE jobs
    (synthetic metrics on the three splits and 10 epochs of history each); return the queue id."""
    import aiqc
    from aiqc import datum
    from aiqc.orm import HistoryEntry, Job, JobState, Metric, database_proxy
    from aiqc.orm.base import utcnow

    import fns

    aiqc.setup(path)
    database = database_proxy.obj
    splitset = fns.reference_make(datum.to_pandas("iris.tsv"), random_state=seed)
    queue = aiqc.Experiment.make(library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build,
                                 fn_train=fns.torch_train, hyperparameters=_grid(jobs), splitset_id=splitset.id,
                                 repeat_count=1, seed=seed)
    names = queue.experiment.metric_set.names
    rng = random.Random(seed)
    now = utcnow()
    job_ids = [j for (j,) in Job.select(Job.id).where(Job.queue == queue).order_by(Job.id).tuples()]
    metrics, history, updates = [], [], []
    for job_id in job_ids:
        skill = rng.uniform(0.3, 0.95)  # one job's quality, so its metrics agree
        for split in SPLITS:
            for name in names:
                if "loss" in name:
                    value = rng.uniform(0.05, 1.5) * (1.2 - skill)
                else:
                    value = min(1.0, skill + rng.gauss(0, 0.05))
                metrics.append((job_id, split, name, value))
        for name in HISTORY:  # in the order of the unique index (job, name, epoch)
            for epoch in range(EPOCHS):
                progress = (epoch + 1) / EPOCHS
                value = (1.2 - skill * progress) if "loss" in name else skill * progress
                history.append((job_id, epoch, name, value + rng.gauss(0, 0.01)))
        seconds = rng.uniform(0.5, 5.0)
        updates.append((Job.state.db_value(JobState.COMPLETE), str(now - dt.timedelta(seconds=seconds)), str(now),
                        seconds, job_id))
    # UPDATE "job" SET "state" = ?, "started_at" = ?, "finished_at" = ?, "seconds" = ? WHERE ("job"."id" = ?)
    placeholders = {Job.state: JobState.COMPLETE, Job.started_at: now, Job.finished_at: now, Job.seconds: 0.0}
    update, _ = Job.update(placeholders).where(Job.id == 0).sql()
    database.execute_sql("PRAGMA foreign_keys = 0")  # every job id exists: checking each row is 2/3 of the time
    try:
        with database.atomic():
            _insert(Metric, [Metric.job, Metric.split, Metric.name, Metric.value], metrics)
            _insert(HistoryEntry, [HistoryEntry.job, HistoryEntry.epoch, HistoryEntry.name, HistoryEntry.value],
                    history)
            database.cursor().executemany(update, updates)
    finally:
        database.execute_sql("PRAGMA foreign_keys = 1")
    return queue.id


QUERIES = ("metrics_to_pandas", "metrics_aggregate", "best_job", "best_params", "list_queues")
BASELINE = "raw_select"


def child(path: str, queue_id: int, method: str) -> dict:
    """Time one call in this fresh process, after ``import aiqc; aiqc.setup(path)`` (the queue's
    lookup is timed with it: the first query of the process)."""
    if method == BASELINE:
        import sqlite3

        start = time.perf_counter()
        connection = sqlite3.connect(path)
        rows = connection.execute("SELECT * FROM metric").fetchall()
        seconds = time.perf_counter() - start
        connection.close()
        return dict(method=method, seconds=seconds, size=len(rows))
    import aiqc
    from aiqc.orm import Queue

    aiqc.setup(path)
    start = time.perf_counter()
    importlib.import_module("pandas")  # what every query imports first: import costs are not what we measure

    pandas_seconds = time.perf_counter() - start
    start = time.perf_counter()
    if method == "list_queues":
        result = aiqc.list_queues()
    else:
        result = getattr(Queue.get_by_id(queue_id), method)()
    seconds = time.perf_counter() - start
    size = len(result) if hasattr(result, "__len__") else 1
    return dict(method=method, seconds=seconds, size=size, pandas_seconds=pandas_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("PATH", "QUEUE_ID", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, queue_id, method = args.child
        print(json.dumps(child(path, int(queue_id), method)))
        return

    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "bench.sqlite3"
        start = time.perf_counter()
        queue_id = populate(path, args.jobs)
        print(f"populate: {args.jobs:,} COMPLETE jobs in {time.perf_counter() - start:.1f} s")
        from aiqc.orm import database_proxy

        database_proxy.obj.close()
        results: dict[str, list[dict]] = {m: [] for m in (BASELINE, *QUERIES)}
        for _ in range(args.repeats):
            for method in results:  # interleaved, so drift on a noisy machine hits all alike
                out = subprocess.run([sys.executable, __file__, "--child", str(path), str(queue_id), method],
                                     capture_output=True, text=True)
                if out.returncode:
                    sys.exit(f"child {method} failed:\n{out.stderr}")
                results[method].append(json.loads(out.stdout.strip().splitlines()[-1]))

    medians = {m: statistics.median(r["seconds"] for r in runs) for m, runs in results.items()}
    baseline = medians[BASELINE]
    print(f"query benchmark, {args.jobs:,} jobs: median of {args.repeats} runs each (a fresh child process per run)")
    print(f"  {'baseline: sqlite3 SELECT * FROM metric':<40} {baseline:7.3f} s   "
          f"({results[BASELINE][0]['size']:,} rows)")
    for method in QUERIES:
        seconds = medians[method]
        verdict = "pass" if seconds <= TARGET_SECONDS else "FAIL"
        runs = ", ".join(format(r["seconds"], ".3f") for r in results[method])
        print(f"  {method:<40} {seconds:7.3f} s   {seconds / baseline:5.1f}x baseline   target <= {TARGET_SECONDS} s: "
              f"{verdict}   (runs: {runs})")
    pandas_seconds = statistics.median(r["pandas_seconds"] for m in QUERIES for r in results[m])
    print(f"  not included: importing pandas before the first query, {pandas_seconds:.3f} s (median)")


if __name__ == "__main__":
    main()
