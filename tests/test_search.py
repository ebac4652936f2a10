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
