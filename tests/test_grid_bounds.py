"""A grid has a bound: Experiment.make counts its jobs (combinations x repeats x folds)
from the sizes alone, refuses more than ``max_jobs`` before anything is expanded or
written, and writes the rows of an accepted grid in batches, exactly as the formula says."""

from __future__ import annotations

import inspect
import itertools
import re

import pytest

import aiqc
import aiqc.experiment as making
from aiqc import datum
from aiqc.exceptions import ValidationError
from aiqc.orm import Fold, Hyperparamset, Job
from aiqc.search import Float, Search, job_seed
from aiqc.states import JobState

import fns
from fns import reference_make

pytestmark = pytest.mark.backends

MILLION = {name: list(range(1, 11)) for name in
           ("neuron_count", "batch_size", "epoch_count", "alpha", "beta", "gamma")}  # 10^6 combinations


@pytest.fixture
def splitset(db):
    pytest.importorskip("torch")
    return reference_make(datum.to_pandas("iris.tsv"), random_state=0)


@pytest.fixture
def folded(db):
    pytest.importorskip("torch")
    return reference_make(datum.to_pandas("iris.tsv"), size_validation=None, fold_count=2, random_state=0)


def _make(splitset, **changes):
    arguments = dict(library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build,
                     fn_train=fns.torch_train, repeat_count=1, splitset_id=splitset.id,
                     hyperparameters={"neuron_count": [4], "batch_size": [8], "epoch_count": [1]})
    return aiqc.Experiment.make(**{**arguments, **changes})


def _grid(*sizes):
    """A grid whose lists have these lengths (the functions' keys first)."""
    names = ["neuron_count", "batch_size", "epoch_count", "alpha", "beta"]
    grid = {"neuron_count": [4], "batch_size": [8], "epoch_count": [1]}
    grid.update({name: list(range(1, size + 1)) for name, size in zip(names, sizes)})
    return grid


def _refuse_to_expand(monkeypatch):
    """Fail the test if make expands the grid or builds a model before it counts."""
    def refuse(*args, **kwargs):
        raise AssertionError("the grid was expanded (or fn_build called) before the bound was checked")

    monkeypatch.setattr(making, "expand_grid", refuse)
    monkeypatch.setattr(making, "check_model_output", refuse)


def test_the_default_bound_is_documented():
    assert inspect.signature(aiqc.Experiment.make).parameters["max_jobs"].default == 100_000
    assert making.DEFAULT_MAX_JOBS == 100_000
    assert "max_jobs" in aiqc.Experiment.make.__doc__


def test_a_million_combinations_are_refused_before_anything_is_expanded_or_written(splitset, row_counts,
                                                                                    monkeypatch):
    before = row_counts()
    _refuse_to_expand(monkeypatch)
    expected = ("hyperparameters: expected at most max_jobs=100,000 jobs; received 10^6 combinations x 1 repeat "
                "x 1 fold = 1,000,000. Narrow the grid, use search=Search('random', n_trials=...), or pass "
                "max_jobs=... (None: no bound).")
    with pytest.raises(ValidationError, match=re.escape(expected)):
        _make(splitset, hyperparameters=MILLION)
    assert row_counts() == before


def test_a_grid_just_over_the_default_needs_max_jobs_raised(splitset, row_counts, monkeypatch):
    before = row_counts()
    grid = {"neuron_count": list(range(1, 100_002)), "batch_size": [8], "epoch_count": [1]}
    with pytest.raises(ValidationError, match=re.escape("max_jobs=100,000 jobs; received 100,001 combinations x "
                                                        "1 repeat x 1 fold = 100,001.")):
        _make(splitset, hyperparameters=grid)
    assert row_counts() == before
    written = []  # raised, it goes on to write: count what would be written without storing 100k rows

    def count(experiment, queue, start, combinations, seed, folds):
        assert not isinstance(combinations, (list, tuple))  # generated lazily, not built up front
        written.append(sum(1 for _ in combinations))
        return written[-1]

    monkeypatch.setattr(making, "write_trials", count)
    _make(splitset, hyperparameters=grid, max_jobs=100_001)
    assert written == [100_001]


def test_a_small_max_jobs_refuses_above_and_allows_up_to_it(splitset, row_counts):
    before = row_counts()
    with pytest.raises(ValidationError, match=re.escape(
            "hyperparameters: expected at most max_jobs=10 jobs; received 4 x 3 combinations x 1 repeat x 1 fold "
            "= 12.")):
        _make(splitset, hyperparameters=_grid(4, 3), max_jobs=10)
    assert row_counts() == before
    assert _make(splitset, hyperparameters=_grid(4, 2), max_jobs=10).job_count == 8
    assert _make(splitset, hyperparameters=_grid(5, 2), max_jobs=10).job_count == 10  # the bound itself is allowed


