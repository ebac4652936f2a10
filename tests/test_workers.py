"""Several processes on one SQLite file: atomic claims, dead workers, integrity."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import aiqc
from aiqc import datum
from aiqc.orm import Job, JobState, Metric, TrainedModel, database_proxy

from fns import reference_make

pytestmark = [pytest.mark.backends, pytest.mark.slow]

TESTS = Path(__file__).resolve().parent
EXAMPLES = TESTS.parent / "examples"


@pytest.fixture
def torch_queue(db):
    pytest.importorskip("torch")
    import fns

    def make(job_count: int, sleep: float = 0.0, meet: str | None = None):
        """``meet``: a folder where the first jobs of two worker processes wait for each other
        (fns._meet), so that a test knows the work was shared however fast the jobs are."""
        splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
        grid = {"neuron_count": list(range(4, 4 + job_count)), "batch_size": [32], "epoch_count": [1], "sleep": [sleep]}
        if meet is not None:
            grid["meet"] = [meet]
        return aiqc.Experiment.make(
            library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build, fn_train=fns.torch_train,
            hyperparameters=grid, repeat_count=1, splitset_id=splitset.id)

    return make


def _assert_each_job_recorded_once(queue):
    jobs = list(queue.jobs)
    assert all(j.state is JobState.COMPLETE for j in jobs), [(j.id, j.state, j.error) for j in jobs]
    metric_keys = set()
    for job in jobs:
        assert TrainedModel.select().where(TrainedModel.job == job).count() == 1
        keys = [(m.split, m.name) for m in Metric.select(Metric.split, Metric.name).where(Metric.job == job)]
        assert len(keys) == len(set(keys)) and {split for split, _ in keys} == {"train", "validation", "test"}, keys
        metric_keys.add(frozenset(keys))
    assert len(metric_keys) == 1  # recorded once each: every job has the same metrics, none twice
    assert database_proxy.obj.execute_sql("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_sigkill_mid_queue_then_run_jobs_finishes_every_job_once(db, torch_queue):
    queue = torch_queue(job_count=4, sleep=1.5)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    worker = subprocess.Popen([sys.executable, "-m", "aiqc.worker", "--queue", str(queue.id), "--db", str(db),
                               "--threads", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        counts = queue.state_counts()
        if counts["COMPLETE"] >= 1 and counts["RUNNING"] == 1:
            break
        assert worker.poll() is None, worker.stderr.read().decode()
        time.sleep(0.1)
    else:
        pytest.fail(f"the worker never got going: {queue.state_counts()}")
    killed_job = Job.get((Job.queue == queue) & (Job.state == JobState.RUNNING))
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert Job.get_by_id(killed_job.id).state is JobState.RUNNING  # orphaned, until a runner looks

    summary = queue.run_jobs(progress=False)
    assert (summary.complete, summary.failed, summary.running) == (4, 0, 0)
    _assert_each_job_recorded_once(queue)
    assert Job.get_by_id(killed_job.id).attempts == 2


def test_four_workers_run_every_job_exactly_once(db, torch_queue, tmp_path):
    queue = torch_queue(job_count=16, meet=str(tmp_path / "meet"))
    summary = queue.run_jobs(workers=4, threads=1, progress=False)
    assert (summary.complete, summary.failed, summary.queued) == (16, 0, 0)
    _assert_each_job_recorded_once(queue)
    jobs = list(queue.jobs)
    assert [j.attempts for j in jobs] == [1] * 16  # claimed once each: no job ran twice
    assert len({j.worker for j in jobs}) >= 2  # the work was shared


def test_a_stale_heartbeat_is_requeued(db, torch_queue):
    import datetime as dt

    from aiqc.runner import STALE_SECONDS, requeue_abandoned

    queue = torch_queue(job_count=2)
    first, second = queue.jobs.order_by(Job.id)
    old = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(seconds=STALE_SECONDS + 5)
    Job.update(state=JobState.RUNNING, worker="other-host:1:abc", heartbeat_at=old).where(Job.id == first.id).execute()
    Job.update(state=JobState.RUNNING, worker="other-host:2:abc",
               heartbeat_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)).where(Job.id == second.id).execute()
    assert requeue_abandoned(queue.id) == 1
    assert Job.get_by_id(first.id).state is JobState.QUEUED
    assert Job.get_by_id(second.id).state is JobState.RUNNING  # alive elsewhere: left alone


def test_two_workers_share_a_search_without_duplicate_trials(db):
    pytest.importorskip("torch")
    pytest.importorskip("optuna")
    import fns
    from aiqc.orm import Hyperparamset
    from aiqc.search import Float, Int, Search

    splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
    queue = aiqc.Experiment.make(
        library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build, fn_train=fns.torch_train,
        hyperparameters={"neuron_count": Int(2, 16), "learning_rate": Float(1e-3, 0.1, log=True), "batch_size": [32],
                         "epoch_count": [2]},
        repeat_count=2, splitset_id=splitset.id, search=Search("random", n_trials=6, seed=0))
    summary = queue.run_jobs(workers=2, threads=1, progress=False)
    assert (summary.complete, summary.failed) == (12, 0)
    trials = list(queue.experiment.hyperparamsets.order_by(Hyperparamset.index))
    assert [t.index for t in trials] == list(range(6))  # each trial created once, by whichever worker was free
    assert all(t.jobs.count() == 2 for t in trials)
    assert [j.attempts for j in queue.jobs] == [1] * 12
    _assert_each_job_recorded_once(queue)


# --- run_jobs(workers=N) starts `python -m aiqc.worker` processes -------------------------------
#: A user's script as people write it: no `if __name__ == "__main__":` guard. `user_layers` lives
#: in a folder the script puts on sys.path itself, and fn_build imports it when it runs: the
#: workers can import it only if they were given that folder.
NO_GUARD_SCRIPT = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # even if the test runner ignores Ctrl-C
sys.path.insert(0, {tests!r})
sys.path.insert(0, {library!r})
import aiqc
from aiqc import datum
import fns

aiqc.setup({database!r})
splitset = fns.reference_make(datum.to_pandas("iris.tsv"), random_state=0)


def fn_build(features_shape, label_shape, **hp):
    import user_layers
    return user_layers.build(features_shape, label_shape, hp["neuron_count"])


queue = aiqc.Experiment.make(
    library="pytorch", analysis_type="classification_multi", fn_build=fn_build, fn_train=fns.torch_train,
    hyperparameters={{"neuron_count": list(range(4, 4 + {jobs})), "batch_size": [32], "epoch_count": [1],
                     "sleep": [{sleep}], "meet": [{meet}]}},
    repeat_count=1, splitset_id=splitset.id)
print("SUMMARY", queue.run_jobs(workers=2, threads=1, progress=False), flush=True)
"""

