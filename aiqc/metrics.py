"""Metrics per analysis type, computed with scikit-learn on stored predictions."""

from __future__ import annotations

import warnings

import numpy as np

from aiqc.analysis import AnalysisType

CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION = ("r2", "mse", "mae", "explained_variance")
#: metrics where a smaller value is better
LOWER_IS_BETTER = frozenset({"log_loss", "mse", "mae", "loss", "val_loss"})


def names(analysis: AnalysisType) -> tuple[str, ...]:
    return CLASSIFICATION if analysis.is_classification else REGRESSION


def default_metric(analysis: AnalysisType) -> str:
    return "accuracy" if analysis.is_classification else "r2"


def compute(analysis: AnalysisType, y_true: np.ndarray, predictions: np.ndarray,
            probabilities: np.ndarray | None = None, labels: list[int] | None = None) -> dict[str, float]:
    """Every metric of the analysis type. Classification: ``y_true`` and ``predictions``
    are class indices; precision, recall and F1 are weighted by support; ROC AUC is
    one-vs-rest, macro-averaged for multiclass, NaN when the split holds a single class;
    log loss uses the full class list ``labels``. Regression: R2, MSE, MAE, explained variance."""
    import sklearn

    # Inputs are built by aiqc itself; skipping scikit-learn's argument validation
    # halves the cost of a job's bookkeeping without changing any value.
    with sklearn.config_context(skip_parameter_validation=True):
        return _compute(analysis, y_true, predictions, probabilities, labels)


def _compute(analysis, y_true, predictions, probabilities, labels) -> dict[str, float]:
    from sklearn import metrics as m

    if not analysis.is_classification:
        return {
            "r2": float(m.r2_score(y_true, predictions)),
            "mse": float(m.mean_squared_error(y_true, predictions)),
            "mae": float(m.mean_absolute_error(y_true, predictions)),
            "explained_variance": float(m.explained_variance_score(y_true, predictions)),
        }
    labels = list(labels) if labels is not None else sorted(set(np.unique(y_true)) | set(np.unique(predictions)))
    precision, recall, f1, _ = m.precision_recall_fscore_support(
        y_true, predictions, labels=labels, average="weighted", zero_division=0)
    out = {
        "accuracy": float(m.accuracy_score(y_true, predictions)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "roc_auc": float("nan"),
        "log_loss": float("nan"),
    }
    if probabilities is None:
        return out
    scores = positive_scores(analysis, probabilities)
    if len(np.unique(y_true)) > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if analysis is AnalysisType.CLASSIFICATION_BINARY:
                out["roc_auc"] = float(m.roc_auc_score(y_true, scores))
            else:
                present = np.unique(y_true)
                if len(present) == len(labels):
                    out["roc_auc"] = float(m.roc_auc_score(y_true, _normalised(scores), multi_class="ovr",
                                                           labels=labels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = (np.column_stack([1 - scores, scores]) if analysis is AnalysisType.CLASSIFICATION_BINARY
                else _normalised(scores))
        out["log_loss"] = float(m.log_loss(y_true, full, labels=labels))
    return out


def positive_scores(analysis: AnalysisType, probabilities: np.ndarray) -> np.ndarray:
    """Binary: the positive class's probability per row; multiclass: the (n, k) matrix."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if analysis is AnalysisType.CLASSIFICATION_BINARY:
        if probabilities.ndim == 2 and probabilities.shape[1] == 2:
            return probabilities[:, 1]
        return probabilities.reshape(-1)
    return probabilities


def _normalised(probabilities: np.ndarray) -> np.ndarray:
    """Rows summing to 1 exactly (float32 softmax output drifts by ~1e-7)."""
    clipped = np.clip(probabilities, 1e-15, None)
    return clipped / clipped.sum(axis=1, keepdims=True)
