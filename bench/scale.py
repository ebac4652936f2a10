"""Benchmark: scaling out, on one machine, in ratios measured in the same run.

    python bench/scale.py [--parts cpu claims ray] [--postgresql URL]

1. ``cpu``: CPU-bound PyTorch jobs of about 1-2 s, with 1 local worker process and with 2
   (``aiqc.executors.Processes``, 1 intra-op thread each). Both pay the same start-up, so the
   ratio is throughput, start-up included. Target (issue #13): 2 workers >= 1.8x one.
2. ``claims``: claim-and-record throughput, no-op jobs (build, no training, predict three
   splits, metrics, store everything) and sleep-bound jobs (0.5 s each), with 1, 2, 4 and 8
   worker processes, on SQLite and on PostgreSQL. Throughput is measured from the database's
   own timestamps over the window when every worker was busy (after the last worker's first
   claim, before the first worker's last record), so start-up is left out. Target: sleep-bound
   jobs with 8 workers >= 6x one worker, which shows that the claim path is not the bottleneck.
3. ``ray``: the Ray executor's per-job overhead against local processes on the same jobs.

PostgreSQL: ``--postgresql postgresql://user:password@host:port/dbname`` names a server where
the benchmark may create and drop databases; without it, a throwaway server is started with
``initdb`` + ``pg_ctl`` (tests/pgserver.py) when the binaries are found, and the PostgreSQL rows
are skipped otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

SLEEP_SECONDS = 0.5


def cpu_build(features_shape: tuple, label_shape: tuple, **hp: Any) -> Any:
    """A wide MLP, so that a job is CPU-bound."""
    import torch

    width = hp["width"]
    return torch.nn.Sequential(torch.nn.Linear(features_shape[0], width), torch.nn.ReLU(),
                               torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, label_shape[0]))


def cpu_train(model: Any, loser: Any, optimizer: Any, samples_train: dict, samples_evaluate: dict, **hp: Any) -> Any:
    """Full-batch steps for ``hp['steps']`` steps: about 1-2 s with one thread."""
    features, labels = samples_train["features"], samples_train["labels"]
    for _ in range(hp["steps"]):
        optimizer.zero_grad()
        loss = loser(model(features), labels)
        loss.backward()
        optimizer.step()
    return model


def noop_build(features_shape: tuple, label_shape: tuple, **hp: Any) -> Any:
    """The smallest model: one linear layer."""
    import torch

    return torch.nn.Linear(features_shape[0], label_shape[0])


def noop_train(model: Any, loser: Any, optimizer: Any, samples_train: dict, samples_evaluate: dict, **hp: Any) -> Any:
    """No training (``sleep`` > 0: wait that long, as a job bound by I/O or a GPU would)."""
    import time

    if hp.get("sleep"):
        time.sleep(hp["sleep"])
    return model


def _queue(splitset: Any, build: Any, train: Any, jobs: int, **constants: Any) -> Any:
    import aiqc

    grid = {"job": list(range(jobs)), **{k: [v] for k, v in constants.items()}}
    return aiqc.Experiment.make(library="pytorch", analysis_type="classification_multi", fn_build=build,
                                fn_train=train, hyperparameters=grid, repeat_count=1, splitset_id=splitset.id, seed=7)


def _splitset(rows: int = 600) -> Any:
    """Iris repeated to ``rows`` rows, with validation and test splits."""
    import pandas as pd

    from aiqc import datum
    from fns import reference_make

    iris = datum.to_pandas("iris.tsv")
    frame = pd.concat([iris] * max(1, rows // len(iris)), ignore_index=True)
    return reference_make(frame, random_state=0)


@contextlib.contextmanager
def _database(kind: str, postgresql: str | None, server: Any) -> Iterator[str]:
    """A fresh database of ``kind``, opened with aiqc.setup; dropped afterwards."""
    import aiqc
    from aiqc.database import destroy_db

    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            url = str(Path(folder) / "scale.sqlite3")
            aiqc.setup(url)
            try:
                yield url
            finally:
                destroy_db(confirm=True)
        return
    import psycopg

    admin = postgresql or server.admin_url
    name = f"aiqc_scale_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + f"/{name}"
    aiqc.setup(url)
    try:
        yield url
    finally:
        destroy_db(confirm=True)
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _run(queue: Any, executor: Any, threads: int = 1) -> float:
    """Wall seconds of ``run_jobs`` with ``executor``; every job must end COMPLETE."""
    from aiqc.states import JobState

    start = time.perf_counter()
    summary = queue.run_jobs(executor=executor, threads=threads, progress=False)
    seconds = time.perf_counter() - start
    if summary.complete != queue.jobs.count():
        raise SystemExit(f"bench: expected every job COMPLETE; {summary} ({JobState.COMPLETE} only counts)")
    return seconds


def _busy_throughput(queue: Any) -> tuple[float, float]:
    """(jobs per second, median seconds per job) once workers have started, from the
    database's own timestamps: the sum over workers of each worker's jobs divided by the time
    from its first claim to its last record (each worker's start-up is left out)."""
    from aiqc.orm import Job

    per_worker: dict[str, list[tuple[Any, Any, float]]] = {}
    for worker, started, finished, seconds in queue.jobs.select(
            Job.worker, Job.started_at, Job.finished_at, Job.seconds).tuples():
        per_worker.setdefault(worker, []).append((started, finished, seconds))
    rate = 0.0
    for spans in per_worker.values():
        span = (max(f for _, f, _ in spans) - min(s for s, _, _ in spans)).total_seconds()
        rate += len(spans) / span if span > 0 else float("nan")
    return rate, statistics.median(s for spans in per_worker.values() for _, _, s in spans)


def part_cpu(jobs: int, rounds: int) -> None:
    """CPU-bound PyTorch jobs: 2 local worker processes vs 1."""
    import aiqc
    from aiqc.executors import Processes

    print(f"\n1. CPU-bound PyTorch jobs ({jobs} jobs, 1 thread per worker, start-up included), SQLite")
    with _database("sqlite", None, None):
        splitset = _splitset()
        times: dict[int, list[float]] = {1: [], 2: []}
        busy: dict[int, list[float]] = {1: [], 2: []}
        per_job: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(rounds):
            for workers in (1, 2):
                queue = _queue(splitset, cpu_build, cpu_train, jobs, width=256, steps=700)
                times[workers].append(_run(queue, Processes(workers)))
                rate, seconds = _busy_throughput(queue)
                busy[workers].append(rate)
                per_job[workers].append(seconds)
        one, two = statistics.median(times[1]), statistics.median(times[2])
        print(f"   a job takes {statistics.median(per_job[1]):.2f} s alone, {statistics.median(per_job[2]):.2f} s "
              f"beside another; wall: 1 worker {one:.1f} s, 2 workers {two:.1f} s (medians of {rounds}; "
              "each worker's start-up, ~3.5 s of imports, included)")
        print(f"   2 workers / 1 worker, wall clock:          {one / two:.2f}x")
        ratio = statistics.median(busy[2]) / statistics.median(busy[1])
        print(f"   2 workers / 1 worker, jobs/s once started: {ratio:.2f}x   (target >= 1.8x)")
        _ = aiqc


def part_claims(kinds: list[str], postgresql: str | None, server: Any, counts: list[int]) -> None:
    """Claim-and-record throughput for no-op and sleep-bound jobs, 1..8 workers."""
    from aiqc.executors import Processes

    print("\n2. Claim-and-record throughput (jobs/s while every worker is busy; start-up excluded)")
    for kind in kinds:
        with _database(kind, postgresql, server):
            splitset = _splitset(150)
            rows = {}
            for label, sleep in (("no-op", 0.0), (f"sleep {SLEEP_SECONDS}s", SLEEP_SECONDS)):
                for workers in counts:
                    if sleep and workers not in (1, counts[-1]):
                        continue
                    jobs = (10 if sleep else 40) * workers
                    queue = _queue(splitset, noop_build, noop_train, jobs, sleep=sleep)
                    _run(queue, Processes(workers))
                    rows[(label, workers)] = _busy_throughput(queue)[0]
            for label in ("no-op", f"sleep {SLEEP_SECONDS}s"):
                base = rows[(label, 1)]
                line = ", ".join(f"{w} workers {rate:.1f}/s ({rate / base:.2f}x)"
                                 for (name, w), rate in rows.items() if name == label)
                print(f"   {kind:10s} {label:10s}: {line}")
            top = counts[-1]
            ratio = rows[(f"sleep {SLEEP_SECONDS}s", top)] / rows[(f"sleep {SLEEP_SECONDS}s", 1)]
            print(f"   {kind:10s} sleep-bound {top} workers / 1: {ratio:.2f}x   (target >= 6x)")


def part_ray(jobs: int) -> None:
    """The Ray executor's per-job overhead against local processes."""
    try:
        import ray
    except ImportError:
        print("\n3. Ray: skipped (pip install 'aiqc[ray]')")
        return
    from aiqc.executors import Processes, Ray

    print(f"\n3. Ray executor vs local processes ({jobs} no-op jobs, 2 workers), SQLite")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with _database("sqlite", None, None):
            splitset = _splitset(150)
            _run(_queue(splitset, noop_build, noop_train, 2), Ray(cpus_per_job=1))  # warm the Ray workers
            local = _run(_queue(splitset, noop_build, noop_train, jobs), Processes(2))
            on_ray = _run(_queue(splitset, noop_build, noop_train, jobs), Ray(cpus_per_job=1))
        print(f"   local processes {local:.1f} s, Ray {on_ray:.1f} s: Ray's overhead "
              f"{(on_ray - local) / jobs * 1000:+.0f} ms per job ({on_ray / local:.2f}x)")
    finally:
        ray.shutdown()


def main() -> None:
    """Parse the arguments and run the parts asked for."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["cpu", "claims", "ray"], choices=["cpu", "claims", "ray"])
    parser.add_argument("--postgresql", help="admin URL of a server where databases may be created")
    parser.add_argument("--cpu-jobs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--ray-jobs", type=int, default=40)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    print(f"aiqc scale-out benchmark on {os.cpu_count()} cores")
    with contextlib.ExitStack() as stack:
        server, kinds = None, ["sqlite"]
        if "claims" in args.parts:
            if args.postgresql:
                kinds.append("postgresql")
            else:
                import pgserver

                try:
                    server = stack.enter_context(pgserver.running_server())
                    kinds.append("postgresql")
                except Exception as error:  # noqa: BLE001 - a bench row, not a failure
                    print(f"(PostgreSQL rows skipped: {error})")
        if "cpu" in args.parts:
            part_cpu(args.cpu_jobs, args.rounds)
        if "claims" in args.parts:
            part_claims(kinds, args.postgresql, server, sorted(args.workers))
        if "ray" in args.parts:
            part_ray(args.ray_jobs)


if __name__ == "__main__":
    main()
