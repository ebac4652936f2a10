"""Analysis types: what a model predicts, and everything that follows from it.

This module is the one place that knows what differs between analysis types. Each type is
one :class:`Analysis` in :data:`REGISTRY`: its metrics (names and directions), the metric
that ranks jobs by default, what it requires of the label, how model outputs become
predictions and probabilities, how labels and predictions become classes or values (and in
which units they are measured and stored: class indices, or regression values in the
label's original units), what a custom metric receives, how predictions are decoded for
people, and which job charts apply. Backends keep one table
from analysis type to their default loss, optimizer and labels (see
:class:`aiqc.backends.Backend`). Adding an analysis type is one class here, one entry in
:data:`REGISTRY`, and one row in each backend's table.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from aiqc import metrics
from aiqc.exceptions import ValidationError

__all__ = ["AnalysisType", "Analysis", "JobChart", "Prediction", "REGISTRY"]


class AnalysisType(str, enum.Enum):
    """The ``analysis_type`` of an experiment; compares equal to its string value."""

    CLASSIFICATION_MULTI = "classification_multi"
    CLASSIFICATION_BINARY = "classification_binary"
    REGRESSION = "regression"

    def __str__(self) -> str:
        return self.value

    @property
    def spec(self) -> Analysis:
        """Everything that depends on this analysis type (its :data:`REGISTRY` entry)."""
        return REGISTRY[self]

    @property
    def is_classification(self) -> bool:
        """Whether the label is a class (rather than a value)."""
        return REGISTRY[self].is_classification

    @classmethod
    def parse(cls, value: object, parameter: str = "analysis_type") -> AnalysisType:
        """``value`` as an AnalysisType; a :class:`ValidationError` naming ``parameter`` otherwise."""
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(repr(a.value) for a in cls)
            raise ValidationError.expected(parameter, f"one of {names}", value) from None


class JobChart(str, enum.Enum):
    """The charts of one job that depend on its analysis type."""

    CONFUSION_MATRIX = "confusion_matrix"
    ROC_CURVE = "roc_curve"
    PRECISION_RECALL = "precision_recall"
    PREDICTED_VS_ACTUAL = "predicted_vs_actual"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Prediction:
    """What a default ``fn_predict`` returns for one split."""

    predictions: np.ndarray  # (n,) class index per row; regression: (n,) or (n, outputs) values
    probabilities: np.ndarray | None  # multiclass (n, k); binary (n,) class index 1; regression None


class Analysis(abc.ABC):
    """What one analysis type means for labels, outputs, metrics and charts."""

    type: ClassVar[AnalysisType]
    is_classification: ClassVar[bool]
    metric_defs: ClassVar[tuple[metrics.MetricDef, ...]]
    default_metric: ClassVar[str]  # ranks jobs when no metric is named
    charts: ClassVar[tuple[JobChart, ...]]
    has_positive_class: ClassVar[bool] = False  # whether one class is "the positive one" (binary)
    #: whether truth and predictions are measured and stored in the label's original units
    #: (regression: the label encoder inverted), rather than as class indices
    original_units: ClassVar[bool] = False

    # --- metrics -------------------------------------------------------------------------
    @property
    def metric_set(self) -> metrics.MetricSet:
        """This type's metrics, their directions, and :attr:`default_metric`."""
        return metrics.MetricSet(self.metric_defs, self.default_metric, self.type.value)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric names, in the order :meth:`compute_metrics` returns them."""
        return tuple(m.name for m in self.metric_defs)

    def lower_is_better(self, metric: str) -> bool:
        """Whether a smaller ``metric`` is better (losses and errors)."""
        return self.metric_set.lower_is_better(metric)

    def check_metric(self, metric: str | None, parameter: str = "metric") -> str:
        """``metric`` if it is one of this type's, :attr:`default_metric` if None; a
        :class:`ValidationError` naming ``parameter`` otherwise."""
        return self.metric_set.check(metric, parameter)

    @abc.abstractmethod
    def compute_metrics(self, y_true: np.ndarray, predictions: np.ndarray, probabilities: np.ndarray | None = None,
                        labels: list[int] | None = None, positive: int | None = None) -> dict[str, float]:
        """Every metric of this type for one split, as ``{name: value}`` in :attr:`metrics` order.

        Classification: ``y_true`` and ``predictions`` are class indices (one-hot rows are
        turned into indices); ``labels`` is the full list of class indices (default: every
        column of ``probabilities``); ``positive`` (binary) the index of the positive class
        (default 1). Regression: values in the label's original units (see
        :meth:`in_original_units`).
        """

    def in_original_units(self, values: np.ndarray, label_encoder: Any) -> np.ndarray:
        """Truth or predictions (as :meth:`truth` / :meth:`prediction_values` return them) ->
        what is measured and stored: class indices as they are; regression values in the
        label's original units (``label_encoder``, the scope's fitted one or None, inverted)."""
        return values

    def metric_probabilities(self, probabilities: np.ndarray | None) -> np.ndarray | None:
        """Stored probabilities -> the ``y_prob`` a custom metric ``fn(y_true, y_pred, y_prob)``
        receives: binary (n,) the probability of class index 1; multiclass (n, k); regression None."""
        return None

    # --- labels and outputs ------------------------------------------------------------------
    @abc.abstractmethod
    def check_label(self, label: Any) -> None:
        """Raise a :class:`ValidationError` if a label (``column``, ``dtype``, ``categorical``,
        ``unique_count``, ``classes``) cannot be predicted with this type."""

    @abc.abstractmethod
    def check_output_width(self, width: int, label_columns: int, class_count: int | None) -> None:
        """Raise a :class:`ValidationError` (saying what to change in ``fn_build``) if a model
        with ``width`` outputs per row cannot be read as this type's predictions, for encoded
        labels of ``label_columns`` columns and a label of ``class_count`` distinct values."""

    @abc.abstractmethod
    def to_prediction(self, outputs: np.ndarray) -> Prediction:
        """Raw model outputs -> predictions (and probabilities)."""

    @abc.abstractmethod
    def truth(self, encoded_labels: np.ndarray) -> np.ndarray:
        """Encoded labels -> what predictions are compared with (classes or values)."""

    @abc.abstractmethod
    def prediction_values(self, predictions: np.ndarray, rows: int) -> np.ndarray:
        """Predictions returned by ``fn_predict`` -> the form stored and measured."""

    def metric_labels(self, class_count: int) -> list[int] | None:
        """The class indices metrics are computed over, for a label with ``class_count`` values."""
        return None

    def class_scores(self, probabilities: np.ndarray, positive: int | None = None) -> list[tuple[int, np.ndarray]]:
        """(class index, that class's probability per row) for each class with a curve
        (binary: the ``positive`` class's only, default index 1)."""
        raise ValidationError(f"probabilities: {self.type.value} jobs have no class probabilities.")

    @abc.abstractmethod
    def decode(self, predictions: np.ndarray, probabilities: np.ndarray | None, label_encoder: Any,
               class_names: list) -> dict[str, Any]:
        """Predictions for people: ``{"prediction": ..., "probability_<class>": ...}`` columns
        in the label's original values (class names, or values the label encoder inverted)."""


class _Classification(Analysis):
    is_classification = True
    default_metric = "accuracy"
    charts = (JobChart.CONFUSION_MATRIX, JobChart.ROC_CURVE, JobChart.PRECISION_RECALL)

    def check_label(self, label: Any) -> None:
        if not label.categorical:
            raise ValidationError(
                f"analysis_type: expected {AnalysisType.REGRESSION.value!r} for the continuous label "
                f"{label.column!r} (dtype {label.dtype}); received {self.type.value!r}."
            )

    def truth(self, encoded_labels: np.ndarray) -> np.ndarray:
        return metrics.class_indices(encoded_labels)

    def prediction_values(self, predictions: np.ndarray, rows: int) -> np.ndarray:
        predictions = np.asarray(predictions)
        if predictions.ndim == 1 or predictions.shape[1:] == (1,):
            return predictions.reshape(-1).astype(np.int64)
        return metrics.class_indices(predictions)

    def metric_labels(self, class_count: int) -> list[int]:
        return list(range(class_count))

    def compute_metrics(self, y_true: np.ndarray, predictions: np.ndarray, probabilities: np.ndarray | None = None,
                        labels: list[int] | None = None, positive: int | None = None) -> dict[str, float]:
        y_true, predictions = metrics.class_indices(y_true), metrics.class_indices(predictions)
        distribution = None if probabilities is None else self.distribution(probabilities)
        if labels is None:
            labels = (list(range(distribution.shape[1])) if distribution is not None
                      else sorted(set(np.unique(y_true)) | set(np.unique(predictions))))
        out = metrics.classification(y_true, predictions, list(labels), distribution,
                                     None if probabilities is None else self.auc_scores(probabilities))
        out.update(self.more_metrics(y_true, predictions, probabilities, positive))
        return out

    @abc.abstractmethod
    def more_metrics(self, y_true: np.ndarray, predictions: np.ndarray, probabilities: np.ndarray | None,
                     positive: int | None) -> dict[str, float]:
        """This type's metrics beyond the ones every classification type records (class indices in)."""

    def metric_probabilities(self, probabilities: np.ndarray | None) -> np.ndarray | None:
        return None if probabilities is None else self.probability_matrix(probabilities)

    @abc.abstractmethod
    def probability_matrix(self, probabilities: np.ndarray) -> np.ndarray:
        """Stored probabilities -> an (n, classes) matrix, one column per class."""

    def distribution(self, probabilities: np.ndarray) -> np.ndarray:
        """Stored probabilities -> an (n, classes) matrix whose rows sum to 1."""
        return self.probability_matrix(probabilities)

    def auc_scores(self, probabilities: np.ndarray) -> np.ndarray:
        """What ROC AUC is computed on."""
        return self.distribution(probabilities)

    def decode(self, predictions: np.ndarray, probabilities: np.ndarray | None, label_encoder: Any,
               class_names: list) -> dict[str, Any]:
        indices = np.asarray(predictions).reshape(-1).astype(np.int64)
        columns: dict[str, Any] = {"prediction": np.asarray(class_names, dtype=object)[indices]}
        if probabilities is not None:
            matrix = self.probability_matrix(probabilities)
            for position, name in enumerate(class_names):
                columns[f"probability_{name}"] = matrix[:, position]
        return columns


class MulticlassClassification(_Classification):
    """One of k >= 2 classes; probabilities are (n, k)."""

    type = AnalysisType.CLASSIFICATION_MULTI
    metric_defs = metrics.MULTICLASS

    def more_metrics(self, y_true: np.ndarray, predictions: np.ndarray, probabilities: np.ndarray | None,
                     positive: int | None) -> dict[str, float]:
        return metrics.multiclass(y_true, predictions)

    def check_output_width(self, width: int, label_columns: int, class_count: int | None) -> None:
        """One output per class: the one-hot label's columns, or the class count when the label
        is one column of class indices."""
        expected = label_columns if label_columns > 1 else class_count
        if expected is None or width == expected:
            return
        how = ("label_shape[0], one per one-hot column" if expected == label_columns else
               "one per class: the label is one column of class indices, so label_shape[0] is 1")
        raise ValidationError(
            f"fn_build: expected a model with {expected} outputs per row for {self.type.value!r} with "
            f"{class_count} classes; received one with {width}. Make its last layer {expected} wide ({how})."
        )

    def to_prediction(self, outputs: np.ndarray) -> Prediction:
        outputs = _two_dimensional(outputs)
        if outputs.ndim != 2 or outputs.shape[1] < 2:
            raise ValueError(f"model output: expected shape (n, classes) with classes >= 2 for "
                             f"{self.type.value!r}; received shape {outputs.shape}.")
        probabilities = _as_distribution(outputs)
        return Prediction(probabilities.argmax(axis=1).astype(np.int64), probabilities)

    def probability_matrix(self, probabilities: np.ndarray) -> np.ndarray:
        return np.asarray(probabilities, dtype=np.float64)

    def distribution(self, probabilities: np.ndarray) -> np.ndarray:
        return metrics.normalised(self.probability_matrix(probabilities))

    def class_scores(self, probabilities: np.ndarray, positive: int | None = None) -> list[tuple[int, np.ndarray]]:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        return [(k, probabilities[:, k]) for k in range(probabilities.shape[1])]


class BinaryClassification(_Classification):
    """One of exactly 2 classes; the probability stored is the second class's (index 1, the
    positive class by default; ``positive`` = 0 makes the first class the positive one for
    the ``*_positive`` metrics and ``average_precision``)."""

    type = AnalysisType.CLASSIFICATION_BINARY
    metric_defs = metrics.BINARY
    has_positive_class = True

    def more_metrics(self, y_true: np.ndarray, predictions: np.ndarray, probabilities: np.ndarray | None,
                     positive: int | None) -> dict[str, float]:
        return metrics.binary(y_true, predictions, _positive(positive),
                              None if probabilities is None else self.positive_scores(probabilities))

    def metric_probabilities(self, probabilities: np.ndarray | None) -> np.ndarray | None:
        return None if probabilities is None else self.positive_scores(probabilities)

    def check_label(self, label: Any) -> None:
        super().check_label(label)
        if label.unique_count != 2:
            raise ValidationError(
                f"analysis_type: expected {AnalysisType.CLASSIFICATION_MULTI.value!r} for the label "
                f"{label.column!r} with {label.unique_count} classes; received {self.type.value!r}, "
                "which needs exactly 2."
            )

    def check_output_width(self, width: int, label_columns: int, class_count: int | None) -> None:
        """One output (the probability of class index 1, or its logit) or two (one per class)."""
        if width not in (1, 2):
            raise ValidationError(
                f"fn_build: expected a model with 1 output per row (the probability of class index 1: end in a "
                f"sigmoid) or 2 (one per class) for {self.type.value!r}; received one with {width}. Make its "
                "last layer 1 wide with a sigmoid activation."
            )

    def to_prediction(self, outputs: np.ndarray) -> Prediction:
        """One output (a probability, or a logit passed through a sigmoid) or two (one per class)."""
        outputs = _two_dimensional(outputs)
        width = outputs.shape[1] if outputs.ndim == 2 else None
        if width == 1:
            scores = outputs[:, 0]
            if scores.size and (scores.min() < 0 or scores.max() > 1):
                scores = _sigmoid(scores)
        elif width == 2:
            scores = _as_distribution(outputs)[:, 1]
        else:
            raise ValueError(f"model output: expected shape (n, 1) or (n, 2) for {self.type.value!r}; "
                             f"received shape {outputs.shape}.")
        return Prediction((scores >= 0.5).astype(np.int64), scores)

    def positive_scores(self, probabilities: np.ndarray) -> np.ndarray:
        """The probability of class index 1 per row (the stored one; the positive class's
        unless ``positive`` = 0), from (n,), (n, 1) or (n, 2)."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.ndim == 2 and probabilities.shape[1] == 2:
            return probabilities[:, 1]
        return probabilities.reshape(-1)

    def probability_matrix(self, probabilities: np.ndarray) -> np.ndarray:
        scores = self.positive_scores(probabilities)
        return np.column_stack([1 - scores, scores])

    def auc_scores(self, probabilities: np.ndarray) -> np.ndarray:
        return self.positive_scores(probabilities)

    def metric_labels(self, class_count: int) -> list[int]:
        return [0, 1]

    def compute_metrics(self, y_true: np.ndarray, predictions: np.ndarray, probabilities: np.ndarray | None = None,
                        labels: list[int] | None = None, positive: int | None = None) -> dict[str, float]:
        return super().compute_metrics(y_true, predictions, probabilities, [0, 1] if labels is None else labels,
                                       positive)

    def class_scores(self, probabilities: np.ndarray, positive: int | None = None) -> list[tuple[int, np.ndarray]]:
        positive = _positive(positive)
        scores = self.positive_scores(probabilities)
        return [(positive, scores if positive == 1 else 1 - scores)]


class Regression(Analysis):
    """One or more continuous values; no probabilities."""

    type = AnalysisType.REGRESSION
    is_classification = False
    original_units = True
    metric_defs = metrics.REGRESSION
    default_metric = "r2"
    charts = (JobChart.PREDICTED_VS_ACTUAL,)

    def check_label(self, label: Any) -> None:
        import pandas as pd

        numeric = pd.api.types.is_numeric_dtype(label.dtype) and not pd.api.types.is_bool_dtype(label.dtype)
        if not numeric:
            raise ValidationError(
                f"analysis_type: expected a classification type for the {label.dtype} label {label.column!r} "
                f"(classes {(label.classes or [])[:5]!r}); received {self.type.value!r}."
            )

    def check_output_width(self, width: int, label_columns: int, class_count: int | None) -> None:
        """One output per label column."""
        if width != label_columns:
            raise ValidationError(
                f"fn_build: expected a model with {label_columns} output{'s' if label_columns != 1 else ''} per "
                f"row for {self.type.value!r} (one per label column); received one with {width}. Make its last "
                f"layer {label_columns} wide (label_shape[0])."
            )

    def to_prediction(self, outputs: np.ndarray) -> Prediction:
        outputs = np.asarray(outputs, dtype=np.float64)
        if outputs.ndim == 2 and outputs.shape[1] == 1:
            outputs = outputs[:, 0]
        return Prediction(outputs, None)

    def truth(self, encoded_labels: np.ndarray) -> np.ndarray:
        values = np.asarray(encoded_labels).reshape(len(encoded_labels), -1)
        return values.ravel() if values.shape[1] == 1 else values

    def prediction_values(self, predictions: np.ndarray, rows: int) -> np.ndarray:
        values = np.asarray(predictions).reshape(rows, -1)
        return values.ravel() if values.shape[1] == 1 else values

    def compute_metrics(self, y_true: np.ndarray, predictions: np.ndarray, probabilities: np.ndarray | None = None,
                        labels: list[int] | None = None, positive: int | None = None) -> dict[str, float]:
        return metrics.regression(y_true, predictions)

    def in_original_units(self, values: np.ndarray, label_encoder: Any) -> np.ndarray:
        values = _inverted(values, label_encoder)
        return values.ravel() if values.shape[1] == 1 else values

    def decode(self, predictions: np.ndarray, probabilities: np.ndarray | None, label_encoder: Any,
               class_names: list) -> dict[str, Any]:
        values = _inverted(predictions, label_encoder)
        return {"prediction": values.ravel() if values.shape[1] == 1 else list(values)}


#: analysis type -> what it means; the only table keyed by analysis type outside the backends
REGISTRY: dict[AnalysisType, Analysis] = {
    AnalysisType.CLASSIFICATION_MULTI: MulticlassClassification(),
    AnalysisType.CLASSIFICATION_BINARY: BinaryClassification(),
    AnalysisType.REGRESSION: Regression(),
}


def _positive(positive: int | None) -> int:
    """The positive class's index (1 when None); a ValidationError unless 0 or 1."""
    if positive is None:
        return 1
    if isinstance(positive, bool) or positive not in (0, 1):
        raise ValidationError.expected("positive", "the positive class's index, 0 or 1", positive)
    return int(positive)


def _inverted(values: np.ndarray, label_encoder: Any) -> np.ndarray:
    """Encoded label values as an (n, outputs) float array in the label's original units:
    ``label_encoder`` (a scope's fitted encoder, or None for a label stored as is) inverted."""
    values = np.asarray(values, dtype=np.float64)
    values = values.reshape(len(values), -1)
    if label_encoder is None:
        return values
    inverse = getattr(label_encoder, "inverse_transform", None)
    if inverse is None:
        raise ValidationError.expected(
            "label_encoder", "a transformer with inverse_transform, so that values can be put back in the "
                             "label's original units", label_encoder)
    original = np.asarray(inverse(values), dtype=np.float64)
    return original.reshape(len(values), -1)


def _two_dimensional(outputs: np.ndarray) -> np.ndarray:
    outputs = np.asarray(outputs, dtype=np.float64)
    return outputs[:, np.newaxis] if outputs.ndim == 1 else outputs


def _as_distribution(outputs: np.ndarray) -> np.ndarray:
    """Rows as given when they are probability distributions (within 1e-3), else their softmax."""
    if not outputs.size or (outputs.min() >= 0 and np.allclose(outputs.sum(axis=1), 1, rtol=0, atol=1e-3)):
        return outputs
    shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow for large negative inputs."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))
