"""Sampled searches (random, Bayesian) and pruning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import aiqc
from aiqc import datum
from aiqc.exceptions import ChartNotApplicableError, MissingExtraError, ValidationError
from aiqc.orm import Hyperparamset, Job, JobState
from aiqc.search import Categorical, Float, Int, Search

import fns
from fns import reference_make

pytestmark = pytest.mark.backends


@pytest.fixture
def torch_ready():
    pytest.importorskip("torch")
    pytest.importorskip("optuna")


def _target_splitset():
    """A label near 3.0: the constant model's error is (x - 3)^2 + the label's variance."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"f": rng.normal(size=200), "y": 3.0 + rng.normal(0, 0.05, 200)})
    return aiqc.Pipeline.Tabular.make(df_or_path=df, label_column="y", feature_cols_excluded="y",
                                      size_test=0.2, size_validation=0.2, random_state=0)


def _iris_queue(search, hyperparameters, fn_train=fns.torch_train, repeat_count=1):
    splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
    return aiqc.Experiment.make(library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build,
                                fn_train=fn_train, hyperparameters=hyperparameters, repeat_count=repeat_count,
                                splitset_id=splitset.id, search=search)


BAD = {
    "empty range": (lambda: {"x": Int(5, 5)}, None, r"Int: expected low < high \(a non-empty range\); received low=5, high=5"),
    "inverted range": (lambda: {"x": Float(1.0, 0.0)}, None, r"Float: expected low < high"),
    "log of zero": (lambda: {"x": Float(0.0, 1.0, log=True)}, None, r"Float: expected low > 0 with log=True"),
    "distribution with grid": (lambda: {"x": Float(0.0, 1.0)}, Search(), r"hyperparameters\['x'\]: expected a list with search strategy 'grid'"),
    "distribution without search": (lambda: {"x": Float(0.0, 1.0)}, None, r"hyperparameters\['x'\]: expected a list with search strategy 'grid'"),
    "no trials": (lambda: {"x": Float(0.0, 1.0)}, Search("random", n_trials=0), r"search.n_trials: expected an integer >= 1; received 0"),
    "unknown strategy": (lambda: {"x": [1, 2]}, Search("annealing", n_trials=3), r"search.strategy: expected one of \('grid', 'random', 'bayesian', 'gp'\); received 'annealing'"),
    "unknown pruner": (lambda: {"x": [1, 2]}, Search("random", n_trials=3, pruner="hyperband"), r"search.pruner: expected None or one of \('median', 'successive_halving'\); received 'hyperband'"),
    "metric of another analysis": (lambda: {"x": [1, 2]}, Search("random", n_trials=3, metric="accuracy"), r"search.metric: expected one of \['r2', 'mse', 'mae', 'explained_variance', 'rmse'\] for regression; received 'accuracy'"),
    "unknown search key": (lambda: {"x": [1, 2]}, {"strategy": "random", "trials": 3}, r"search: expected keys among .*received unknown keys \['trials'\]"),
    "empty choices": (lambda: {"x": Categorical([])}, None, r"Categorical.choices: expected a non-empty list of values"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_search_is_refused_before_any_write(db, row_counts, torch_ready, case):
    make_grid, search, message = BAD[case]
    splitset = _target_splitset()
    before = row_counts()
    with pytest.raises(ValidationError, match=message):
        aiqc.Experiment.make(library="pytorch", analysis_type="regression", fn_build=fns.constant_build,
                             fn_train=fns.constant_train, hyperparameters=make_grid(), splitset_id=splitset.id,
                             search=search)
    assert row_counts() == before


def test_missing_search_extra_names_it(db, row_counts, torch_ready, monkeypatch):
    import importlib.util

    splitset = _target_splitset()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    before = row_counts()
    with pytest.raises(MissingExtraError, match=r"pip install 'aiqc\[search\]'"):
        aiqc.Experiment.make(library="pytorch", analysis_type="regression", fn_build=fns.constant_build,
                             fn_train=fns.constant_train, hyperparameters={"x": Float(0, 1)},
                             splitset_id=splitset.id, search=Search("random", n_trials=3))
    assert row_counts() == before


def _trials_to_reach(strategy: str, seed: int, n_trials: int = 25, tolerance: float = 0.3) -> tuple[int, list]:
    queue = aiqc.Experiment.make(
        library="pytorch", analysis_type="regression", fn_build=fns.constant_build, fn_train=fns.constant_train,
        hyperparameters={"x": Float(-10.0, 10.0), "neuron_count": [1]}, splitset_id=queue_splitset[0].id,
        search=Search(strategy, n_trials=n_trials, metric="mae", seed=seed))
    summary = queue.run_jobs(progress=False)
    assert summary.complete == n_trials
    xs = [h.hyperparameters["x"] for h in queue.experiment.hyperparamsets.order_by(Hyperparamset.index)]
    hits = [i for i, x in enumerate(xs, start=1) if abs(x - 3.0) < tolerance]
    return (hits[0] if hits else n_trials + 1), xs


queue_splitset: list = []


def test_bayesian_finds_a_known_optimum_sooner_than_random(db, torch_ready):
    queue_splitset[:] = [_target_splitset()]
    needed = {"random": [], "bayesian": []}
    for seed in (0, 1, 2):
        for strategy in needed:
            count, xs = _trials_to_reach(strategy, seed)
            needed[strategy].append(count)
            assert all(-10.0 <= x <= 10.0 for x in xs) and len(xs) == 25
    assert np.mean(needed["bayesian"]) < np.mean(needed["random"]), needed
    assert max(needed["bayesian"]) <= 25  # Bayesian gets there every time


@pytest.mark.parametrize("strategy", ["random", "bayesian", "gp"])
def test_every_strategy_samples_inside_the_space(db, torch_ready, strategy):
    queue = _iris_queue(Search(strategy, n_trials=6, seed=0, n_startup_trials=3),
                        {"neuron_count": Int(2, 16), "learning_rate": Float(1e-3, 0.1, log=True),
                         "batch_size": Categorical([16, 32]), "epoch_count": [1]})
    summary = queue.run_jobs(progress=False)
    assert summary.complete == 6 and queue.expected_job_count == 6
    for trial in queue.experiment.hyperparamsets:
        hp = trial.hyperparameters
        assert 2 <= hp["neuron_count"] <= 16 and isinstance(hp["neuron_count"], int)
        assert 1e-3 <= hp["learning_rate"] <= 0.1 and hp["batch_size"] in (16, 32) and hp["epoch_count"] == 1
    assert aiqc.list_queues().iloc[-1][["complete", "pruned", "failed"]].tolist() == [6, 0, 0]


def test_seeded_search_is_reproducible_and_best_params(db, torch_ready):
    queue_splitset[:] = [_target_splitset()]
    _, first = _trials_to_reach("bayesian", seed=7, n_trials=8)
    _, again = _trials_to_reach("bayesian", seed=7, n_trials=8)
    assert first == again
    queue = aiqc.Queue.select().order_by(aiqc.Queue.id.desc()).first()
    best = queue.best_params(metric="mae")
    assert best["x"] == min(first, key=lambda x: abs(x - 3.0)) and best["neuron_count"] == 1


def test_interrupted_search_resumes_to_the_requested_trial_count(db, torch_ready, tmp_path):
    queue = _iris_queue(Search("random", n_trials=5, seed=3),
                        {"neuron_count": [4, 8, 16, 32], "batch_size": [32], "epoch_count": [1],
                         "marker": [str(tmp_path / "stop")]}, fn_train=fns.train_interrupted_once)
    first = queue.run_jobs(progress=False)
    if not first.interrupted:  # the sampler never drew neuron_count=8: nothing to resume
        pytest.skip("no interruption drawn")
    assert queue.experiment.hyperparamsets.count() < 5 or first.queued == 1
    second = queue.run_jobs(progress=False)
    assert (second.complete, second.queued) == (5, 0)
    assert queue.experiment.hyperparamsets.count() == 5 and queue.job_count == 5
    assert sum(j.attempts for j in queue.jobs) == 6  # only the interrupted job ran twice


def test_pruning_stops_hopeless_jobs_early_and_keeps_the_best(db, torch_ready):
    grid = {"learning_rate": [0.05, 1e-9], "neuron_count": [8, 16], "batch_size": [16], "epoch_count": [12]}

    def run(pruner):
        queue = _iris_queue(Search("grid", seed=0, pruner=pruner, n_startup_trials=1, n_warmup_epochs=2), grid)
        summary = queue.run_jobs(progress=False)
        return queue, summary

    pruned_queue, summary = run("median")
    assert (summary.complete, summary.pruned) == (2, 2)
    for job in pruned_queue.jobs:
        hopeless = job.hyperparameters["learning_rate"] < 1e-6
        assert job.state is (JobState.PRUNED if hopeless else JobState.COMPLETE)
        epochs = len(job.history()["loss"])
        assert epochs < 6 if hopeless else epochs == 12  # stopped well before the last epoch
    plain_queue, plain = run(None)
    assert plain.complete == 4
    assert pruned_queue.best_params() == plain_queue.best_params()
    assert pruned_queue.best_job().metrics() == plain_queue.best_job().metrics()
    frame = pruned_queue.metrics_to_pandas(states=["PRUNED"])
    assert set(frame["state"]) == {"PRUNED"} and len(frame) == 2 * 3


def test_successive_halving_prunes_the_worst(db, torch_ready):
    grid = {"learning_rate": [0.05, 0.03, 1e-9, 1e-9], "neuron_count": [8], "batch_size": [16], "epoch_count": [9]}
    queue = _iris_queue(Search("grid", seed=0, pruner="successive_halving", reduction_factor=2, n_warmup_epochs=0), grid)
    summary = queue.run_jobs(progress=False)
    assert summary.complete >= 1 and summary.pruned >= 2
    hopeless = [j for j in queue.jobs if j.hyperparameters["learning_rate"] < 1e-6]
    assert all(j.state is JobState.PRUNED for j in hopeless)  # cut at a rung, in the bottom half
    assert all(len(j.history()["loss"]) < 9 for j in hopeless)


def test_keras_jobs_report_epochs_and_can_be_pruned(db):
    pytest.importorskip("keras")
    pytest.importorskip("optuna")
    splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
    queue = aiqc.Experiment.make(
        library="keras", analysis_type="classification_multi", fn_build=fns.keras_build, fn_train=fns.keras_train,
        hyperparameters={"learning_rate": [0.05, 1e-9], "neuron_count": [8], "batch_size": [32], "epoch_count": [8],
                         "analysis": ["classification_multi"]},
        splitset_id=splitset.id, search=Search("grid", seed=0, pruner="median", n_startup_trials=1, n_warmup_epochs=2))
    summary = queue.run_jobs(progress=False)
    assert (summary.complete, summary.pruned) == (1, 1)
    hopeless = queue.jobs.where(Job.state == JobState.PRUNED).get()
    assert len(hopeless.history()["loss"]) < 8
    assert hopeless.get_model() is not None  # stored, and the fit wrapper did not leak into the file


# --- search charts ------------------------------------------------------------------------
@pytest.fixture
def searched(db, torch_ready):
    grid = {"neuron_count": Int(2, 32, log=True), "learning_rate": Float(1e-4, 0.1, log=True),
            "batch_size": Categorical([16, 64]), "epoch_count": [6]}
    queue = _iris_queue(Search("bayesian", n_trials=10, seed=1, pruner="median", n_startup_trials=3,
                               n_warmup_epochs=2), grid)
    queue.run_jobs(progress=False)
    return queue


def test_optimization_history_data(searched):
    from aiqc.plots import _data

    data = _data.optimization_history_data(searched)
    assert data["trials"] == list(range(10)) and data["direction"] == "maximize"
    best = [b for b in data["best"] if b is not None]
    assert best == sorted(best)  # best so far never gets worse
    complete = [v for v, s in zip(data["values"], data["states"]) if s == "COMPLETE"]
    assert max(complete) == best[-1]
    frame = searched.metrics_to_pandas(["accuracy"], states=["COMPLETE"]).query("split == 'validation'")
    assert max(complete) == pytest.approx(frame["accuracy"].max())
    assert len(searched.plot_optimization_history().data) == 2


def test_importance_slice_and_contour_data(searched):
    from aiqc.plots import _data

    complete = searched.state_counts()["COMPLETE"]
    importance = _data.importance_data(searched)
    assert set(importance["parameters"]) <= {"neuron_count", "learning_rate", "batch_size"}
    assert sum(importance["importances"]) == pytest.approx(1.0) and min(importance["importances"]) >= 0
    slices = _data.slice_data(searched)
    assert set(slices["parameters"]) == {"neuron_count", "learning_rate", "batch_size"}
    assert all(len(s["values"]) == complete for s in slices["parameters"].values())
    assert all(1e-4 <= v <= 0.1 for v in slices["parameters"]["learning_rate"]["values"])
    contour = _data.contour_data(searched, "learning_rate", "neuron_count", resolution=12)
    assert len(contour["z"]) == 12 and all(len(row) == 12 for row in contour["z"])
    cells = [v for row in contour["z"] for v in row if v is not None]
    assert cells and min(contour["values"]) - 1e-9 <= min(cells) and max(cells) <= max(contour["values"]) + 1e-9
    with pytest.raises(ValidationError, match=r"x/y: expected searched hyperparameters"):
        _data.contour_data(searched, "epoch_count", "neuron_count")
    assert searched.plot_contour("learning_rate", "neuron_count").data[0].type == "contour"
    assert len(searched.plot_slice().data) == 3 and searched.plot_param_importance().data[0].type == "bar"


def test_intermediate_values_show_where_pruning_cut_in(searched):
    from aiqc.plots import _data

    data = _data.intermediate_data(searched)
    assert data["name"] == "val_loss" and len(data["jobs"]) == searched.job_count
    for job in data["jobs"]:
        assert job["epochs"] == list(range(1, len(job["epochs"]) + 1))
        assert (len(job["epochs"]) < 6) if job["state"] == "PRUNED" else len(job["epochs"]) == 6
    assert len(searched.plot_intermediate_values().data) == searched.job_count


def test_report_includes_search_charts(searched, tmp_path):
    text = searched.report(tmp_path / "search.html").read_text()
    for title in ("Optimisation history", "Hyperparameter importance", "Slices", "Contour of", "Intermediate values"):
        assert title in text
    assert text.count('class="plotly-graph-div"') >= 12


def test_search_charts_need_a_search(db, torch_ready):
    queue = _iris_queue(None, {"neuron_count": [4], "batch_size": [32], "epoch_count": [1]})
    queue.run_jobs(progress=False)
    with pytest.raises(ChartNotApplicableError, match=r"queue: expected a queue made with search=...; queue \d+ is a plain grid"):
        queue.plot_optimization_history()


# --- sampling beside other workers (issue #14) ------------------------------------------------------------
def _constant_search(strategy: str, seed: int, n_trials: int, **hyperparameters):
    """A search of the constant model on :func:`_target_splitset` (``queue_splitset[0]``)."""
    grid = {"x": Float(-10.0, 10.0), "neuron_count": [1], **{k: [v] for k, v in hyperparameters.items()}}
    return aiqc.Experiment.make(
        library="pytorch", analysis_type="regression", fn_build=fns.constant_build, fn_train=fns.constant_train,
        hyperparameters=grid, splitset_id=queue_splitset[0].id,
        search=Search(strategy, n_trials=n_trials, metric="mae", seed=seed, n_startup_trials=2))


def _combinations(queue) -> list:
    return [h.hyperparameters["x"] for h in queue.experiment.hyperparamsets.order_by(Hyperparamset.index)]


def test_sampling_leaves_the_write_lock_to_other_workers(db, torch_ready, monkeypatch):
    """While a worker samples, it holds no transaction: another connection takes SQLite's write lock at once."""
    import sqlite3

    from aiqc import sampling
    from aiqc.orm import database_proxy

    queue_splitset[:] = [_target_splitset()]
    queue = _constant_search("random", seed=0, n_trials=3)
    sample, checked = sampling.next_trial, []

    def sample_beside_a_writer(experiment):
        assert not database_proxy.obj.in_transaction() and not database_proxy.obj.connection().in_transaction
        other = sqlite3.connect(db, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # "database is locked" at once if this worker held the lock
            other.execute("ROLLBACK")
        finally:
            other.close()
        checked.append(experiment.id)
        return sample(experiment)

    monkeypatch.setattr(sampling, "next_trial", sample_beside_a_writer)
    summary = queue.run_jobs(progress=False)
    assert summary.complete == 3 and len(checked) == 4  # 3 trials, then one look that finds the search done


@pytest.mark.parametrize("repeat_count", [1, 2], ids=["resamples", "takes-the-winners-job"])
def test_a_worker_that_loses_the_race_for_a_trial_index_claims_again(storage, torch_ready, monkeypatch,
                                                                        repeat_count):
    """Worker A samples trial 0; meanwhile worker B adds trial 0 and claims its job. A's insert
    meets the unique (experiment, index): A takes trial 0's other job if it has one, else
    samples trial 1. No trial index or job twice; exactly n_trials trials."""
    from aiqc import runner, sampling

    splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
    queue = aiqc.Experiment.make(
        library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build, fn_train=fns.torch_train,
        hyperparameters={"neuron_count": Int(2, 16), "batch_size": [32], "epoch_count": [1]},
        repeat_count=repeat_count, splitset_id=splitset.id, search=Search("random", n_trials=2, seed=0))
    sample, samples = sampling.next_trial, []

    def racing(experiment):
        trial = sample(experiment)
        samples.append(trial[0] if trial else None)
        if len(samples) == 1:  # worker B claims while worker A samples
            assert runner.claim(queue.id, "host:2:b") is not None
        return trial

    monkeypatch.setattr(sampling, "next_trial", racing)
    a = runner.claim(queue.id, "host:1:a")
    b = Job.get(Job.worker == "host:2:b").id
    assert a is not None and a != b
    assert Job.get_by_id(a).worker == "host:1:a" and Job.get_by_id(a).state is JobState.RUNNING
    trials = [h.index for h in queue.experiment.hyperparamsets.order_by(Hyperparamset.index)]
    if repeat_count == 1:
        assert samples == [0, 0, 1] and trials == [0, 1]  # A lost index 0 to B, then sampled index 1
        assert Job.get_by_id(a).hyperparamset.index == 1
    else:
        assert samples == [0, 0] and trials == [0]  # A took trial 0's second job instead
        assert Job.get_by_id(a).hyperparamset_id == Job.get_by_id(b).hyperparamset_id
    while runner.claim(queue.id, "host:1:a") is not None:
        pass
    assert queue.experiment.hyperparamsets.count() == 2 and queue.job_count == 2 * repeat_count
    assert Job.select().where(Job.queue == queue.id, Job.state == JobState.QUEUED).count() == 0


@pytest.mark.parametrize("strategy", ["random", "bayesian"])
def test_the_kept_study_samples_as_a_study_rebuilt_from_every_trial(db, torch_ready, monkeypatch, strategy):
    """A seeded search samples the same combinations whether the worker keeps its study between
    trials or reads it afresh from the database before each (as aiqc did before)."""
    from aiqc import sampling

    queue_splitset[:] = [_target_splitset()]
    kept = _constant_search(strategy, seed=4, n_trials=8)
    assert kept.run_jobs(progress=False).complete == 8
    assert sampling._cached_study.cache_info().misses == 1  # one study, kept for every trial
    sample = sampling.next_trial

    def afresh(experiment):
        sampling._cached_study.cache_clear()
        return sample(experiment)

    monkeypatch.setattr(sampling, "next_trial", afresh)
    rebuilt = _constant_search(strategy, seed=4, n_trials=8)
    assert rebuilt.run_jobs(progress=False).complete == 8
    assert _combinations(kept) == _combinations(rebuilt) and len(set(_combinations(kept))) == 8


def fail_while_flagged(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    """constant_train, but jobs with x > 0 fail while the ``flag`` file exists."""
    import os

    if hp["x"] > 0 and os.path.exists(hp["flag"]):
        raise RuntimeError("flagged")
    return model


def _finished_trials(study) -> list:
    import optuna

    kept = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [(t.params, t.state, t.value) for t in study.trials if t.state in kept]


def test_the_kept_study_follows_failed_trials_that_are_retried(db, torch_ready, tmp_path):
    """FAILED jobs can run again (retry_failed=True): a trial the study holds as FAIL that then
    completes makes the study start over from the database."""
    from aiqc import sampling
    from aiqc.orm.base import database_key

    flag = tmp_path / "flag"
    flag.touch()
    queue_splitset[:] = [_target_splitset()]
    queue = aiqc.Experiment.make(
        library="pytorch", analysis_type="regression", fn_build=fns.constant_build, fn_train=fail_while_flagged,
        hyperparameters={"x": Float(-10.0, 10.0), "neuron_count": [1], "flag": [str(flag)]},
        splitset_id=queue_splitset[0].id, search=Search("bayesian", n_trials=8, metric="mae", seed=0,
                                                        n_startup_trials=2))
    with pytest.warns(RuntimeWarning, match="FAILED"):
        first = queue.run_jobs(progress=False)
    assert first.failed > 0 and first.complete > 0
    flag.unlink()
    assert queue.run_jobs(progress=False, retry_failed=True).complete == 8
    experiment = queue.experiment
    cached = sampling._cached_study(database_key(), experiment.id, experiment.created_at)
    cached.update(experiment)
    study, _ = sampling.build_study(experiment, experiment.search_settings, sampling.search_space(experiment), 0)
    assert len(_finished_trials(study)) == 8
    assert _finished_trials(cached.study) == _finished_trials(study)


def test_a_study_is_never_used_for_another_database(tmp_path, torch_ready, monkeypatch):
    """The kept study is per database: ``clear_caches`` forgets it, and a database made anew at
    the same place (same path, same experiment id) starts with a new study."""
    from aiqc import sampling
    from aiqc.database import clear_caches, current_path
    from aiqc.database.sqlite import remove_files
    from aiqc.orm import database_proxy

    monkeypatch.delenv("AIQC_DB", raising=False)

    def search_in(path) -> list:
        aiqc.setup(path)
        queue_splitset[:] = [_target_splitset()]
        queue = _constant_search("bayesian", seed=5, n_trials=5)
        assert queue.run_jobs(progress=False).complete == 5
        return _combinations(queue)

    def close() -> None:
        database_proxy.obj.close()
        database_proxy.initialize(None)

    try:
        reference = search_in(tmp_path / "reference.sqlite3")
        assert sampling._cached_study.cache_info().currsize == 1
        clear_caches()
        assert sampling._cached_study.cache_info().currsize == 0
        close()
        assert search_in(tmp_path / "first.sqlite3") == reference
        path = current_path()
        close()
        remove_files(path)  # deleted by hand, without clear_caches: the same path and experiment id again
        assert search_in(path) == reference
    finally:
        if database_proxy.obj is not None:
            close()
        clear_caches()
