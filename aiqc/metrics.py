"""Metrics, computed with scikit-learn on stored predictions.

This module knows metrics, not analysis types: :mod:`aiqc.analysis` says which set applies
to which type and hands these functions class indices and probability matrices.

Classification: ``accuracy``; ``precision``, ``recall`` and ``f1`` weighted by support
(``zero_division=0``); ``roc_auc`` (binary: on the positive class's probability; multiclass:
one-vs-rest, macro-averaged); ``log_loss`` over the full class list. Regression: ``r2``,
``mse``, ``mae``, ``explained_variance``. A metric that is undefined for a split (ROC AUC
when a class is absent from it, anything on non-finite model outputs) is NaN, not an error.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np

NAN = float("nan")


@dataclass(frozen=True)
class MetricDef:
    """A metric's name and its direction."""

    name: str
    lower_is_better: bool = False


CLASSIFICATION: tuple[MetricDef, ...] = (
    MetricDef("accuracy"), MetricDef("precision"), MetricDef("recall"), MetricDef("f1"), MetricDef("roc_auc"),
    MetricDef("log_loss", lower_is_better=True),
)
REGRESSION: tuple[MetricDef, ...] = (
    MetricDef("r2"), MetricDef("mse", lower_is_better=True), MetricDef("mae", lower_is_better=True),
    MetricDef("explained_variance"),
)
#: per-epoch history names (as Keras and ``aiqc.torch_fit`` record them) where smaller is better
HISTORY_LOWER_IS_BETTER = frozenset({"loss", "val_loss"})
#: every metric (and history entry) where a smaller value is better
LOWER_IS_BETTER = frozenset({m.name for m in CLASSIFICATION + REGRESSION if m.lower_is_better}
                            | HISTORY_LOWER_IS_BETTER)


def lower_is_better(name: str) -> bool:
    """Whether a smaller value of metric or history entry ``name`` is better (losses, errors)."""
    return name in LOWER_IS_BETTER or name.endswith("loss")


@contextlib.contextmanager
def _quiet_sklearn() -> Iterator[None]:
    """Inputs come from aiqc itself: skipping scikit-learn's argument validation halves the
    cost of a job's bookkeeping without changing any value; warnings (r2 of one row) are
    answered by NaN."""
    import sklearn

    with sklearn.config_context(skip_parameter_validation=True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def class_indices(values: np.ndarray) -> np.ndarray:
    """Encoded labels or predictions -> class index per row (one-hot rows: their argmax)."""
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] > 1:
        return values.argmax(axis=1)
    return values.reshape(-1).round().astype(np.int64)


def regression(y_true: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """The regression metrics of one split; NaN for all of them on non-finite predictions."""
    from sklearn import metrics as m

    y_true, predictions = (np.asarray(a, dtype=np.float64) for a in (y_true, predictions))
    if y_true.ndim == 2 and y_true.shape[1] == 1:
        y_true = y_true[:, 0]
    predictions = predictions.reshape(y_true.shape)
    if not np.isfinite(predictions).all():
        return dict.fromkeys((d.name for d in REGRESSION), NAN)
    with _quiet_sklearn():
        return {
            "r2": float(m.r2_score(y_true, predictions)),
            "mse": float(m.mean_squared_error(y_true, predictions)),
            "mae": float(m.mean_absolute_error(y_true, predictions)),
            "explained_variance": float(m.explained_variance_score(y_true, predictions)),
        }


def classification(y_true: np.ndarray, predictions: np.ndarray, labels: list[int],
                   distribution: np.ndarray | None = None, auc_scores: np.ndarray | None = None) -> dict[str, float]:
    """The classification metrics of one split.

    ``y_true`` and ``predictions`` are class indices; ``labels`` the full list of class
    indices (so a split lacking a class still gets a log loss); ``distribution`` the (n, k)
    class probabilities and ``auc_scores`` what ROC AUC is computed on (the positive
    class's probability for two classes, else the distribution). Without probabilities,
    or with non-finite ones, roc_auc and log_loss are NaN.
    """
    from sklearn import metrics as m

    with _quiet_sklearn():
        precision, recall, f1, _ = m.precision_recall_fscore_support(
            y_true, predictions, labels=labels, average="weighted", zero_division=0)
        out = {"accuracy": float(m.accuracy_score(y_true, predictions)), "precision": float(precision),
               "recall": float(recall), "f1": float(f1), "roc_auc": NAN, "log_loss": NAN}
        if distribution is None or not np.isfinite(distribution).all():
            return out
        if set(np.unique(y_true)) >= set(labels):  # ROC AUC needs every class in the split
            scores = distribution if auc_scores is None else auc_scores
            out["roc_auc"] = float(m.roc_auc_score(y_true, scores) if scores.ndim == 1 else
                                   m.roc_auc_score(y_true, scores, multi_class="ovr", average="macro", labels=labels))
        out["log_loss"] = float(m.log_loss(y_true, distribution, labels=labels))
    return out


def normalised(probabilities: np.ndarray) -> np.ndarray:
    """Rows summing to 1 exactly (float32 softmax output drifts by ~1e-7)."""
    clipped = np.clip(probabilities, 1e-15, None)
    return clipped / clipped.sum(axis=1, keepdims=True)
