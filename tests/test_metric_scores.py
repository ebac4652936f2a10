"""Metrics that fit the question, end to end: what run_jobs stores equals scikit-learn on the
stored predictions (regression in the label's original units), custom metrics are recorded
or fail their job by name, and non-finite models end FAILED, never COMPLETE."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.preprocessing import OrdinalEncoder, StandardScaler

import aiqc
from aiqc import datum
from aiqc.orm import Job, JobState, Metric
from aiqc.plots import _data

import fns
from fns import reference_make

pytestmark = pytest.mark.backends

GRID = {"neuron_count": [8], "batch_size": [16], "epoch_count": [3]}


@pytest.fixture(autouse=True)
def torch_ready(db):
    pytest.importorskip("torch")


def _make(splitset, analysis, build=fns.torch_build, train=fns.torch_train, grid=None, **changes):
    hyperparameters = {**(grid or GRID), "analysis": [analysis]}
    return aiqc.Experiment.make(library="pytorch", analysis_type=analysis, fn_build=build, fn_train=train,
                                hyperparameters=hyperparameters, repeat_count=1, splitset_id=splitset.id, **changes)


def _regression_splitset(**changes):
    df = datum.to_pandas("diabetes.csv").sample(160, random_state=0).reset_index(drop=True)
    kwargs = dict(df_or_path=df, label_column="progression", label_encoder=dict(sklearn_preprocess=StandardScaler()),
                  feature_cols_excluded="progression",
                  feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtypes=["float64"])],
                  size_test=0.2, bin_count=4, random_state=0)
    return aiqc.Pipeline.Tabular.make(**{**kwargs, **changes})


def _binary_splitset():
    df = datum.to_pandas("breast_cancer.csv").sample(200, random_state=0).reset_index(drop=True)
    return aiqc.Pipeline.Tabular.make(
        df_or_path=df, label_column="diagnosis", label_encoder=dict(sklearn_preprocess=OrdinalEncoder()),
        feature_cols_excluded="diagnosis", feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtypes=["float64"])],
        size_test=0.25, size_validation=0.25, random_state=0)


def _complete(queue):
    summary = queue.run_jobs(progress=False)
    failed = [j.error for j in queue.jobs if j.state is JobState.FAILED]
    assert summary.complete == queue.job_count, failed
    return list(queue.jobs.order_by(Job.id))


# --- regression: the label's original units ----------------------------------------------------
def test_regression_with_folds_is_measured_and_stored_in_the_labels_units():
    splitset = _regression_splitset(fold_count=2)
    jobs = _complete(_make(splitset, "regression"))
    assert len(jobs) == 2 and {j.fold_index for j in jobs} == {0, 1}
    raw = datum.to_pandas("diabetes.csv").sample(160, random_state=0).reset_index(drop=True)
    scalers = [splitset.label_encoder(fold) for fold in (0, 1)]
    assert scalers[0].mean_[0] != scalers[1].mean_[0]  # fit per fold: each job has its own
    for job in jobs:
        for split in ("train", "validation", "test"):
            rows, predictions, probabilities = job.predictions(split)
            actual = splitset.label_to_numpy(split, job.fold_index, encoded=False).ravel().astype(float)
            np.testing.assert_allclose(actual, raw["progression"].to_numpy()[rows])
            stored = job.metrics()[split]
            assert probabilities is None
            assert stored["mae"] == pytest.approx(skm.mean_absolute_error(actual, predictions))
            assert stored["mse"] == pytest.approx(skm.mean_squared_error(actual, predictions))
            assert stored["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(actual, predictions)))
            assert stored["r2"] == pytest.approx(skm.r2_score(actual, predictions))
            assert stored["explained_variance"] == pytest.approx(skm.explained_variance_score(actual, predictions))
        # the stored test predictions are the model's outputs through this fold's encoder, inverted
        rows, predictions, _ = job.predictions("test")
        np.testing.assert_allclose(job.predict(raw.iloc[rows])["prediction"], predictions, rtol=1e-5)
        assert 25 < predictions.mean() < 350  # progression's own scale, not a standard score
        data = _data.regression_data(job, "test")
        np.testing.assert_allclose(data["actual"], raw["progression"].to_numpy()[rows])
        np.testing.assert_allclose(data["predicted"], predictions)
        assert skm.mean_absolute_error(data["actual"], data["predicted"]) == pytest.approx(job.metrics()["test"]["mae"])
    assert job.queue.experiment.metric_set.lower_is_better("rmse")


def test_best_job_by_rmse_takes_the_smallest():
    queue = _make(_regression_splitset(size_validation=0.2), "regression", grid={**GRID, "neuron_count": [4, 8]})
    jobs = _complete(queue)
    best = queue.best_job(metric="rmse")
    assert best.metrics()["validation"]["rmse"] == min(j.metrics()["validation"]["rmse"] for j in jobs)


# --- binary: the positive class -----------------------------------------------------------------
@pytest.mark.parametrize("positive_class, positive", [(None, 1), ("benign", 0), ("malignant", 1)])
def test_binary_metrics_of_the_positive_class_equal_sklearn(positive_class, positive):
    splitset = _binary_splitset()
    assert splitset.class_names() == ["benign", "malignant"]
    queue = _make(splitset, "classification_binary", positive_class=positive_class)
    assert queue.experiment.positive_index() == positive
    (job,) = _complete(queue)
    for split in ("train", "validation", "test"):
        rows, predictions, probabilities = job.predictions(split)
        y = splitset.label_to_numpy(split).ravel().astype(int)
        stored = job.metrics()[split]
        positive_probability = probabilities if positive == 1 else 1 - probabilities
        assert stored["f1_positive"] == pytest.approx(skm.f1_score(y, predictions, pos_label=positive, zero_division=0))
        assert stored["precision_positive"] == pytest.approx(
            skm.precision_score(y, predictions, pos_label=positive, zero_division=0))
        assert stored["recall_positive"] == pytest.approx(
            skm.recall_score(y, predictions, pos_label=positive, zero_division=0))
        assert stored["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, predictions))
        assert stored["average_precision"] == pytest.approx(
            skm.average_precision_score(y == positive, positive_probability))
        assert stored["mcc"] == pytest.approx(skm.matthews_corrcoef(y, predictions))
        assert stored["roc_auc"] == pytest.approx(skm.roc_auc_score(y, probabilities))  # either class: the same
    curve = _data.precision_recall_data(job, "test")["curves"][0]
    assert curve["name"] == splitset.class_names()[positive]
    assert curve["area"] == pytest.approx(job.metrics()["test"]["average_precision"])


def test_multiclass_records_f1_macro_and_balanced_accuracy():
    splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
    (job,) = _complete(_make(splitset, "classification_multi"))
    rows, predictions, _ = job.predictions("test")
    y = splitset.label_to_numpy("test").argmax(axis=1)
    stored = job.metrics()["test"]
    assert stored["f1_macro"] == pytest.approx(skm.f1_score(y, predictions, average="macro", zero_division=0))
    assert stored["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, predictions))
    assert stored["f1"] == pytest.approx(skm.f1_score(y, predictions, average="weighted", zero_division=0))


# --- custom metrics ----------------------------------------------------------------------------------
def error_count(y_true, y_pred, y_prob):
    return float((np.asarray(y_true) != np.asarray(y_pred)).sum())


def probability_width(y_true, y_pred, y_prob):
    """What arrives as y_prob: its columns (multiclass), 1 for (n,) (binary), -1 for None."""
    if y_prob is None:
        return -1.0
    assert len(y_prob) == len(y_true)
    return float(1 if np.ndim(y_prob) == 1 else np.shape(y_prob)[1])


def truth_mean(y_true, y_pred, y_prob):
    return float(np.mean(y_true))


def vandal(y_true, y_pred, y_prob):
    """Changes its arguments in place: what is stored must not change."""
    y_pred[:] = 0
    y_true[:] = 0
    return 0.0


def test_custom_metrics_are_recorded_on_every_split():
    splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
    queue = _make(splitset, "classification_multi",
                  metrics={"errors": (error_count, "minimize"), "width": probability_width, "vandal": vandal})
    (job,) = _complete(queue)
    frame = queue.metrics_to_pandas()
    assert {"errors", "width", "vandal"} <= set(frame.columns)
    for split in ("train", "validation", "test"):
        row = frame[frame["split"] == split].iloc[0]
        rows, predictions, _ = job.predictions(split)
        y = splitset.label_to_numpy(split).argmax(axis=1)
        assert row["errors"] == (y != predictions).sum()
        assert row["width"] == 3.0
        assert job.metrics()[split]["accuracy"] == pytest.approx(skm.accuracy_score(y, predictions))
        assert predictions.any()  # the vandal got copies
    best = queue.best_job(metric="errors")
    assert best.id == job.id and queue.experiment.metric_set.lower_is_better("errors")


def test_custom_metrics_get_binary_probabilities_and_regression_values_in_original_units():
    binary = _make(_binary_splitset(), "classification_binary", metrics={"width": probability_width})
    (job,) = _complete(binary)
    assert job.metrics()["test"]["width"] == 1.0
    splitset = _regression_splitset(size_validation=0.2)
    regression = _make(splitset, "regression", metrics={"width": probability_width, "truth_mean": truth_mean})
    (job,) = _complete(regression)
    for split in ("train", "validation", "test"):
        raw = splitset.label_to_numpy(split, encoded=False).ravel().astype(float)
        assert job.metrics()[split]["truth_mean"] == pytest.approx(raw.mean())
        assert job.metrics()[split]["width"] == -1.0


def broken(y_true, y_pred, y_prob):
    raise ZeroDivisionError("no rows to divide by")


def not_a_number(y_true, y_pred, y_prob):
    return [0.5]


@pytest.mark.parametrize("fn, reason", [
    (broken, r"metrics\['custom'\]: raised ZeroDivisionError on the train split: no rows to divide by"),
    (not_a_number, r"metrics\['custom'\]: expected a real number .* on the train split; received \[0\.5\]\.$"),
])
def test_a_custom_metric_that_fails_fails_its_job_by_name(fn, reason):
    splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
    queue = _make(splitset, "classification_multi", metrics={"custom": fn})
    summary = queue.run_jobs(progress=False)
    assert (summary.complete, summary.failed) == (0, 1)
    job = queue.jobs.get()
    assert job.state is JobState.FAILED and "UserFunctionError" in job.error
    assert re.search(reason, job.error), job.error
    assert Metric.select().where(Metric.job == job).count() == 0


# --- non-finite results -----------------------------------------------------------------------------
def nan_build(features_shape, label_shape, **hp):
    """A linear model whose weights are NaN: every output is NaN."""
    import torch

    model = torch.nn.Linear(features_shape[0], label_shape[0])
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    return model


def untrained(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    return model


def nan_loss_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    """Records a loss that diverges at the second epoch."""
    for loss in (0.7, float("nan"), float("nan")):
        aiqc.record_epoch(model, loss=loss, val_loss=0.5)
    return model


@pytest.mark.parametrize("analysis, what", [("regression", "predictions"), ("classification_multi", "probabilities")])
def test_a_model_that_outputs_nan_fails_with_the_reason(analysis, what):
    splitset = (_regression_splitset(size_validation=0.2) if analysis == "regression"
                else reference_make(datum.to_pandas("iris.tsv"), random_state=0))
    queue = _make(splitset, analysis, build=nan_build, train=untrained)
    summary = queue.run_jobs(progress=False)
    assert (summary.complete, summary.failed) == (0, 1)
    job = queue.jobs.get()
    count = len(splitset.indices("train"))
    assert job.state is JobState.FAILED and "NonFiniteError" in job.error
    assert (f"job: the model's {what} on the train split are not finite ({count} of {count} rows): "
            "check the features for NaN") in job.error
    assert Metric.select().where(Metric.job == job).count() == 0


def test_a_diverged_training_loss_fails_the_job():
    splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
    queue = _make(splitset, "classification_multi", train=nan_loss_train)
    queue.run_jobs(progress=False)
    job = queue.jobs.get()
    assert job.state is JobState.FAILED
    assert "job: the training loss is not finite (nan at epoch 3 of 3, the first non-finite one at epoch 2)" in job.error
    assert "the learning rate" in job.error
