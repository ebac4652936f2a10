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
        "f1_macro": skm.f1_score(y_true, predictions, average="macro"),
        "balanced_accuracy": skm.balanced_accuracy_score(y_true, predictions),
    })


def test_multiclass_f1_macro_differs_from_weighted_on_imbalanced_classes():
    y_true = np.array([0] * 8 + [1, 2])
    predictions = np.array([0] * 8 + [0, 2])  # class 1 is never found
    values = compute(MULTI, y_true, predictions, labels=[0, 1, 2])
    assert values["f1_macro"] == pytest.approx(skm.f1_score(y_true, predictions, average="macro", zero_division=0))
    assert values["f1_macro"] == pytest.approx((16 / 17 + 0 + 1) / 3)
    assert values["f1"] == pytest.approx((8 * 16 / 17 + 0 + 1) / 10)  # weighted, as before
    assert values["balanced_accuracy"] == pytest.approx((1 + 0 + 1) / 3)


def _binary_case(seed=1, rows=30):
    rng = np.random.default_rng(seed)
    y_true = (np.arange(rows) % 3 == 0).astype(int)  # imbalanced: a third are class 1
    class_1 = np.clip(y_true * 0.3 + rng.uniform(0, 0.7, rows), 0, 1)
    return y_true, (class_1 >= 0.5).astype(int), class_1


def _binary_expected(y_true, predictions, class_1, positive):
    """Every binary metric by calling scikit-learn directly."""
    positive_probability = class_1 if positive == 1 else 1 - class_1
    return {
        "accuracy": skm.accuracy_score(y_true, predictions),
        "precision": skm.precision_score(y_true, predictions, average="weighted", zero_division=0),
        "recall": skm.recall_score(y_true, predictions, average="weighted", zero_division=0),
        "f1": skm.f1_score(y_true, predictions, average="weighted", zero_division=0),
        "roc_auc": skm.roc_auc_score(y_true, class_1),
        "log_loss": skm.log_loss(y_true, class_1),
        "precision_positive": skm.precision_score(y_true, predictions, pos_label=positive, zero_division=0),
        "recall_positive": skm.recall_score(y_true, predictions, pos_label=positive, zero_division=0),
        "f1_positive": skm.f1_score(y_true, predictions, pos_label=positive, zero_division=0),
        "balanced_accuracy": skm.balanced_accuracy_score(y_true, predictions),
        "average_precision": skm.average_precision_score(y_true, positive_probability, pos_label=positive),
        "mcc": skm.matthews_corrcoef(y_true, predictions),
    }


def test_binary_equals_sklearn_for_either_probability_shape():
    y_true, predictions, class_1 = _binary_case()
    expected = _binary_expected(y_true, predictions, class_1, positive=1)
    values = compute(BINARY, y_true, predictions, class_1)
    assert list(values) == list(BINARY.spec.metrics)
    assert values == pytest.approx(expected)
    as_columns = np.column_stack([1 - class_1, class_1])
    assert compute(BINARY, y_true[:, np.newaxis], predictions, as_columns) == pytest.approx(expected)


@pytest.mark.parametrize("positive", [0, 1])
def test_binary_positive_class_metrics_equal_sklearn_pos_label(positive):
    y_true, predictions, class_1 = _binary_case(seed=3, rows=45)
    values = compute(BINARY, y_true, predictions, class_1, positive=positive)
    assert values == pytest.approx(_binary_expected(y_true, predictions, class_1, positive))
    # average precision is on the positive class's own probability: 1 - p for index 0
    flipped = skm.average_precision_score(1 - y_true, 1 - class_1)
    assert values["average_precision"] == pytest.approx(flipped if positive == 0 else
                                                        skm.average_precision_score(y_true, class_1))


