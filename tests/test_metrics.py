"""Metrics: known answers, checked against scikit-learn called directly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from aiqc import metrics
from aiqc.analysis import REGISTRY, AnalysisType

MULTI, BINARY, REGRESSION = AnalysisType  # in definition order


def compute(analysis, *args, **kwargs):
    """Every metric of ``analysis`` for one split, through its registry entry."""
    return AnalysisType.parse(analysis).spec.compute_metrics(*args, **kwargs)


def multiclass(rows=40, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y_true = np.arange(rows) % classes
    probabilities = rng.dirichlet(np.ones(classes), size=rows)
    return y_true, probabilities.argmax(axis=1), probabilities


def test_classification_by_hand():
    y_true, predictions = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])
    values = compute(BINARY, y_true, predictions, np.array([0.1, 0.8, 0.4, 0.3]))
    assert values["accuracy"] == 0.75
    assert values["roc_auc"] == 1.0  # every positive scores above every negative
    assert values["recall"] == 0.75  # weighted: (2/2 * 2 + 1/2 * 2) / 4
    assert values["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4, 0.7])))


def test_multiclass_equals_sklearn():
    y_true, predictions, probabilities = multiclass()
    values = compute(MULTI, y_true, predictions, probabilities, labels=[0, 1, 2])
    assert list(values) == list(MULTI.spec.metrics)
    assert values == pytest.approx({
        "accuracy": skm.accuracy_score(y_true, predictions),
        "precision": skm.precision_score(y_true, predictions, average="weighted", zero_division=0),
        "recall": skm.recall_score(y_true, predictions, average="weighted", zero_division=0),
        "f1": skm.f1_score(y_true, predictions, average="weighted", zero_division=0),
        "roc_auc": skm.roc_auc_score(y_true, probabilities, multi_class="ovr", average="macro"),
        "log_loss": skm.log_loss(y_true, probabilities),
    })


def test_binary_equals_sklearn_for_either_probability_shape():
    rng = np.random.default_rng(1)
    y_true = np.arange(30) % 2
    positive = np.clip(y_true * 0.3 + rng.uniform(0, 0.7, 30), 0, 1)
    predictions = (positive >= 0.5).astype(int)
    expected = {
        "accuracy": skm.accuracy_score(y_true, predictions),
        "precision": skm.precision_score(y_true, predictions, average="weighted", zero_division=0),
        "recall": skm.recall_score(y_true, predictions, average="weighted", zero_division=0),
        "f1": skm.f1_score(y_true, predictions, average="weighted", zero_division=0),
        "roc_auc": skm.roc_auc_score(y_true, positive),
        "log_loss": skm.log_loss(y_true, positive),
    }
    assert compute(BINARY, y_true, predictions, positive) == pytest.approx(expected)
    as_columns = np.column_stack([1 - positive, positive])
    assert compute(BINARY, y_true[:, np.newaxis], predictions, as_columns) == pytest.approx(expected)


def test_regression_equals_sklearn_for_column_or_flat_labels():
    rng = np.random.default_rng(2)
    y_true = rng.normal(size=50)
    predictions = y_true + rng.normal(scale=0.3, size=50)
    expected = {
        "r2": skm.r2_score(y_true, predictions),
        "mse": skm.mean_squared_error(y_true, predictions),
        "mae": skm.mean_absolute_error(y_true, predictions),
        "explained_variance": skm.explained_variance_score(y_true, predictions),
    }
    assert compute(REGRESSION, y_true, predictions) == pytest.approx(expected)
    assert compute("regression", y_true[:, np.newaxis], predictions[:, np.newaxis]) == pytest.approx(expected)


def test_one_hot_labels_are_read_as_class_indices():
    y_true, predictions, probabilities = multiclass()
    assert compute(MULTI, np.eye(3)[y_true], predictions, probabilities) == pytest.approx(
        compute(MULTI, y_true, predictions, probabilities))


@pytest.mark.parametrize("analysis", [BINARY, MULTI])
def test_a_single_class_split_has_nan_roc_auc_and_a_log_loss(analysis):
    y_true = np.ones(6, dtype=int)
    probabilities = np.full(6, 0.8) if analysis is BINARY else np.tile([0.1, 0.7, 0.2], (6, 1))
    values = compute(analysis, y_true, np.ones(6, dtype=int), probabilities)
    assert math.isnan(values["roc_auc"])
    assert values["accuracy"] == 1.0
    assert values["log_loss"] == pytest.approx(-np.log(0.8 if analysis is BINARY else 0.7))


def test_log_loss_works_when_a_split_lacks_a_class():
    y_true, predictions, probabilities = multiclass(rows=12, classes=4)
    keep = y_true != 3  # the split holds classes 0-2 of 4
    values = compute(MULTI, y_true[keep], predictions[keep], probabilities[keep], labels=[0, 1, 2, 3])
    assert values["log_loss"] == pytest.approx(skm.log_loss(y_true[keep], probabilities[keep], labels=[0, 1, 2, 3]))
    assert math.isnan(values["roc_auc"])  # one-vs-rest is undefined for the absent class


def test_without_probabilities_only_the_probability_metrics_are_nan():
    y_true, predictions, _ = multiclass()
    values = compute(MULTI, y_true, predictions)
    assert math.isnan(values["roc_auc"]) and math.isnan(values["log_loss"])
    assert values["f1"] == pytest.approx(skm.f1_score(y_true, predictions, average="weighted"))


def test_non_finite_outputs_give_nan_not_an_error():
    assert all(math.isnan(v) for v in compute(REGRESSION, np.ones(3), np.array([1.0, np.nan, 2.0])).values())
    values = compute(BINARY, np.array([0, 1]), np.array([0, 1]), np.array([np.nan, 0.9]))
    assert values["accuracy"] == 1.0 and math.isnan(values["log_loss"])


def test_metric_names_defaults_and_direction():
    assert MULTI.spec.metrics == BINARY.spec.metrics == (
        "accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
    assert REGRESSION.spec.metrics == ("r2", "mse", "mae", "explained_variance")
    assert [a.spec.default_metric for a in AnalysisType] == ["accuracy", "accuracy", "r2"]
    assert metrics.LOWER_IS_BETTER == {"log_loss", "mse", "mae", "loss", "val_loss"}
    assert [m for a in AnalysisType for m in a.spec.metrics if a.spec.lower_is_better(m)] == [
        "log_loss", "log_loss", "mse", "mae"]
    assert metrics.lower_is_better("val_loss") and metrics.lower_is_better("custom_loss")
    assert not metrics.lower_is_better("val_accuracy")


def test_every_analysis_type_has_one_complete_registry_entry():
    assert set(REGISTRY) == set(AnalysisType)
    for analysis in AnalysisType:
        spec = analysis.spec
        assert spec.type is analysis and spec.default_metric in spec.metrics and spec.charts
    y_true, predictions, probabilities = multiclass()
    assert list(compute(MULTI, y_true, predictions, probabilities)) == list(MULTI.spec.metrics)
    assert list(compute(BINARY, y_true % 2, predictions % 2, probabilities[:, 0])) == list(BINARY.spec.metrics)
    assert list(compute(REGRESSION, y_true * 1.0, predictions * 1.0)) == list(REGRESSION.spec.metrics)


def test_an_unknown_metric_is_named_with_the_analysis_type():
    assert MULTI.spec.check_metric(None) == "accuracy" and REGRESSION.spec.check_metric("mae") == "mae"
    with pytest.raises(ValueError, match=r"metric: expected one of \['r2', .*\] for regression; received 'f1'"):
        REGRESSION.spec.check_metric("f1")
