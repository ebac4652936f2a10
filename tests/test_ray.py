"""The Ray executor (aiqc.executors.Ray): Ray tasks as aiqc workers on the shared database, over
SQLite and PostgreSQL (the ``storage`` fixture). One local Ray cluster of 2 CPUs serves the
module; tiny iris jobs of one epoch keep it fast."""

from __future__ import annotations

import _thread
import builtins
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

import aiqc
from aiqc import datum
from aiqc.exceptions import MissingExtraError, ValidationError, WorkerError
from aiqc.orm import MODELS, Job, JobState, Metric, Queue, TrainedModel

import fns
from fns import reference_make
from pgserver import PASSWORD

pytestmark = [pytest.mark.backends, pytest.mark.slow]

ray = pytest.importorskip("ray")
pytest.importorskip("torch")

from aiqc.executors import Ray  # noqa: E402 - after the skips

TESTS = Path(__file__).resolve().parent
SPLITS = ("train", "validation", "test")
METRICS = ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "f1_macro", "balanced_accuracy"]


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    """A local Ray cluster of 2 CPUs for the module (the executor uses it: Ray is initialised)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def _queue(job_count: int = 4, *, fn_train: Any = fns.torch_train, seed: int | None = 7,
           **hyperparameters: Any) -> Queue:
    """A PyTorch queue on iris: ``job_count`` combinations (neuron_count 4, 5, ...), 1 epoch each."""
    splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
    grid = {"neuron_count": list(range(4, 4 + job_count)), "batch_size": [32], "epoch_count": [1]}
    grid.update({name: [value] for name, value in hyperparameters.items()})
    return aiqc.Experiment.make(library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build,
                                fn_train=fn_train, hyperparameters=grid, repeat_count=1, splitset_id=splitset.id,
                                seed=seed)


def _row_counts() -> dict[str, int]:
    """{table: rows} for every aiqc table."""
    return {model.__name__: model.select().count() for model in MODELS}


def _assert_each_job_recorded_once(queue: Queue) -> None:
    """Every job COMPLETE, with one model and each (split, metric) once."""
    jobs = list(queue.jobs.order_by(Job.id))
    assert [j.state for j in jobs] == [JobState.COMPLETE] * len(jobs), [(j.id, j.state, j.error) for j in jobs]
    names = set(queue.experiment.metric_set.names)
    for job in jobs:
        assert TrainedModel.select().where(TrainedModel.job == job).count() == 1
        keys = [(m.split, m.name) for m in Metric.select(Metric.split, Metric.name).where(Metric.job == job)]
        assert sorted(keys) == sorted((split, name) for split in SPLITS for name in names), (job.id, keys)


def _metrics(queue: Queue) -> np.ndarray:
    """The queue's metric values, one row per (neuron_count, split)."""
    frame = queue.metrics_to_pandas().sort_values(["neuron_count", "split"])
    return frame[METRICS].astype(float).to_numpy()


# --- 1. every job once, the same metrics as in process ---------------------------------------------
def test_ray_runs_every_job_once_with_the_metrics_of_an_in_process_run(storage: str) -> None:
    in_process = _queue(4)
    assert in_process.run_jobs(threads=1, progress=False).complete == 4
    on_ray = _queue(4)  # identical: same splitset rows, grid and seed, so the same job seeds
    assert [j.seed for j in on_ray.jobs.order_by(Job.id)] == [j.seed for j in in_process.jobs.order_by(Job.id)]

    summary = on_ray.run_jobs(executor=Ray(cpus_per_job=1), threads=1, progress=False)
    assert (summary.complete, summary.failed, summary.queued, summary.running, summary.ran) == (4, 0, 0, 0, 4)
    _assert_each_job_recorded_once(on_ray)
    jobs = list(on_ray.jobs)
    assert [j.attempts for j in jobs] == [1] * 4
    assert all(j.worker.split(":")[1] != str(os.getpid()) for j in jobs)  # run by Ray's worker processes
    # one thread, the job's seed: bit for bit what the same jobs gave in this process
    np.testing.assert_array_equal(_metrics(on_ray), _metrics(in_process))


def test_ray_connects_and_disconnects_only_when_ray_was_not_initialised(db: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict]] = []
    connected = {"now": True}  # the module's cluster, as this process sees it

    def init(**kwargs: Any) -> None:
        calls.append(("init", kwargs))
        connected["now"] = True

    def shutdown() -> None:
        calls.append(("shutdown", {}))
        connected["now"] = False

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", shutdown)
    monkeypatch.setattr(ray, "is_initialized", lambda: connected["now"])
    Ray(address="auto").check(_queue(1))
    assert calls == []  # every other test: initialised already, the cluster is used as it is and left running
    connected["now"] = False  # as in a fresh process (the real cluster stays up)
    queue = _queue(2)
    assert queue.run_jobs(executor=Ray(address="auto"), threads=1, progress=False).complete == 2
    assert calls == [("init", {"address": "auto"}), ("shutdown", {})]
    _assert_each_job_recorded_once(queue)


