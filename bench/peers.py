"""Benchmark: aiqc against its peers, Optuna (SQLite storage) and MLflow (SQLite tracking),
doing the same work in one run.

    python bench/peers.py [--jobs 200] [--rows 10000] [--trials 40] [--parts cost frame search]
                          [--rounds 3] [--repeats 5] [--dir /dev/shm]

Three parts (``--parts`` runs any subset); every store lives in a temporary folder under
``--dir``: by default /dev/shm where there is one (memory), so that the numbers are the
frameworks' own cost and not the disk's fsync latency. On a disk, Optuna and MLflow pay an
fsync per commit (SQLite's defaults) where aiqc does not (WAL, synchronous=NORMAL), which
multiplies their cost per trial / run by up to ~7 on a busy disk: ``--dir /tmp`` to see it.

- cost: the bookkeeping cost of one job / trial / run when training is a no-op. Each
  records 3 hyperparameters, 10 epochs of history (loss, val_loss) and a final value:
  aiqc runs a PyTorch classification_multi queue on iris (a tiny ``nn.Linear``, a fn_train
  that only calls ``aiqc.record_epoch`` 10 times), so it also predicts and scores 3 splits
  and stores predictions and the model; Optuna runs ``study.optimize`` (3 ``suggest_*``,
  10 ``trial.report``, the value; RandomSampler, its cheapest); MLflow ``start_run``,
  ``log_params``, 10 ``log_metrics(step=)``, ``log_metric``, ``end_run``. Warm-up first,
  then ``--rounds`` alternating rounds of ``--jobs`` each; median ms per job.
- frame: one DataFrame of ``--rows`` finished jobs / trials / runs, read in a fresh
  process: aiqc ``queue.metrics_to_pandas()`` (a row per job x split), Optuna
  ``study.trials_dataframe()``, MLflow ``mlflow.search_runs()``. The stores are filled in
  parallel processes (aiqc: bench/query.py's ``populate``; Optuna: ``study.add_trials``;
  MLflow: ``MlflowClient.create_run`` + ``log_batch`` + ``set_terminated``, minutes for
  10,000). Each read is timed (the call alone, after imports and opening the store) in
  its own subprocess, ``--repeats`` times alternating; median seconds.
- search: bench/search.py's 40-trial random search with median pruning, aiqc and Optuna
  replaying the same configurations; framework overhead per trial = (wall - training) /
  trials, median of ``--rounds``.

MLflow's telemetry is switched off (MLFLOW_DISABLE_TELEMETRY) and its logging silenced.

Targets (issue #14): cost aiqc <= 0.5x Optuna; frame aiqc <= 0.3 s and >= 15x faster
than MLflow; search aiqc's overhead per trial no more than Optuna's. A missed target is
printed as MISSED; the exit status is 0 either way (this is a report).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no telemetry thread in any contender

EPOCHS = 10
PARTS = ("cost", "frame", "search")
#: the search space every contender records (aiqc enumerates a grid of these names)
PARAMS = ("units", "learning_rate", "batch_size")


def quiet() -> None:
    """Silence logging and warnings (Optuna's per-trial INFO lines, MLflow's and alembic's)."""
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")


def median(values: list[float]) -> float:
    return statistics.median(values)


# --- (a) cost per job, trial, run with no-op training ------------------------------------------
def build_linear(features_shape, label_shape, **hp):
    import torch

    return torch.nn.Linear(features_shape[0], label_shape[0])


def train_noop(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    import aiqc

    for epoch in range(EPOCHS):
        aiqc.record_epoch(model, loss=1.0 / (epoch + 1), val_loss=1.2 / (epoch + 1))
    return model


def grid_sizes(jobs: int) -> tuple[int, int, int]:
    """Three value counts whose product is ``jobs``, as even as possible (200 -> 5, 5, 8)."""
    best = (1, 1, jobs)
    for a in range(1, round(jobs ** (1 / 3)) + 2):
        if jobs % a:
            continue
        rest = jobs // a
        for b in range(a, int(rest ** 0.5) + 1):
            if rest % b == 0 and max(a, b, rest // b) < max(best):
                best = (a, b, rest // b)
    return best


def aiqc_grid(jobs: int) -> dict[str, list]:
    units, rates, batches = grid_sizes(jobs)
    return {"units": list(range(4, 4 + units)), "learning_rate": [round(0.001 * (i + 1), 6) for i in range(rates)],
            "batch_size": [8 * (i + 1) for i in range(batches)]}


def cost_aiqc(splitset, jobs: int) -> float:
    """Seconds per job of ``run_jobs`` on a fresh queue of ``jobs`` no-op jobs."""
    import aiqc

    queue = aiqc.Experiment.make(library="pytorch", analysis_type="classification_multi", fn_build=build_linear,
                                 fn_train=train_noop, hyperparameters=aiqc_grid(jobs), repeat_count=1,
                                 splitset_id=splitset.id)
    start = time.perf_counter()
    summary = queue.run_jobs(progress=False)
    seconds = time.perf_counter() - start
    assert summary.complete == jobs, summary
    return seconds / jobs


def cost_optuna(storage: str, jobs: int, seed: int) -> float:
    """Seconds per trial of ``study.optimize`` on a fresh study of ``jobs`` trials."""
    import optuna

    def objective(trial):
        trial.suggest_int("units", 4, 64)
        trial.suggest_float("learning_rate", 1e-4, 0.1, log=True)
        trial.suggest_categorical("batch_size", [8, 16, 32])
        for epoch in range(EPOCHS):
            trial.report(1.2 / (epoch + 1), epoch)
        return 0.9

    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=seed))
    start = time.perf_counter()
    study.optimize(objective, n_trials=jobs)
    seconds = time.perf_counter() - start
    assert len(study.trials) == jobs
    return seconds / jobs


def cost_mlflow(artifacts: str, jobs: int, seed: int) -> float:
    """Seconds per run of ``jobs`` fluent runs in a fresh experiment."""
    import mlflow

    rng = random.Random(seed)
    experiment = mlflow.create_experiment(f"cost-{seed}-{time.time_ns()}", artifact_location=artifacts)
    mlflow.set_experiment(experiment_id=experiment)
    start = time.perf_counter()
    for _ in range(jobs):
        with mlflow.start_run():
            mlflow.log_params({"units": rng.randint(4, 64), "learning_rate": rng.uniform(1e-4, 0.1),
                               "batch_size": rng.choice([8, 16, 32])})
            for epoch in range(EPOCHS):
                mlflow.log_metrics({"loss": 1.0 / (epoch + 1), "val_loss": 1.2 / (epoch + 1)}, step=epoch)
            mlflow.log_metric("accuracy", 0.9)
    return (time.perf_counter() - start) / jobs


def part_cost(args, folder: Path, splitset) -> dict:
    import mlflow

    optuna_storage = f"sqlite:///{folder / 'optuna_cost.sqlite3'}"
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow_cost.sqlite3'}")
    artifacts = (folder / "mlartifacts").as_uri()
    # warm-up, untimed: imports, the stores' creation (MLflow migrates its schema), first job/trial/run
    cost_aiqc(splitset, 3), cost_optuna(optuna_storage, 3, 99), cost_mlflow(artifacts, 3, 99)
    contenders = {"aiqc": lambda r: cost_aiqc(splitset, args.jobs),
                  "optuna": lambda r: cost_optuna(optuna_storage, args.jobs, r),
                  "mlflow": lambda r: cost_mlflow(artifacts, args.jobs, r)}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_ in range(args.rounds):
        order = names[round_ % 3:] + names[:round_ % 3]  # rotate who goes first
        for name in order:
            times[name].append(contenders[name](round_) * 1e3)
        print(f"  round {round_ + 1}: " + "  ".join(f"{n} {times[n][-1]:6.2f} ms" for n in names), flush=True)
    result = {name: median(values) for name, values in times.items()}
    print(f"  median ms per job/trial/run: aiqc {result['aiqc']:.2f}  optuna {result['optuna']:.2f}  "
          f"mlflow {result['mlflow']:.2f}")
    print(f"  ratio aiqc/optuna {result['aiqc'] / result['optuna']:.2f} (target <= 0.5)   "
          f"aiqc/mlflow {result['aiqc'] / result['mlflow']:.2f}")
    return result


# --- (b) a DataFrame of N finished jobs, trials, runs, read in a fresh process ----------------
def _fast_sqlite_writes() -> None:
    """In a populating process only: SQLite ``synchronous=OFF`` on every SQLAlchemy connection
    (no fsync per transaction; the file written is the same, a crash would just lose it)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _pragma(connection, _record):
        connection.execute("PRAGMA synchronous=OFF")


def populate_aiqc(path: str, rows: int) -> tuple[int, float]:
    quiet()
    from query import populate

    start = time.perf_counter()
    queue_id = populate(Path(path), jobs=rows, seed=0)
    return queue_id, time.perf_counter() - start


def populate_optuna(path: str, rows: int) -> tuple[str, float]:
    quiet()
    _fast_sqlite_writes()
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    start = time.perf_counter()
    rng = random.Random(0)
    distributions = {"units": IntDistribution(4, 64), "learning_rate": FloatDistribution(1e-4, 0.1, log=True),
                     "batch_size": CategoricalDistribution([8, 16, 32])}
    study = optuna.create_study(storage=f"sqlite:///{path}", study_name="frame", direction="maximize")
    chunk = 1000
    for done in range(0, rows, chunk):
        study.add_trials([
            optuna.trial.create_trial(
                params={"units": rng.randint(4, 64), "learning_rate": 10 ** rng.uniform(-4, -1),
                        "batch_size": rng.choice([8, 16, 32])},
                distributions=distributions, value=rng.random(),
                intermediate_values={epoch: rng.random() for epoch in range(EPOCHS)})
            for _ in range(min(chunk, rows - done))])
        print(f"    optuna: {done + min(chunk, rows - done)}/{rows} trials, {time.perf_counter() - start:.0f} s",
              flush=True)
    return "frame", time.perf_counter() - start


def populate_mlflow(path: str, artifacts: str, rows: int) -> tuple[str, float]:
    quiet()
    _fast_sqlite_writes()
    import mlflow
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    start = time.perf_counter()
    rng = random.Random(0)
    mlflow.set_tracking_uri(f"sqlite:///{path}")
    client = MlflowClient()
    experiment = client.create_experiment("frame", artifact_location=artifacts)
    for index in range(rows):
        run = client.create_run(experiment)
        stamp = int(time.time() * 1000)
        metrics = [Metric(name, rng.random(), stamp, epoch) for epoch in range(EPOCHS) for name in ("loss", "val_loss")]
        metrics.append(Metric("accuracy", rng.random(), stamp, 0))
        params = [Param("units", str(rng.randint(4, 64))), Param("learning_rate", str(10 ** rng.uniform(-4, -1))),
                  Param("batch_size", str(rng.choice([8, 16, 32])))]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        client.set_terminated(run.info.run_id, "FINISHED")
        if (index + 1) % 1000 == 0 or index + 1 == rows:
            print(f"    mlflow: {index + 1}/{rows} runs, {time.perf_counter() - start:.0f} s", flush=True)
    return experiment, time.perf_counter() - start


#: what each fresh process runs: imports and opening the store untimed, then the read call alone
READERS = {
    "aiqc": """
import sys, time, logging, warnings
logging.disable(logging.WARNING); warnings.filterwarnings("ignore")
import pandas, aiqc
aiqc.setup(sys.argv[1])
queue = aiqc.Queue.get_by_id(int(sys.argv[2]))
start = time.perf_counter()
frame = queue.metrics_to_pandas()
print(time.perf_counter() - start, len(frame))
""",
    "optuna": """
import sys, time, logging, warnings
logging.disable(logging.WARNING); warnings.filterwarnings("ignore")
import pandas, optuna
study = optuna.load_study(study_name=sys.argv[2], storage="sqlite:///" + sys.argv[1])
start = time.perf_counter()
frame = study.trials_dataframe()
print(time.perf_counter() - start, len(frame))
""",
    "mlflow": """
import sys, time, logging, warnings
logging.disable(logging.WARNING); warnings.filterwarnings("ignore")
import pandas, mlflow
from mlflow.tracking import MlflowClient
mlflow.set_tracking_uri("sqlite:///" + sys.argv[1])
MlflowClient().get_experiment(sys.argv[2])
start = time.perf_counter()
frame = mlflow.search_runs(experiment_ids=[sys.argv[2]], max_results=int(sys.argv[3]))
print(time.perf_counter() - start, len(frame))
""",
}


def read_once(name: str, path: Path, key, rows: int, cwd: Path) -> tuple[float, int]:
    done = subprocess.run([sys.executable, "-c", READERS[name], str(path), str(key), str(rows)], cwd=cwd,
                          capture_output=True, text=True, env=os.environ)
    if done.returncode:
        raise RuntimeError(f"{name} read failed:\n{done.stderr[-3000:]}")
    seconds, length = done.stdout.split()[-2:]
    return float(seconds), int(length)


def _wait_for_query(seconds: float = 0) -> bool:
    """bench/query.py (another helper's) with ``populate``; waits up to ``seconds`` for it."""
    deadline = time.monotonic() + seconds
    while True:
        path = BENCH / "query.py"
        if path.exists() and "def populate" in path.read_text():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(10)


def part_frame(args, folder: Path) -> dict:
    paths = {"aiqc": folder / "aiqc_frame.sqlite3", "optuna": folder / "optuna_frame.sqlite3",
             "mlflow": folder / "mlflow_frame.sqlite3"}
    has_query = _wait_for_query(args.wait_query)
    print(f"  populating {args.rows} finished entries per store in parallel processes ...", flush=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=3, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {"optuna": pool.submit(populate_optuna, str(paths["optuna"]), args.rows),
                   "mlflow": pool.submit(populate_mlflow, str(paths["mlflow"]), (folder / "mlartifacts").as_uri(),
                                         args.rows)}
        if has_query:
            futures["aiqc"] = pool.submit(populate_aiqc, str(paths["aiqc"]), args.rows)
        keys = {}
        for name, future in futures.items():
            try:
                keys[name], seconds = future.result()
            except Exception as error:  # report the others even if one store cannot be filled
                print(f"  populating {name} FAILED, not measured: {type(error).__name__}: {error}", flush=True)
                continue
            print(f"  populated {name}: {seconds:.0f} s", flush=True)
    print(f"  populating took {time.perf_counter() - start:.0f} s")
    if not has_query:
        print("  aiqc: bench/query.py (with populate) is not there: aiqc not measured")
    names = [n for n in ("aiqc", "optuna", "mlflow") if n in keys]
    if not names:
        return {}
    times: dict[str, list[float]] = {n: [] for n in names}
    lengths = {}
    for repeat in range(args.repeats):
        order = names[repeat % len(names):] + names[:repeat % len(names)]
        for name in order:
            seconds, lengths[name] = read_once(name, paths[name], keys[name], args.rows, folder)
            times[name].append(seconds)
        print(f"  repeat {repeat + 1}: " + "  ".join(f"{n} {times[n][-1]:.3f} s" for n in names), flush=True)
    result = {n: median(times[n]) for n in names}
    print("  median seconds to read: " + "  ".join(f"{n} {result[n]:.3f} s ({lengths[n]} rows)" for n in names))
    if {"aiqc", "optuna", "mlflow"} <= set(result):
        print(f"  ratio aiqc/optuna {result['aiqc'] / result['optuna']:.3f}   aiqc/mlflow "
              f"{result['aiqc'] / result['mlflow']:.3f} (MLflow {result['mlflow'] / result['aiqc']:.1f}x slower; "
              f"target aiqc <= 0.3 s and >= 15x faster than MLflow)")
    return result


# --- (c) a 40-trial search ----------------------------------------------------------------
def part_search(args, folder: Path, splitset) -> dict:
    import search  # bench/search.py

    search.run_optuna(splitset, 3, 1, 99, str(folder))  # warm-up, untimed
    search.run_aiqc(splitset, 3, 1, 99)
    runs: dict[str, list[tuple[float, float]]] = {"aiqc": [], "optuna": []}
    for round_ in range(args.rounds):
        search.TRAINING["seconds"] = 0.0
        wall, sampled = search.run_aiqc(splitset, args.trials, EPOCHS, round_)
        runs["aiqc"].append((wall, search.TRAINING["seconds"]))
        search.TRAINING["seconds"] = 0.0
        with tempfile.TemporaryDirectory(dir=folder) as inner:
            wall = search.run_optuna(splitset, args.trials, EPOCHS, round_, inner, replay=sampled)
        runs["optuna"].append((wall, search.TRAINING["seconds"]))
        print(f"  round {round_ + 1}: " + "  ".join(
            f"{n} wall {w:.2f} s training {t:.2f} s overhead {(w - t) / args.trials * 1e3:.1f} ms/trial"
            for n, (w, t) in ((n, runs[n][-1]) for n in runs)), flush=True)
    result = {n: median([(w - t) / args.trials * 1e3 for w, t in runs[n]]) for n in runs}
    walls = {n: median([w for w, _ in runs[n]]) for n in runs}
    print(f"  median framework overhead per trial: aiqc {result['aiqc']:.1f} ms  optuna {result['optuna']:.1f} ms  "
          f"ratio {result['aiqc'] / result['optuna']:.2f} (target <= 1.0); median wall: aiqc {walls['aiqc']:.2f} s  "
          f"optuna {walls['optuna']:.2f} s  ratio {walls['aiqc'] / walls['optuna']:.2f}")
    return result


# --- summary -------------------------------------------------------------------------------
def summary(results: dict, args) -> None:
    def number(value, unit):
        return "n/a" if value is None else f"{value:.3f} {unit}" if unit == "s" else f"{value:.1f} {unit}"

    def ratio(a, b):
        return "n/a" if a is None or b is None else f"{a / b:.3f}"

    print("\nsummary")
    print(f"  {'part':<24} {'aiqc':>11} {'optuna':>11} {'mlflow':>11} {'aiqc/opt':>9} {'aiqc/mlf':>9}  "
          f"{'target':<34} result")
    rows = {"cost": ("cost ms/job", "ms", "aiqc/optuna <= 0.5"),
            "frame": (f"frame {args.rows} rows, s", "s", "aiqc <= 0.3 s and aiqc/mlflow <= 1/15"),
            "search": ("search overhead ms/trial", "ms", "aiqc/optuna <= 1.0")}
    for part in PARTS:
        if part not in results:
            continue
        r = results[part]
        a, o, m = r.get("aiqc"), r.get("optuna"), r.get("mlflow")
        if a is None or o is None or (part == "frame" and m is None):
            passed = None
        elif part == "cost":
            passed = a <= 0.5 * o
        elif part == "frame":
            passed = a <= 0.3 and a * 15 <= m
        else:
            passed = a <= o
        label, unit, target = rows[part]
        verdict = "not measured" if passed is None else "pass" if passed else "MISSED"
        print(f"  {label:<24} {number(a, unit):>11} {number(o, unit):>11} {number(m, unit):>11} "
              f"{ratio(a, o):>9} {ratio(a, m):>9}  {target:<34} {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="cost: jobs / trials / runs per round")
    parser.add_argument("--rows", type=int, default=10_000, help="frame: finished entries per store")
    parser.add_argument("--trials", type=int, default=40, help="search: trials per search")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--rounds", type=int, default=3, help="cost, search: alternating rounds (median)")
    parser.add_argument("--repeats", type=int, default=5, help="frame: fresh-process reads per contender (median)")
    parser.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                        help="where the temporary stores go (default: /dev/shm if present, else the system's temp)")
    parser.add_argument("--wait-query", type=float, default=0, help="frame: seconds to wait for bench/query.py")
    args = parser.parse_args()

    quiet()
    import aiqc
    from aiqc import datum
    from fns import reference_make

    print(f"peers benchmark: aiqc {_version('aiqc')} vs optuna {_version('optuna')} "
          f"and mlflow {_version('mlflow')}; {os.cpu_count()} cores; parts {' '.join(args.parts)}; "
          f"stores under {args.dir or tempfile.gettempdir()}")
    results, took = {}, {}
    with tempfile.TemporaryDirectory(prefix="aiqc-peers-", dir=args.dir) as name:
        folder = Path(name)
        splitset = None
        if {"cost", "search"} & set(args.parts):
            aiqc.setup(folder / "aiqc.sqlite3")
            splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
        for part in PARTS:
            if part not in args.parts:
                continue
            start = time.perf_counter()
            if part == "cost":
                print(f"\n(a) cost per job / trial / run, no-op training: {args.jobs} per round, {args.rounds} rounds")
                results[part] = part_cost(args, folder, splitset)
            elif part == "frame":
                print(f"\n(b) DataFrame of {args.rows} finished jobs / trials / runs, in a fresh process, "
                      f"{args.repeats} repeats")
                results[part] = part_frame(args, folder)
            else:
                print(f"\n(c) {args.trials}-trial random search, median pruning, {EPOCHS} epochs, {args.rounds} rounds")
                results[part] = part_search(args, folder, splitset)
            took[part] = time.perf_counter() - start
            print(f"  ({part} took {took[part]:.0f} s)", flush=True)
    summary(results, args)
    print("  time per part: " + ", ".join(f"{p} {s:.0f} s" for p, s in took.items()))


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    main()