def test_binary_positive_index_changes_only_the_positive_class_metrics():
    y_true, predictions, class_1 = _binary_case(seed=4, rows=36)
    one, zero = (compute(BINARY, y_true, predictions, class_1, positive=p) for p in (1, 0))
    same = {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "balanced_accuracy", "mcc"}
    assert {k: zero[k] for k in same} == pytest.approx({k: one[k] for k in same})
    assert zero["recall_positive"] != pytest.approx(one["recall_positive"])
    assert compute(BINARY, y_true, predictions, class_1) == pytest.approx(one)  # 1 is the default


def test_binary_by_hand():
    y_true, predictions = np.array([1, 1, 1, 0, 0, 0, 0, 0]), np.array([1, 0, 0, 0, 0, 0, 0, 1])
    values = compute(BINARY, y_true, predictions, np.array([0.9, 0.4, 0.3, 0.2, 0.1, 0.1, 0.2, 0.6]))
    assert values["precision_positive"] == pytest.approx(1 / 2)
    assert values["recall_positive"] == pytest.approx(1 / 3)
    assert values["f1_positive"] == pytest.approx(2 * (1 / 2 * 1 / 3) / (1 / 2 + 1 / 3))
    assert values["balanced_accuracy"] == pytest.approx((1 / 3 + 4 / 5) / 2)
    tp, tn, fp, fn = 1, 4, 1, 2
    assert values["mcc"] == pytest.approx((tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
    # ranked by probability: 1 (pos), 0.6 (neg), 0.4 (pos), 0.3 (pos): AP = (1 + 2/3 + 3/4) / 3
    assert values["average_precision"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)


def test_binary_average_precision_is_nan_without_a_positive_row_or_probabilities():
    y_true = np.zeros(5, dtype=int)
    values = compute(BINARY, y_true, y_true, np.full(5, 0.2))
    assert math.isnan(values["average_precision"]) and math.isnan(values["roc_auc"])
    assert values["accuracy"] == 1.0 and values["mcc"] == skm.matthews_corrcoef(y_true, y_true)
    assert not math.isnan(compute(BINARY, y_true, y_true, np.full(5, 0.2), positive=0)["average_precision"])
    assert math.isnan(compute(BINARY, np.array([0, 1]), np.array([0, 1]))["average_precision"])


def test_a_positive_index_other_than_0_or_1_is_refused():
    y_true, predictions, class_1 = _binary_case()
    with pytest.raises(ValueError, match=r"positive: expected the positive class's index, 0 or 1; received 2"):
        compute(BINARY, y_true, predictions, class_1, positive=2)


def _regression_expected(y_true, predictions):
    return {
        "r2": skm.r2_score(y_true, predictions),
        "mse": skm.mean_squared_error(y_true, predictions),
        "mae": skm.mean_absolute_error(y_true, predictions),
        "explained_variance": skm.explained_variance_score(y_true, predictions),
        "rmse": math.sqrt(skm.mean_squared_error(y_true, predictions)),
    }


def test_regression_equals_sklearn_for_column_or_flat_labels():
    rng = np.random.default_rng(2)
    y_true = rng.normal(size=50)
    predictions = y_true + rng.normal(scale=0.3, size=50)
    expected = _regression_expected(y_true, predictions)
    if hasattr(skm, "root_mean_squared_error"):  # scikit-learn >= 1.4
        assert expected["rmse"] == pytest.approx(skm.root_mean_squared_error(y_true, predictions))
    assert compute(REGRESSION, y_true, predictions) == pytest.approx(expected)
    assert compute("regression", y_true[:, np.newaxis], predictions[:, np.newaxis]) == pytest.approx(expected)


def test_regression_metrics_are_in_the_labels_original_units():
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(5)
    original = rng.normal(loc=150, scale=60, size=(40, 1))  # e.g. disease progression
    scaler = StandardScaler().fit(original[:30])  # fit on the scope's training rows only
    encoded_truth = scaler.transform(original)
    encoded_predictions = encoded_truth[:, 0] + rng.normal(scale=0.2, size=40)
    spec = REGRESSION.spec
    y_true = spec.in_original_units(spec.truth(encoded_truth), scaler)
    predictions = spec.in_original_units(spec.prediction_values(encoded_predictions, 40), scaler)
    np.testing.assert_allclose(y_true, original[:, 0])
    np.testing.assert_allclose(predictions, scaler.inverse_transform(encoded_predictions[:, np.newaxis])[:, 0])
    values = compute(REGRESSION, y_true, predictions)
    assert values == pytest.approx(_regression_expected(original[:, 0], predictions))
    # an error of 0.2 standard deviations is about 0.2 * 60 in the label's units
    assert values["mae"] == pytest.approx(skm.mean_absolute_error(encoded_truth[:, 0], encoded_predictions)
                                          * scaler.scale_[0])
    assert 5 < values["rmse"] < 20 and spec.in_original_units(predictions, None) is not None


def test_original_units_need_an_invertible_label_encoder():
    class Opaque:
        def transform(self, values):
            return values

    with pytest.raises(ValueError, match=r"label_encoder: expected a transformer with inverse_transform"):
        REGRESSION.spec.in_original_units(np.ones(3), Opaque())
    codes = np.array([0, 2, 1])  # classification: class indices as they are, whatever the encoder
    assert MULTI.spec.in_original_units(codes, Opaque()) is codes


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
    common = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")  # today's, first and unchanged
    assert MULTI.spec.metrics == common + ("f1_macro", "balanced_accuracy")
    assert BINARY.spec.metrics == common + ("precision_positive", "recall_positive", "f1_positive",
                                            "balanced_accuracy", "average_precision", "mcc")
    assert REGRESSION.spec.metrics == ("r2", "mse", "mae", "explained_variance", "rmse")
    assert [a.spec.default_metric for a in AnalysisType] == ["accuracy", "accuracy", "r2"]
    assert metrics.LOWER_IS_BETTER == {"log_loss", "mse", "mae", "rmse", "loss", "val_loss"}
    assert [m for a in AnalysisType for m in a.spec.metrics if a.spec.lower_is_better(m)] == [
        "log_loss", "log_loss", "mse", "mae", "rmse"]
    assert [d.name for d in metrics.REGRESSION if d.lower_is_better] == ["mse", "mae", "rmse"]  # in the definitions
    assert REGRESSION.spec.metric_set.direction("rmse") == "minimize"
    assert BINARY.spec.metric_set.direction("mcc") == "maximize"
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


@pytest.mark.parametrize("returned, expected", [
    (0.5, 0.5), (3, 3.0), (np.float32(0.25), 0.25), (np.int64(2), 2.0), (np.array(0.75), 0.75),
    (float("nan"), "nan"),  # undefined on this split, as a built-in metric would be
    (None, None), (True, None), ("0.5", None), (np.array([0.1, 0.2]), None), (float("inf"), None), (1j, None),
])
def test_what_a_custom_metric_may_return(returned, expected):
    value = metrics.metric_value(returned)
    assert (math.isnan(value) if expected == "nan" else value == expected)


def test_non_finite_rows_are_counted():
    assert metrics.non_finite_count(np.array([1.0, np.nan, np.inf, 2.0])) == 2
    assert metrics.non_finite_count(np.array([[0.2, 0.8], [np.nan, np.nan], [0.5, np.nan]])) == 2
    assert metrics.non_finite_count(np.array([0, 1, 2])) == 0  # class indices
    assert metrics.non_finite_count(np.array(["a", "b"], dtype=object)) == 0


def test_what_a_custom_metric_receives_as_probabilities():
    class_1 = np.array([0.2, 0.9])
    np.testing.assert_array_equal(BINARY.spec.metric_probabilities(np.column_stack([1 - class_1, class_1])), class_1)
    np.testing.assert_array_equal(BINARY.spec.metric_probabilities(class_1[:, np.newaxis]), class_1)
    _, _, probabilities = multiclass(rows=4)
    assert MULTI.spec.metric_probabilities(probabilities).shape == (4, 3)
    assert REGRESSION.spec.metric_probabilities(None) is None and BINARY.spec.metric_probabilities(None) is None
