"""Several processes on one SQLite file: atomic claims, dead workers, integrity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import aiqc
from aiqc import datum
from aiqc.orm import Job, JobState, Metric, TrainedModel, database_proxy

from fns import reference_make

pytestmark = [pytest.mark.backends, pytest.mark.slow]


@pytest.fixture
def torch_queue(db):
    pytest.importorskip("torch")
    import fns

    def make(job_count: int, sleep: float = 0.0):
        splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
        return aiqc.Experiment.make(
            library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build, fn_train=fns.torch_train,
            hyperparameters={"neuron_count": list(range(4, 4 + job_count)), "batch_size": [32], "epoch_count": [1],
                             "sleep": [sleep]},
            repeat_count=1, splitset_id=splitset.id)

    return make


def _assert_each_job_recorded_once(queue):
    jobs = list(queue.jobs)
    assert all(j.state is JobState.COMPLETE for j in jobs), [(j.id, j.state, j.error) for j in jobs]
    for job in jobs:
        assert TrainedModel.select().where(TrainedModel.job == job).count() == 1
        assert Metric.select().where(Metric.job == job).count() == 3 * 6
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


def test_four_workers_run_every_job_exactly_once(db, torch_queue):
    queue = torch_queue(job_count=16)
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
