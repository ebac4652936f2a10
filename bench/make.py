"""Benchmark: Experiment.make of a 100,000-job grid, against baselines measured in the same run.

    python bench/make.py [--repeats 3]

Each measurement runs in a fresh child process that sets up a database with the iris
splitset and imports torch first, so import costs and memory peaks do not leak between
runs. Measured: wall time and peak RSS growth (Linux VmHWM, reset just before the call) of

- ``make``: ``Experiment.make`` of 10 x 10 x 10 x 10 x 10 = 100,000 combinations x 1 repeat
  (tiny PyTorch functions from tests/fns.py; make calls fn_build once), the default max_jobs;
- ``make_1k``: the same with 10 x 10 x 10 = 1,000 combinations (the per-job ratio);
- ``make_200k``: 100,000 combinations x 2 repeats with ``max_jobs=200_000``: twice the jobs,
  and (memory proportional to a batch) about the same peak;
- ``bare``: peewee ``insert_many`` of the same number of bare rows (a JSON combination and a
  job's five integers, per job) into fresh tables of the same SQLite file settings, 1,000
  rows per statement, one transaction: what storing that many rows the plain peewee way costs
  (make writes its batches with one prepared statement each, ``executemany``, so it can be faster);
- ``refuse``: ``Experiment.make`` of a 10^6-combination grid, refused by max_jobs.

Targets (issue "Hardening"): 100,000 jobs in <= 10 s with memory proportional to a batch;
the 10^6 grid refused in well under a second, writing nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

BIG = 100_000
VALUES = list(range(1, 11))


def grid(names: int) -> dict:
    """``names`` hyperparameters of 10 values each (the functions read the first three)."""
    keys = ["neuron_count", "batch_size", "epoch_count", "alpha", "beta", "gamma"][:names]
    return {key: VALUES for key in keys}


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _make(splitset_id: int, hyperparameters: dict, **more: object) -> object:
    import aiqc
    import fns

    return aiqc.Experiment.make(library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build,
                                fn_train=fns.torch_train, hyperparameters=hyperparameters, splitset_id=splitset_id,
                                seed=0, **more)


def bare(path: Path, rows: int) -> None:
    """The same number of rows, bare: one JSON text and five integers per job, in batches."""
    import peewee as pw

    from aiqc.database import SQLITE_PRAGMAS

    database = pw.SqliteDatabase(str(path), pragmas=SQLITE_PRAGMAS)

    class Combination(pw.Model):
        index = pw.IntegerField()
        values = pw.TextField()

        class Meta:
            database = None

    class Row(pw.Model):
        queue = pw.IntegerField()
        combination = pw.IntegerField()
        fold = pw.IntegerField(null=True)
        repeat_index = pw.IntegerField()
        seed = pw.IntegerField()

        class Meta:
            database = None

    database.bind([Combination, Row])
    database.create_tables([Combination, Row])
    names = list(grid(5))
    with database.atomic():
        for start in range(0, rows, 1_000):
            batch = range(start, min(start + 1_000, rows))
            Combination.insert_many([(i, json.dumps(dict(zip(names, map(int, f"{i:05d}"))))) for i in batch],
                                    fields=[Combination.index, Combination.values]).execute()
            Row.insert_many([(1, i + 1, None, 0, i) for i in batch],
                            fields=[Row.queue, Row.combination, Row.fold, Row.repeat_index, Row.seed]).execute()
    database.close()


def child(method: str) -> dict:
    import gc

    import torch  # noqa: F401  (import costs are not what we measure)

    import aiqc
    from aiqc import datum
    from aiqc.exceptions import ValidationError
    from aiqc.orm import MODELS

    import fns

    with tempfile.TemporaryDirectory() as workdir:
        aiqc.setup(Path(workdir) / "bench.sqlite3")
        splitset = fns.reference_make(datum.to_pandas("iris.tsv"), random_state=0)
        fns.torch_build((4,), (3,), neuron_count=4)  # torch's first model outside the measurement
        counts = {model.__name__: model.select().count() for model in MODELS}
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to now
        before = _rss_kib("VmRSS")
        start = time.perf_counter()
        jobs, refused = 0, None
        if method == "make":
            jobs = _make(splitset.id, grid(5)).job_count
        elif method == "make_1k":
            jobs = _make(splitset.id, grid(3)).job_count
        elif method == "make_200k":
            jobs = _make(splitset.id, grid(5), repeat_count=2, max_jobs=2 * BIG).job_count
        elif method == "bare":
            bare(Path(workdir) / "bare.sqlite3", BIG)
            jobs = BIG
        else:
            try:
                _make(splitset.id, grid(6))
            except ValidationError as error:
                refused = str(error)
        seconds = time.perf_counter() - start
        peak = _rss_kib("VmHWM")
        if method == "refuse":
            assert refused and {m.__name__: m.select().count() for m in MODELS} == counts, "the refusal wrote rows"
        from aiqc.orm import database_proxy

        database_proxy.obj.close()  # the last connection checkpoints the WAL into the file
        path = Path(workdir) / ("bare.sqlite3" if method == "bare" else "bench.sqlite3")
        size = sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if p.exists())
    return dict(method=method, seconds=seconds, peak_growth_bytes=(peak - before) * 1024, jobs=jobs,
                refused=refused, file_bytes=size)


METHODS = ("make", "make_1k", "make_200k", "bare", "refuse")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return

    results: dict[str, list[dict]] = {m: [] for m in METHODS}
    for _ in range(args.repeats):
        for method in METHODS:  # interleaved, so drift on a noisy machine hits all alike
            out = subprocess.run([sys.executable, __file__, "--child", method], capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"child {method} failed:\n{out.stderr}")
            results[method].append(json.loads(out.stdout.strip().splitlines()[-1]))

    print(f"make benchmark: median of {args.repeats} runs each (a fresh child process per run)")
    medians = {}
    for method, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        growth = max(r["peak_growth_bytes"] for r in runs) / 1e6
        medians[method] = seconds
        label = {"make": f"make, {BIG:,} jobs", "make_1k": "make, 1,000 jobs", "make_200k": f"make, {2 * BIG:,} jobs",
                 "bare": f"bare rows, {BIG:,}", "refuse": "refuse 10^6 grid"}[method]
        print(f"  {label:<20} {seconds:7.3f} s   peak RSS growth {growth:6.1f} MB   file "
              f"{runs[0]['file_bytes'] / 1e6:6.1f} MB   (runs: {', '.join(format(r['seconds'], '.3f') for r in runs)})")
    big, small = results["make"][0]["jobs"], results["make_1k"][0]["jobs"]
    per_job_big, per_job_small = medians["make"] / big, medians["make_1k"] / small
    print(f"make of {big:,} jobs: {medians['make']:.2f} s (target <= 10 s)")
    print(f"ratio make / bare insert_many of the same rows: {medians['make'] / medians['bare']:.2f}")
    print(f"per job: {per_job_big * 1e6:.1f} us at {big:,} vs {per_job_small * 1e6:.1f} us at {small:,} "
          f"(ratio {per_job_big / per_job_small:.2f})")
    peaks = {m: max(r["peak_growth_bytes"] for r in results[m]) / 1e6 for m in ("make_1k", "make", "make_200k")}
    print(f"peak RSS growth: {peaks['make_1k']:.1f} MB at {small:,} jobs, {peaks['make']:.1f} MB at {big:,}, "
          f"{peaks['make_200k']:.1f} MB at {2 * big:,} (SQLite's page cache is capped at 16 MB)")
    print(f"10^6-combination grid refused in {medians['refuse'] * 1e3:.1f} ms, nothing written: "
          f"{results['refuse'][0]['refused']}")


if __name__ == "__main__":
    main()