USER_LAYERS = """
import torch.nn as nn


def build(features_shape, label_shape, neurons):
    return nn.Sequential(nn.Linear(features_shape[0], neurons), nn.ReLU(), nn.Linear(neurons, label_shape[0]))
"""


def _no_guard_script(folder: Path, jobs: int, sleep: float = 0.0, meet: bool = False) -> Path:
    pytest.importorskip("torch")
    (folder / "lib").mkdir()
    (folder / "lib" / "user_layers.py").write_text(USER_LAYERS)
    script = folder / "experiment.py"
    script.write_text(NO_GUARD_SCRIPT.format(tests=str(TESTS), library=str(folder / "lib"),
                                             database=str(folder / "script.sqlite3"), jobs=jobs, sleep=sleep,
                                             meet=repr(str(folder / "meet")) if meet else "None"))
    return script


def _clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in ("AIQC_DB", "PYTHONPATH")}


def _rows(database: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(database) as connection:
        return connection.execute(sql).fetchall()


def test_run_jobs_with_workers_from_a_script_without_a_main_guard(tmp_path):
    script = _no_guard_script(tmp_path, jobs=8, meet=True)  # each worker's first job waits for the other's
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_clean_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("SUMMARY") == 1, done.stdout  # the workers never re-ran the script
    assert "queue 1: 8 complete, 0 failed, 0 queued, 0 running" in done.stdout, done.stdout + done.stderr
    database = tmp_path / "script.sqlite3"
    assert _rows(database, "SELECT COUNT(*) FROM queue") == [(1,)]  # no orphan queue...
    assert _rows(database, "SELECT COUNT(*) FROM splitset") == [(1,)]  # ...nor splitset
    jobs = _rows(database, "SELECT id, state, attempts, worker FROM job ORDER BY id")
    assert [(state, attempts) for _, state, attempts, _ in jobs] == [(str(JobState.COMPLETE), 1)] * 8, jobs
    assert len({worker.split(":")[1] for *_, worker in jobs}) == 2  # both workers took jobs
    per_job = _rows(database, "SELECT job.id, (SELECT COUNT(*) FROM metric WHERE metric.job_id = job.id), "
                              "(SELECT COUNT(DISTINCT split || ':' || name) FROM metric WHERE metric.job_id = job.id), "
                              "(SELECT COUNT(*) FROM trained_model WHERE trained_model.job_id = job.id) FROM job")
    assert len({metrics for _, metrics, _, _ in per_job}) == 1 and per_job[0][1] >= 3, per_job  # same metrics per job
    assert all(metrics == distinct and models == 1 for _, metrics, distinct, models in per_job), per_job  # none twice


def test_ctrl_c_stops_the_workers_and_puts_their_jobs_back(tmp_path):
    """SIGINT to the script only, as a notebook's interrupt button does."""
    script = _no_guard_script(tmp_path, jobs=6, sleep=1.0)
    database = tmp_path / "script.sqlite3"
    process = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=_clean_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if _rows(database, "SELECT COUNT(*) FROM job WHERE state = 'COMPLETE'")[0][0] >= 1:
                break
        except sqlite3.OperationalError:
            pass  # not created yet
        time.sleep(0.1)
    else:
        pytest.fail(f"the workers never finished a job: {process.communicate()}")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "(interrupted)" in out and ", 0 running" in out, out + err
    states = dict(_rows(database, "SELECT state, COUNT(*) FROM job GROUP BY state"))
    assert states.get("RUNNING", 0) == 0 and states.get("QUEUED", 0) >= 1, states
    for (worker,) in _rows(database, "SELECT DISTINCT worker FROM job WHERE worker IS NOT NULL"):
        pid = int(worker.split(":")[1])
        with pytest.raises(ProcessLookupError):  # no worker outlives run_jobs
            os.kill(pid, 0)


def test_run_jobs_with_workers_from_the_command_line(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("omegaconf")
    script = shutil.which("aiqc", path=str(Path(sys.executable).parent)) or shutil.which("aiqc")
    if script is None:
        pytest.skip("the aiqc console script is not installed")
    env = {**_clean_env(), "AIQC_DB": str(tmp_path / "cli.sqlite3")}
    process = subprocess.Popen([script, "run", str(EXAMPLES / "iris.yaml"), "run.workers=2",
                                "experiment.hyperparameters.epoch_count=[2]", "--output-dir", "out"],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "queue 1: 2 complete, 0 pruned, 0 failed" in out, out + err
    workers = {int(worker.split(":")[1]) for (worker,) in _rows(tmp_path / "cli.sqlite3", "SELECT DISTINCT worker FROM job")}
    assert 1 <= len(workers) <= 2 and process.pid not in workers  # the jobs ran in worker processes, not in `aiqc run`


def _dying_command(code: int = 3) -> list[str]:
    return [sys.executable, "-c", f"import sys; sys.stderr.write('starting\\nboom\\n'); sys.exit({code})"]


def test_a_worker_that_dies_at_start_up_makes_run_jobs_raise_with_its_stderr(db, torch_queue, monkeypatch):
    from aiqc.executors import local as runner
    from aiqc.exceptions import WorkerError

    queue = torch_queue(job_count=2)
    real, calls = runner.worker_command, []

    def command(queue_id: int, threads: int) -> list[str]:
        calls.append(queue_id)
        return _dying_command() if len(calls) == 1 else real(queue_id, threads)

    monkeypatch.setattr(runner, "worker_command", command)
    with pytest.raises(WorkerError) as caught:
        queue.run_jobs(workers=2, threads=1, progress=False)
    message = str(caught.value)
    first = message.splitlines()[0]
    assert "1 of 2 worker process(es)" in first and "exited with status 3" in first and "'boom'" in first, message
    assert "\n    starting\n    boom\n" in message  # the stderr tail
    assert f"queue {queue.id}: 2 complete, 0 failed, 0 queued, 0 running" in message  # the other one did the work
    _assert_each_job_recorded_once(queue)


def test_every_worker_dying_leaves_the_jobs_queued_and_raises(db, torch_queue, monkeypatch):
    from aiqc.executors import local as runner
    from aiqc.exceptions import WorkerError

    queue = torch_queue(job_count=3)
    monkeypatch.setattr(runner, "worker_command", lambda queue_id, threads: _dying_command(1))
    with pytest.raises(WorkerError, match=r"2 of 2 worker process\(es\) of queue \d+ died while jobs remained"):
        queue.run_jobs(workers=2, progress=False)
    assert queue.state_counts()[JobState.QUEUED] == 3


def test_workers_that_exit_0_without_working_do_not_pass_silently(db, torch_queue, monkeypatch):
    from aiqc.executors import local as runner
    from aiqc.exceptions import WorkerError

    queue = torch_queue(job_count=3)
    monkeypatch.setattr(runner, "worker_command", lambda queue_id, threads: _dying_command(0))
    with pytest.raises(WorkerError, match="exited, yet 3 job"):
        queue.run_jobs(workers=2, progress=False)


def test_a_worker_failing_after_the_queue_drained_only_warns(db, torch_queue, monkeypatch):
    from aiqc.executors import local as runner

    queue = torch_queue(job_count=2)
    real = runner.worker_command

    def command(queue_id: int, threads: int) -> list[str]:
        arguments = real(queue_id, threads)[3:]  # after `python -m aiqc.worker`
        return [sys.executable, "-c", "import sys; from aiqc.worker import main; main(sys.argv[1:]); "
                "sys.stderr.write('crash at exit\\n'); sys.exit(5)", *arguments]

    monkeypatch.setattr(runner, "worker_command", command)
    with pytest.warns(RuntimeWarning, match="exited with status 5") as caught:
        summary = queue.run_jobs(workers=2, threads=1, progress=False)
    assert (summary.complete, summary.failed, summary.queued) == (2, 0, 0)
    ours = [str(w.message) for w in caught if str(w.message).startswith(f"aiqc: queue {queue.id}: worker ")]
    assert ours and all("crash at exit" in m and "no job was lost" in m for m in ours), ours
    _assert_each_job_recorded_once(queue)


def test_a_worker_killed_mid_job_makes_run_jobs_raise_after_the_other_finishes(db, torch_queue):
    from aiqc.exceptions import WorkerError

    queue = torch_queue(job_count=4, sleep=1.0)
    killed: dict[str, int] = {}

    def kill_the_first_worker_seen_running() -> None:
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                running = list(Job.select().where((Job.queue == queue.id) & (Job.state == JobState.RUNNING))
                               .order_by(Job.id))
                if len(running) == 2:  # both busy: the survivor cannot requeue the job before the driver sees the death
                    job = running[0]
                    killed.update(job=job.id, pid=int(job.worker.split(":")[1]))
                    os.kill(killed["pid"], signal.SIGKILL)
                time.sleep(0.05)
        finally:
            if database_proxy.obj is not None:
                database_proxy.obj.close()  # this thread's connection

    killer = threading.Thread(target=kill_the_first_worker_seen_running, daemon=True)
    killer.start()
    with pytest.raises(WorkerError) as caught:
        queue.run_jobs(workers=2, threads=1, progress=False)
    killer.join()
    message = str(caught.value)
    assert f"(pid {killed['pid']}) was killed by signal SIGKILL, leaving job(s) {killed['job']} running" in message, message
    assert f"queue {queue.id}: 4 complete" in message  # the survivor finished, the killed job included
    _assert_each_job_recorded_once(queue)
    assert Job.get_by_id(killed["job"]).attempts == 2


def test_the_worker_command_exits_0_when_drained_and_1_with_one_line_when_it_cannot_work(db, torch_queue, tmp_path):
    queue = torch_queue(job_count=1)
    Job.update(state=JobState.COMPLETE).where(Job.queue == queue.id).execute()

    def worker(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "aiqc.worker", *args], cwd=tmp_path, env=_clean_env(),
                              capture_output=True, text=True, timeout=120)

    drained = worker("--queue", str(queue.id), "--db", str(db))
    assert drained.returncode == 0, drained.stderr
    missing = worker("--queue", str(queue.id), "--db", str(tmp_path / "nope.sqlite3"))
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1, missing.stderr
    assert "python -m aiqc.worker: error: --db: expected an existing aiqc database file" in missing.stderr
    assert not (tmp_path / "nope.sqlite3").exists()  # a worker never creates a database
    no_queue = worker("--queue", "999", "--db", str(db))
    assert no_queue.returncode == 1 and no_queue.stderr.count("\n") == 1, no_queue.stderr
    assert "--queue: expected the id of a queue" in no_queue.stderr and "received 999" in no_queue.stderr


def test_workers_get_the_callers_own_folders_on_their_path(tmp_path, monkeypatch):
    from aiqc.executors.local import worker_environment

    monkeypatch.setenv("PYTHONPATH", "/already/there")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    folders = worker_environment()["PYTHONPATH"].split(os.pathsep)
    assert folders[0] == str(tmp_path) and folders[-1] == "/already/there"
    assert not [f for f in folders if "site-packages" in f or f.rstrip(os.sep).endswith("lib-dynload")]