def test_max_jobs_none_means_no_bound(splitset, row_counts):
    queue = _make(splitset, hyperparameters=_grid(4, 3), max_jobs=None)
    assert queue.job_count == 12
    assert row_counts()["Hyperparamset"] == 12


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"], ids=repr)
def test_bad_max_jobs_is_refused_before_any_write(splitset, row_counts, bad):
    before = row_counts()
    with pytest.raises(ValidationError, match=re.escape(
            f"max_jobs: expected None (no bound) or an integer >= 1; received {bad!r}.")):
        _make(splitset, max_jobs=bad)
    assert row_counts() == before


def test_repeats_and_folds_are_counted(folded, row_counts, monkeypatch):
    before = row_counts()
    with monkeypatch.context() as patch:
        _refuse_to_expand(patch)
        with pytest.raises(ValidationError, match=re.escape(
                "received 3 combinations x 2 repeats x 2 folds = 12.")):
            _make(folded, hyperparameters=_grid(3), repeat_count=2, max_jobs=11)
    assert row_counts() == before
    assert _make(folded, hyperparameters=_grid(3), repeat_count=2, max_jobs=12).job_count == 12


def test_a_sampled_search_is_bounded_by_its_trials(splitset, row_counts, monkeypatch):
    pytest.importorskip("optuna")
    before = row_counts()
    space = {"neuron_count": [4], "batch_size": [8], "epoch_count": [1], "learning_rate": Float(1e-3, 0.1)}
    _refuse_to_expand(monkeypatch)
    with pytest.raises(ValidationError, match=re.escape(
            "search.n_trials: expected at most max_jobs=9 jobs; received n_trials=5 x 2 repeats x 1 fold = 10.")):
        _make(splitset, hyperparameters=space, repeat_count=2, search=Search("random", n_trials=5), max_jobs=9)
    with pytest.raises(ValidationError, match=re.escape("received n_trials=1,000,000 x 1 repeat x 1 fold")):
        _make(splitset, hyperparameters=space, search=Search("random", n_trials=10**6))
    assert row_counts() == before
    monkeypatch.undo()
    queue = _make(splitset, hyperparameters=space, repeat_count=2, search=Search("random", n_trials=5), max_jobs=10)
    assert queue.expected_job_count == 10


def test_a_batched_make_writes_the_rows_the_formula_says(folded):
    grid = {"neuron_count": list(range(1, 51)), "batch_size": list(range(1, 51)), "epoch_count": [1]}
    queue = _make(folded, hyperparameters=grid, repeat_count=2, seed=123)  # 2,500 combinations x 2 x 2: 10 batches
    experiment = queue.experiment
    assert experiment.seed == 123
    combinations = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    hyperparamsets = list(Hyperparamset.select().where(Hyperparamset.experiment == experiment)
                          .order_by(Hyperparamset.id))
    assert [h.index for h in hyperparamsets] == list(range(2_500))
    assert [h.hyperparameters for h in hyperparamsets] == combinations
    folds = list(Fold.select().where(Fold.splitset == folded).order_by(Fold.fold_index))
    assert len(folds) == 2
    ids = {h.index: h.id for h in hyperparamsets}
    expected = [(ids[index], repeat, fold.id, job_seed(123, index, repeat, fold.fold_index))
                for index in range(2_500) for repeat in range(2) for fold in folds]
    jobs = Job.select(Job.hyperparamset, Job.repeat_index, Job.fold, Job.seed, Job.queue, Job.state, Job.attempts) \
        .where(Job.queue == queue).order_by(Job.id)
    assert [(j.hyperparamset_id, j.repeat_index, j.fold_id, j.seed) for j in jobs] == expected
    assert {(j.queue_id, j.state, j.attempts) for j in jobs} == {(queue.id, JobState.QUEUED, 0)}


def test_add_trial_still_adds_one_trial(splitset):
    queue = _make(splitset, hyperparameters=_grid(2), repeat_count=3, seed=7)
    experiment = queue.experiment
    hyperparamset = making.add_trial(experiment, queue, 2, {"neuron_count": 9, "batch_size": 8, "epoch_count": 1}, 7)
    stored = Hyperparamset.get_by_id(hyperparamset.id)
    assert (stored.index, stored.hyperparameters) == (2, {"neuron_count": 9, "batch_size": 8, "epoch_count": 1})
    jobs = list(Job.select().where(Job.hyperparamset == stored).order_by(Job.id))
    assert [(j.repeat_index, j.fold_id, j.seed) for j in jobs] == [(r, None, job_seed(7, 2, r, 0)) for r in range(3)]
    assert queue.job_count == 9
