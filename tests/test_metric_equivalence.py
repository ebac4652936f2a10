"""aiqc's metrics equal scikit-learn's, to 1e-9, on random splits (Hypothesis).

:mod:`aiqc.metrics` derives every metric of a split from one confusion matrix, one sort per
class or one residual instead of calling scikit-learn once per metric; scikit-learn stays the
reference. Generated splits include the degenerate ones: a single row, classes absent from the
truth or never predicted, predictions of a class outside ``labels``, tied scores, constant or
perfectly predicted regression truth, several outputs.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from aiqc import metrics

pytestmark = pytest.mark.filterwarnings("ignore")  # scikit-learn warns on the degenerate splits

EXAMPLES = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def assert_same(ours: dict, theirs: dict) -> None:
    """Equal to 1e-9 (absolute or relative), NaN where scikit-learn gives NaN."""
    assert set(ours) >= set(theirs)
    for name, expected in theirs.items():
        value = ours[name]
        if math.isnan(expected):
            assert math.isnan(value), (name, value, expected)
        else:
            assert math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-9), (name, value, expected)


@st.composite
def classified(draw, min_classes: int = 2, max_classes: int = 5, outside: bool = False):
    """(y_true, predictions, probabilities (n, k), labels): truth in ``range(k)``, some classes
    possibly absent; predictions in it too, or (``outside``) also one below and one above;
    probabilities with ties (one decimal) or without."""
    k = draw(st.integers(min_classes, max_classes))
    n = draw(st.integers(1, 40))
    y_true = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    low, high = (-1, k) if outside else (0, k - 1)
    predictions = np.array(draw(st.lists(st.integers(low, high), min_size=n, max_size=n)))
    weights = np.array(draw(st.lists(st.lists(st.floats(0.01, 1.0), min_size=k, max_size=k), min_size=n, max_size=n)))
    if draw(st.booleans()):
        weights = np.round(weights, 1) + 0.1  # ties between rows
    return y_true, predictions, weights / weights.sum(axis=1, keepdims=True), list(range(k))


@EXAMPLES
@given(classified(outside=True))
def test_counted_metrics_equal_sklearn(split):
    y_true, predictions, _, labels = split
    precision, recall, f1, _ = skm.precision_recall_fscore_support(y_true, predictions, labels=labels,
                                                                   average="weighted", zero_division=0)
    assert_same(metrics.classification(y_true, predictions, labels), {
        "accuracy": skm.accuracy_score(y_true, predictions), "precision": precision, "recall": recall, "f1": f1})
    assert_same(metrics.multiclass(y_true, predictions), {
        "f1_macro": skm.f1_score(y_true, predictions, average="macro", zero_division=0),
        "balanced_accuracy": skm.balanced_accuracy_score(y_true, predictions)})
    assert metrics.Confusion(y_true, predictions).mcc() == pytest.approx(
        skm.matthews_corrcoef(y_true, predictions), abs=1e-9)


@EXAMPLES
@given(classified(min_classes=3))
def test_probability_metrics_equal_sklearn(split):
    y_true, predictions, distribution, labels = split
    expected = {"log_loss": skm.log_loss(y_true, y_proba=distribution, labels=labels), "roc_auc": math.nan}
    if set(y_true) == set(labels):
        expected["roc_auc"] = skm.roc_auc_score(y_true, distribution, multi_class="ovr", average="macro",
                                                labels=labels)
    assert_same(metrics.classification(y_true, predictions, labels, distribution), expected)


@EXAMPLES
@given(classified(min_classes=2, max_classes=2), st.sampled_from([0, 1]))
def test_binary_metrics_equal_sklearn(split, positive):
    y_true, predictions, distribution, labels = split
    scores = distribution[:, 1]
    precision, recall, f1, _ = skm.precision_recall_fscore_support(y_true, predictions, pos_label=positive,
                                                                   average="binary", zero_division=0)
    expected = {"precision_positive": precision, "recall_positive": recall, "f1_positive": f1,
                "balanced_accuracy": skm.balanced_accuracy_score(y_true, predictions),
                "mcc": skm.matthews_corrcoef(y_true, predictions), "average_precision": math.nan}
    if (y_true == positive).any():
        expected["average_precision"] = skm.average_precision_score(
            y_true, scores if positive == 1 else 1 - scores, pos_label=positive)
    assert_same(metrics.binary(y_true, predictions, positive, scores), expected)
    roc = skm.roc_auc_score(y_true, scores) if len(set(y_true)) == 2 else math.nan
    common = {"log_loss": skm.log_loss(y_true, y_proba=distribution, labels=labels), "roc_auc": roc}
    assert_same(metrics.classification(y_true, predictions, labels, distribution, scores), common)
    # a multiclass experiment of two classes: one-vs-rest on both columns is the AUC of class 1
    assert_same(metrics.classification(y_true, predictions, labels, distribution), common)


@EXAMPLES
@given(classified(min_classes=3, max_classes=3), st.sampled_from([0, 1]))
def test_binary_metrics_refuse_what_sklearn_refuses(split, positive):
    y_true, predictions, _, _ = split
    present = set(y_true) | set(predictions)
    refused = len(present) > 2 or (len(present) == 2 and positive not in present)
    try:
        skm.precision_recall_fscore_support(y_true, predictions, pos_label=positive, average="binary")
    except ValueError:
        assert refused
        with pytest.raises(ValueError):
            metrics.binary(y_true, predictions, positive)
    else:
        assert not refused
        metrics.binary(y_true, predictions, positive)


def test_log_loss_refuses_what_sklearn_refuses():
    distribution = np.array([[0.2, 0.8], [0.6, 0.4]])
    for y_true, probabilities in (([0, 2], distribution), ([0, 1], np.array([[-0.2, 1.2], [0.6, 0.4]]))):
        with pytest.raises(ValueError), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            skm.log_loss(y_true, y_proba=probabilities, labels=[0, 1])
        with pytest.raises(ValueError):
            metrics.log_loss(np.array(y_true), probabilities, [0, 1])
    with pytest.raises(ValueError):
        metrics.log_loss(np.array([0, 1]), np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1]]), [0, 1])


@st.composite
def regressed(draw):
    """(y_true, predictions): 1 to 30 rows of 1 to 3 outputs; the truth sometimes constant,
    the predictions sometimes perfect or constant."""
    n, outputs = draw(st.integers(1, 30)), draw(st.integers(1, 3))
    values = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
    shape = (n,) if outputs == 1 else (n, outputs)
    y_true = np.array(draw(st.lists(values, min_size=n * outputs, max_size=n * outputs))).reshape(shape)
    if draw(st.booleans()):
        y_true = np.full(shape, draw(values))
    kind = draw(st.sampled_from(["random", "perfect", "constant"]))
    if kind == "perfect":
        return y_true, y_true.copy()
    if kind == "constant":
        return y_true, np.full(shape, draw(values))
    return y_true, np.array(draw(st.lists(values, min_size=n * outputs, max_size=n * outputs))).reshape(shape)


@EXAMPLES
@given(regressed())
def test_regression_metrics_equal_sklearn(split):
    y_true, predictions = split
    assert_same(metrics.regression(y_true, predictions), {
        "r2": skm.r2_score(y_true, predictions), "mse": skm.mean_squared_error(y_true, predictions),
        "mae": skm.mean_absolute_error(y_true, predictions),
        "explained_variance": skm.explained_variance_score(y_true, predictions),
        "rmse": skm.root_mean_squared_error(y_true, predictions)})


def test_ranking_metrics_by_hand():
    positives, scores = np.array([True, False, True, False]), np.array([0.9, 0.9, 0.4, 0.1])
    assert metrics.roc_auc(positives, scores) == pytest.approx(0.625)  # the tie counts one half
    assert metrics.average_precision(positives, scores) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert math.isnan(metrics.roc_auc(np.ones(3, dtype=bool), scores[:3]))
    assert math.isnan(metrics.average_precision(np.zeros(3, dtype=bool), scores[:3]))
