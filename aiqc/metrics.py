"""Metrics per analysis type, computed with scikit-learn on stored predictions.

Classification: ``accuracy``; ``precision``, ``recall`` and ``f1`` weighted by support
(``zero_division=0``); ``roc_auc`` (binary: on the positive class's probability; multiclass:
one-vs-rest, macro-averaged); ``log_loss`` over the full class list. Regression: ``r2``,
``mse``, ``mae``, ``explained_variance``. A metric that is undefined for a split (ROC AUC
when a class is absent from it, anything on non-finite model outputs) is NaN, not an error.
"""

from __future__ import annotations

import warnings

import numpy as np

from aiqc.analysis import AnalysisType

CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION = ("r2", "mse", "mae", "explained_variance")
#: metrics (and history entries) where a smaller value is better
LOWER_IS_BETTER = frozenset({"log_loss", "mse", "mae", "loss", "val_loss"})

NAN = float("nan")


def names(analysis: AnalysisType | str) -> tuple[str, ...]:
    """The metrics :func:`compute` returns for ``analysis``, in order."""
    return CLASSIFICATION if AnalysisType.parse(analysis).is_classification else REGRESSION


def default_metric(analysis: AnalysisType | str) -> str:
    """The metric used to rank jobs when none is named: accuracy, or r2 for regression."""
    return "accuracy" if AnalysisType.parse(analysis).is_classification else "r2"


def compute(analysis: AnalysisType | str, y_true: np.ndarray, predictions: np.ndarray,
            probabilities: np.ndarray | None = None, labels: list[int] | None = None) -> dict[str, float]:
    """Every metric of ``analysis`` for one split, as ``{name: value}``.

    Classification: ``y_true`` and ``predictions`` are class indices (one-hot rows are turned
    into indices); ``probabilities`` is (n, k) for multiclass and the positive class's
    probability (n,) or (n, 2) for binary; without them roc_auc and log_loss are NaN.
    ``labels`` is the full list of class indices, so a split lacking a class still gets a
    log loss; by default every column of ``probabilities`` (binary: ``[0, 1]``).
    """
    import sklearn

    analysis = AnalysisType.parse(analysis)
    # Inputs come from aiqc itself; skipping scikit-learn's argument validation halves the
    # cost of a job's bookkeeping without changing any value.
    with sklearn.config_context(skip_parameter_validation=True), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. r2 on a single row: NaN is the answer
        if analysis.is_classification:
            return _classification(analysis, y_true, predictions, probabilities, labels)
        return _regression(y_true, predictions)


def class_indices(values: np.ndarray) -> np.ndarray:
    """Encoded labels or predictions -> class index per row (one-hot rows: their argmax)."""
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] > 1:
        return values.argmax(axis=1)
    return values.reshape(-1).round().astype(np.int64)


def positive_scores(analysis: AnalysisType, probabilities: np.ndarray) -> np.ndarray:
    """Binary: the positive class's probability per row, (n,); multiclass: the (n, k) matrix."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if analysis is AnalysisType.CLASSIFICATION_BINARY:
        if probabilities.ndim == 2 and probabilities.shape[1] == 2:
            return probabilities[:, 1]
        return probabilities.reshape(-1)
    return probabilities


def _regression(y_true: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    from sklearn import metrics as m

    y_true, predictions = (np.asarray(a, dtype=np.float64) for a in (y_true, predictions))
    if y_true.ndim == 2 and y_true.shape[1] == 1:
        y_true = y_true[:, 0]
    predictions = predictions.reshape(y_true.shape)
    if not np.isfinite(predictions).all():
        return dict.fromkeys(REGRESSION, NAN)
    return {
        "r2": float(m.r2_score(y_true, predictions)),
        "mse": float(m.mean_squared_error(y_true, predictions)),
        "mae": float(m.mean_absolute_error(y_true, predictions)),
        "explained_variance": float(m.explained_variance_score(y_true, predictions)),
    }


def _classification(analysis: AnalysisType, y_true: np.ndarray, predictions: np.ndarray,
                    probabilities: np.ndarray | None, labels: list[int] | None) -> dict[str, float]:
    from sklearn import metrics as m

    y_true, predictions = class_indices(y_true), class_indices(predictions)
    scores = None if probabilities is None else positive_scores(analysis, probabilities)
    binary = analysis is AnalysisType.CLASSIFICATION_BINARY
    if labels is not None:
        labels = list(labels)
    elif binary:
        labels = [0, 1]
    elif scores is not None:
        labels = list(range(scores.shape[1]))
    else:
        labels = sorted(set(np.unique(y_true)) | set(np.unique(predictions)))

    precision, recall, f1, _ = m.precision_recall_fscore_support(
        y_true, predictions, labels=labels, average="weighted", zero_division=0)
    out = {"accuracy": float(m.accuracy_score(y_true, predictions)), "precision": float(precision),
           "recall": float(recall), "f1": float(f1), "roc_auc": NAN, "log_loss": NAN}
    if scores is None or not np.isfinite(scores).all():
        return out

    distribution = np.column_stack([1 - scores, scores]) if binary else _normalised(scores)
    if set(np.unique(y_true)) >= set(labels):  # ROC AUC needs every class in the split
        out["roc_auc"] = float(m.roc_auc_score(y_true, scores) if binary else
                               m.roc_auc_score(y_true, distribution, multi_class="ovr", average="macro",
                                               labels=labels))
    out["log_loss"] = float(m.log_loss(y_true, distribution, labels=labels))
    return out


def _normalised(probabilities: np.ndarray) -> np.ndarray:
    """Rows summing to 1 exactly (float32 softmax output drifts by ~1e-7)."""
    clipped = np.clip(probabilities, 1e-15, None)
    return clipped / clipped.sum(axis=1, keepdims=True)