# --- 2. a worker process killed mid-job ----------------------------------------------------------
def test_a_ray_worker_killed_mid_job_is_retried_and_its_job_finishes_once(storage: str, tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    queue = _queue(4, fn_train=fns.torch_train_killed_once, marker=str(marker))
    summary = queue.run_jobs(executor=Ray(cpus_per_job=1), threads=1, progress=False)
    assert marker.exists()  # a job did kill its worker process
    assert (summary.complete, summary.failed, summary.queued, summary.running) == (4, 0, 0, 0)
    _assert_each_job_recorded_once(queue)
    assert sorted(j.attempts for j in queue.jobs) == [1, 1, 1, 2]  # the killed job ran again, once


def test_a_task_that_fails_for_good_is_a_worker_error_and_run_jobs_again_finishes(db: Path, tmp_path: Path) -> None:
    # the other jobs take a second each: the fault is seen while jobs remain
    queue = _queue(4, fn_train=fns.torch_train_database_fault_once, marker=str(tmp_path / "fault"), sleep=1.0)
    with pytest.raises(WorkerError, match=r"Ray task\(s\) of queue 1 failed while jobs remained: task \d raised "
                                          r"DatabaseUnreachableError: the server went away") as caught:
        queue.run_jobs(executor=Ray(cpus_per_job=1), threads=1, progress=False)
    assert "run_jobs() again" in str(caught.value)
    assert queue.state_counts()[JobState.RUNNING] == 0  # the failing task gave its job back
    summary = queue.run_jobs(executor=Ray(), threads=1, progress=False)
    assert (summary.complete, summary.failed) == (4, 0)
    _assert_each_job_recorded_once(queue)


def test_ctrl_c_cancels_the_tasks_and_their_jobs_go_back_to_the_queue(db: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from aiqc.executors import ray as ray_executor

    hold = tmp_path / "hold"
    hold.touch()  # the jobs wait on it: both tasks are surely RUNNING when Ctrl-C comes
    queue = _queue(6, fn_train=fns.torch_train_held, hold=str(hold))
    stopping, done, real_stop = threading.Event(), threading.Event(), ray_executor._stop

    def stop(*args: Any, **kwargs: Any) -> None:
        stopping.set()
        real_stop(*args, **kwargs)

    monkeypatch.setattr(ray_executor, "_stop", stop)

    def interrupt_once_both_tasks_run() -> None:
        deadline = time.monotonic() + 120
        while not done.is_set() and time.monotonic() < deadline:
            if queue.state_counts()[JobState.RUNNING] >= 2:
                break
            time.sleep(0.1)
        while not (stopping.is_set() or done.is_set()) and time.monotonic() < deadline:
            _thread.interrupt_main()  # one Ctrl-C, resent if Ray's wait swallowed it
            stopping.wait(1.0)

    interrupter = threading.Thread(target=interrupt_once_both_tasks_run, daemon=True)
    interrupter.start()
    try:
        with pytest.warns(RuntimeWarning, match="interrupted"):  # 2 tasks, even if a CPU is still being freed
            summary = queue.run_jobs(executor=Ray(workers=2), threads=1, progress=False)
    finally:
        done.set()  # never a stray Ctrl-C (or query) in a later test
        interrupter.join()
    assert summary.interrupted and summary.running == 0 and summary.queued == 6
    interrupted = [j for j in queue.jobs if j.state is JobState.QUEUED and j.attempts == 1]
    assert len(interrupted) == 2, [(j.id, j.state, j.attempts) for j in queue.jobs]
    assert all(j.started_at is None for j in interrupted)  # given back by the task itself (runner.release)
    hold.unlink()
    summary = queue.run_jobs(executor=Ray(), threads=1, progress=False)
    assert (summary.complete, summary.queued, summary.running) == (6, 0, 0)
    _assert_each_job_recorded_once(queue)


def test_tasks_no_node_can_hold_warn_and_ctrl_c_stops_them(db: Path) -> None:
    queue = _queue(2)
    threading.Timer(3.0, _thread.interrupt_main).start()
    with pytest.warns(RuntimeWarning) as warned:
        summary = queue.run_jobs(executor=Ray(cpus_per_job=4), progress=False)
    messages = [str(w.message) for w in warned]
    assert len(messages) == 2, messages
    assert messages[0].startswith("aiqc: no node of the Ray cluster has 4 CPU(s) and 0 GPU(s) for a task now")
    assert messages[1].startswith("aiqc: queue 1: interrupted with 2 job(s) QUEUED")
    assert summary.interrupted and (summary.queued, summary.running, summary.ran) == (2, 0, 0)
    assert [j.attempts for j in queue.jobs] == [0, 0]


# --- 3. refused before anything is written ---------------------------------------------------------
@pytest.mark.parametrize("address", ["ray://10.0.0.5:10001", "10.0.0.5:6379", "gpu-node-7:6379"])
def test_a_database_on_this_host_with_a_remote_cluster_is_refused(storage: str, address: str) -> None:
    queue = _queue(2)
    before = _row_counts()
    with pytest.raises(ValidationError, match="^executor: expected a database every Ray node can reach") as caught:
        queue.run_jobs(executor=Ray(address=address), progress=False)
    message = str(caught.value)
    assert repr(address) in message
    if storage.startswith("postgresql"):
        assert "the PostgreSQL server at '127.0.0.1:" in message and PASSWORD not in message
    else:
        assert repr(storage) in message and "pip install 'aiqc[postgres]'" in message
    assert _row_counts() == before
    assert [j.state for j in queue.jobs] == [JobState.QUEUED] * 2


@pytest.mark.parametrize("address", [None, "local", "auto", "localhost:6379", "127.0.0.1:6379",
                                     f"ray://{socket.gethostname()}:10001"])
def test_a_cluster_on_this_host_may_use_a_sqlite_file(db: Path, address: str | None) -> None:
    Ray(address=address).check(_queue(1))  # nothing raised


@pytest.mark.parametrize(("arguments", "parameter"), [
    (dict(cpus_per_job=0), "cpus_per_job"), (dict(cpus_per_job=-1), "cpus_per_job"),
    (dict(cpus_per_job="2"), "cpus_per_job"), (dict(cpus_per_job=True), "cpus_per_job"),
    (dict(cpus_per_job=float("nan")), "cpus_per_job"), (dict(gpus_per_job=-0.5), "gpus_per_job"),
    (dict(gpus_per_job=None), "gpus_per_job"), (dict(workers=0), "workers"), (dict(workers=1.5), "workers"),
    (dict(workers=True), "workers"), (dict(address=6379), "address"), (dict(address=""), "address"),
])
def test_bad_arguments_are_validation_errors_naming_the_parameter(arguments: dict, parameter: str) -> None:
    with pytest.raises(ValidationError, match=f"^{parameter}: expected .*; received "):
        Ray(**arguments)


def test_repr_and_default_threads() -> None:
    assert repr(Ray()) == "Ray(address=None, cpus_per_job=1, gpus_per_job=0, workers=None)"
    assert repr(Ray("auto", 2, 0.5, 3)) == "Ray(address='auto', cpus_per_job=2, gpus_per_job=0.5, workers=3)"
    assert Ray(cpus_per_job=4).default_threads() == 4 and Ray(cpus_per_job=0.5).default_threads() == 1


def test_without_ray_installed_the_error_names_the_extra(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = _queue(2)
    before = _row_counts()
    real_import = builtins.__import__

    def no_ray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    executor = Ray()  # constructing it needs no Ray
    with pytest.raises(MissingExtraError, match=r"pip install 'aiqc\[ray\]'"):
        queue.run_jobs(executor=executor, progress=False)
    monkeypatch.undo()
    assert _row_counts() == before


def test_workers_and_an_executor_together_are_refused(db: Path) -> None:
    queue = _queue(2)
    before = _row_counts()
    with pytest.raises(ValidationError, match=r"^workers: expected 1 .* executor=Ray\(address=None"):
        queue.run_jobs(workers=2, executor=Ray(), progress=False)
    assert _row_counts() == before


# --- 4. a queue shared by Ray tasks and an `aiqc worker` started by hand ------------------------------
def test_a_queue_shared_by_ray_tasks_and_an_aiqc_worker_process(storage: str, tmp_path: Path) -> None:
    queue = _queue(6, meet=str(tmp_path / "meet"))  # the worker's first job waits for a Ray task's (fns._meet)
    pythonpath = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    worker = subprocess.Popen([sys.executable, "-m", "aiqc.worker", "--queue", str(queue.id), "--threads", "1"],
                              env={**os.environ, "AIQC_DB": storage, "PYTHONPATH": pythonpath},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not Job.select().where((Job.queue == queue) & Job.worker.contains(f":{worker.pid}:")).exists():
            assert worker.poll() is None and time.monotonic() < deadline, worker.stderr.read().decode()
            time.sleep(0.1)
        summary = queue.run_jobs(executor=Ray(), threads=1, progress=False)
        assert (summary.failed, summary.queued) == (0, 0)  # the worker may still run its last job
        assert worker.wait(timeout=120) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        worker.stderr.close()
    assert queue.state_counts()[JobState.COMPLETE] == 6
    _assert_each_job_recorded_once(queue)
    jobs = list(queue.jobs)
    assert [j.attempts for j in jobs] == [1] * 6
    pids = {j.worker.split(":")[1] for j in jobs}
    assert str(worker.pid) in pids and len(pids) >= 2  # shared by the process and the Ray tasks
