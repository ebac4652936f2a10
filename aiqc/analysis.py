"""Analysis types: what a model predicts, and everything that follows from it.

This module is the one place that knows what differs between analysis types. Each type is
one :class:`Analysis` in :data:`REGISTRY`: its metrics (names and directions), the metric
that ranks jobs by default, what it requires of the label, how model outputs become
predictions and probabilities, how labels and predictions become classes or values, how
predictions are decoded for people, and which job charts apply. Backends keep one table
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
    probabilities: np.ndarray | None  # multiclass (n, k); binary (n,) positive class; regression None


class Analysis(abc.ABC):
    """What one analysis type means for labels, outputs, metrics and charts."""

    type: ClassVar[AnalysisType]
    is_classification: ClassVar[bool]
    metric_defs: ClassVar[tuple[metrics.MetricDef, ...]]
    default_metric: ClassVar[str]  # ranks jobs when no metric is named
    charts: ClassVar[tuple[JobChart, ...]]

    # --- metrics -------------------------------------------------------------------------
    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric names, in the order :meth:`compute_metrics` returns them."""
        return tuple(m.name for m in self.metric_defs)

    def lower_is_better(self, metric: str) -> bool:
        """Whether a smaller ``metric`` is better (losses and errors)."""
        return any(m.lower_is_better for m in self.metric_defs if m.name == metric)

    def check_metric(self, metric: str | None, parameter: str = "metric") -> str:
        """``metric`` if it is one of this type's, :attr:`default_metric` if None; a
        :class:`ValidationError` naming ``parameter`` otherwise."""
        if metric is None:
            return self.default_metric
        if metric not in self.metrics:
            raise ValidationError.expected(parameter, f"one of {list(self.metrics)!r} for {self.type.value}", metric)
        return metric

    @abc.abstractmethod
    def compute_metrics(self, y_true: np.ndarray, predictions: np.ndarray, probabilities: np.ndarray | None = None,
                        labels: list[int] | None = None) -> dict[str, float]:
        """Every metric of this type for one split, as ``{name: value}`` in :attr:`metrics` order.

        Classification: ``y_true`` and ``predictions`` are class indices (one-hot rows are
        turned into indices); ``labels`` is the full list of class indices (default: every
        column of ``probabilities``).
        """

    # --- labels and outputs ------------------------------------------------------------------
    @abc.abstractmethod
    def check_label(self, label: Any) -> None:
        """Raise a :class:`ValidationError` if a label (``column``, ``dtype``, ``categorical``,
        ``unique_count``, ``classes``) cannot be predicted with this type."""

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

    def class_scores(self, probabilities: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """(class index, that class's probability per row) for each class with a curve."""
        raise ValidationError(f"probabilities: {self.type.value} jobs have no class probabilities.")

    @abc.abstractmethod
    def decode(self, predictions: np.ndarray, probabilities: np.ndarray | None, label_encoder: Any,
               class_names: list) -> dict[str, Any]:
        """Predictions for people: ``{"prediction": ..., "probability_<class>": ...}`` columns
        in the label's original values (class names, or values the label encoder inverted)."""


class _Classification(Analysis):
    is_classification = True
    metric_defs = metrics.CLASSIFICATION
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
                        labels: list[int] | None = None) -> dict[str, float]:
        y_true, predictions = metrics.class_indices(y_true), metrics.class_indices(predictions)
        distribution = None if probabilities is None else self.distribution(probabilities)
        if labels is None:
            labels = (list(range(distribution.shape[1])) if distribution is not None
                      else sorted(set(np.unique(y_true)) | set(np.unique(predictions))))
        return metrics.classification(y_true, predictions, list(labels), distribution,
                                      None if probabilities is None else self.auc_scores(probabilities))

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

    def class_scores(self, probabilities: np.ndarray) -> list[tuple[int, np.ndarray]]:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        return [(k, probabilities[:, k]) for k in range(probabilities.shape[1])]


class BinaryClassification(_Classification):
    """One of exactly 2 classes; the probability stored is the positive (second) class's."""

    type = AnalysisType.CLASSIFICATION_BINARY

    def check_label(self, label: Any) -> None:
        super().check_label(label)
        if label.unique_count != 2:
            raise ValidationError(
                f"analysis_type: expected {AnalysisType.CLASSIFICATION_MULTI.value!r} for the label "
                f"{label.column!r} with {label.unique_count} classes; received {self.type.value!r}, "
                "which needs exactly 2."
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
        """The positive class's probability per row, from (n,), (n, 1) or (n, 2)."""
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
                        labels: list[int] | None = None) -> dict[str, float]:
        return super().compute_metrics(y_true, predictions, probabilities, [0, 1] if labels is None else labels)

    def class_scores(self, probabilities: np.ndarray) -> list[tuple[int, np.ndarray]]:
        return [(1, self.positive_scores(probabilities))]


class Regression(Analysis):
    """One or more continuous values; no probabilities."""

    type = AnalysisType.REGRESSION
    is_classification = False
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
                        labels: list[int] | None = None) -> dict[str, float]:
        return metrics.regression(y_true, predictions)

    def decode(self, predictions: np.ndarray, probabilities: np.ndarray | None, label_encoder: Any,
               class_names: list) -> dict[str, Any]:
        values = np.asarray(predictions, dtype=np.float64).reshape(len(predictions), -1)
        if label_encoder is not None and hasattr(label_encoder, "inverse_transform"):
            values = label_encoder.inverse_transform(values)
        return {"prediction": values.ravel() if values.shape[1] == 1 else list(values)}


#: analysis type -> what it means; the only table keyed by analysis type outside the backends
REGISTRY: dict[AnalysisType, Analysis] = {
    AnalysisType.CLASSIFICATION_MULTI: MulticlassClassification(),
    AnalysisType.CLASSIFICATION_BINARY: BinaryClassification(),
    AnalysisType.REGRESSION: Regression(),
}


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
