"""Metrics of stored predictions, computed as scikit-learn defines them.

Each split's class-based metrics derive from one confusion matrix (:class:`Confusion`), its
ranking metrics from one sort per class, its regression metrics from one residual: the values
are scikit-learn's (tests/test_metric_equivalence.py compares them on random and degenerate
splits), without paying scikit-learn's input checks once per metric.

This module knows metrics, not analysis types: :mod:`aiqc.analysis` says which set applies
to which type and hands these functions class indices and probability matrices.

Every classification type: ``accuracy``; ``precision``, ``recall`` and ``f1`` weighted by
support (``zero_division=0``); ``roc_auc`` (binary: on the probability of class index 1;
multiclass: one-vs-rest, macro-averaged); ``log_loss`` over the full class list (lower is
better).

Binary, of the positive class (``pos_label``: the experiment's ``positive_index()``, 1 by
default): ``precision_positive``, ``recall_positive``, ``f1_positive`` (``zero_division=0``) and
``average_precision`` (the area under the precision-recall curve, on the positive class's
probability: ``1 - p`` when the positive class is index 0); and ``balanced_accuracy``, ``mcc``
(Matthews correlation coefficient).

Multiclass: ``f1_macro`` (unweighted mean over the classes present in the split's truth or
predictions) and ``balanced_accuracy``.

Regression, in the label's original units (the caller inverts the label encoder first):
``r2``, ``mse``, ``mae``, ``explained_variance``, ``rmse`` (``mse``, ``mae`` and ``rmse``: lower is
better).

A metric that is undefined for a split (ROC AUC when a class is absent from it, average
precision without a positive row, anything on non-finite model outputs) is NaN, not an error;
:mod:`aiqc.training` refuses non-finite outputs before measuring them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

NAN = float("nan")


@dataclass(frozen=True)
class MetricDef:
    """A metric's name and its direction."""

    name: str
    lower_is_better: bool = False


@dataclass(frozen=True)
class MetricSet:
    """The metrics an experiment records (its analysis type's, plus the user's own), their
    directions, and the one that ranks jobs when none is named."""

    defs: tuple[MetricDef, ...]
    default: str
    owner: str  # who has these metrics, for messages: an analysis type or an experiment
    _index: dict[str, MetricDef] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {d.name: d for d in self.defs})

    @property
    def names(self) -> tuple[str, ...]:
        """The metric names, built-in first."""
        return tuple(d.name for d in self.defs)

    def lower_is_better(self, metric: str) -> bool:
        """Whether a smaller ``metric`` is better (losses, errors, custom metrics to minimise)."""
        definition = self._index.get(metric)
        return definition.lower_is_better if definition is not None else lower_is_better(metric)

    def direction(self, metric: str) -> str:
        """``'minimize'`` or ``'maximize'``."""
        return "minimize" if self.lower_is_better(metric) else "maximize"

    def check(self, metric: Any, parameter: str = "metric") -> str:
        """``metric`` if it is one of these, :attr:`default` if None; a ValidationError naming
        ``parameter`` otherwise."""
        from aiqc.exceptions import ValidationError

        if metric is None:
            return self.default
        if not isinstance(metric, str) or metric not in self._index:
            raise ValidationError.expected(parameter, f"one of {list(self.names)!r} for {self.owner}", metric)
        return metric

    def extended(self, custom: Mapping[str, bool], default: str | None = None, owner: str | None = None) -> MetricSet:
        """These metrics plus ``custom`` ({name: lower_is_better}), ranking by ``default``."""
        defs = self.defs + tuple(MetricDef(name, bool(lower)) for name, lower in custom.items())
        return MetricSet(defs, default or self.default, owner or self.owner)


#: a custom metric: fn(y_true, y_pred, y_prob) -> float
CustomMetric = Callable[[Any, Any, Any], float]


#: the metrics of every classification type, in the order :func:`classification` returns them
CLASSIFICATION: tuple[MetricDef, ...] = (
    MetricDef("accuracy"), MetricDef("precision"), MetricDef("recall"), MetricDef("f1"), MetricDef("roc_auc"),
    MetricDef("log_loss", lower_is_better=True),
)
#: two classes: the common ones, then :func:`binary`'s
BINARY: tuple[MetricDef, ...] = CLASSIFICATION + (
    MetricDef("precision_positive"), MetricDef("recall_positive"), MetricDef("f1_positive"),
    MetricDef("balanced_accuracy"), MetricDef("average_precision"), MetricDef("mcc"),
)
#: k classes: the common ones, then :func:`multiclass`'s
MULTICLASS: tuple[MetricDef, ...] = CLASSIFICATION + (MetricDef("f1_macro"), MetricDef("balanced_accuracy"))
REGRESSION: tuple[MetricDef, ...] = (
    MetricDef("r2"), MetricDef("mse", lower_is_better=True), MetricDef("mae", lower_is_better=True),
    MetricDef("explained_variance"), MetricDef("rmse", lower_is_better=True),
)
#: per-epoch history names (as Keras and ``aiqc.torch_fit`` record them) where smaller is better
HISTORY_LOWER_IS_BETTER = frozenset({"loss", "val_loss"})
#: every metric (and history entry) where a smaller value is better
LOWER_IS_BETTER = frozenset({m.name for m in BINARY + MULTICLASS + REGRESSION if m.lower_is_better}
                            | HISTORY_LOWER_IS_BETTER)


def lower_is_better(name: str) -> bool:
    """Whether a smaller value of metric or history entry ``name`` is better (losses, errors)."""
    return name in LOWER_IS_BETTER or name.endswith("loss")


def parse_custom(metrics: Any, reserved: tuple[str, ...], parameter: str = "metrics") -> dict[str, tuple[CustomMetric, bool]]:
    """``{name: fn}`` or ``{name: (fn, 'maximize' | 'minimize')}`` -> ``{name: (fn, lower_is_better)}``;
    a ValidationError naming ``parameter`` for anything else. ``fn(y_true, y_pred, y_prob) -> float``."""
    import inspect

    from aiqc.exceptions import ValidationError

    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise ValidationError.expected(parameter, "None or a dict {name: fn} or {name: (fn, 'minimize')}", metrics)
    out: dict[str, tuple[CustomMetric, bool]] = {}
    for name, value in metrics.items():
        key = f"{parameter}[{name!r}]"
        if not isinstance(name, str) or not name.isidentifier():
            raise ValidationError.expected(parameter, "names that are valid Python identifiers", name)
        if name in reserved:
            raise ValidationError(f"{key}: expected a name other than the built-in metrics {list(reserved)!r}; "
                                  f"received {name!r}.")
        fn, direction = (value if isinstance(value, tuple) and len(value) == 2 else (value, "maximize"))
        if direction not in ("maximize", "minimize"):
            raise ValidationError.expected(f"{key} direction", "'maximize' or 'minimize'", direction)
        if not callable(fn):
            raise ValidationError.expected(key, "a function fn(y_true, y_pred, y_prob) -> float, or (fn, direction)",
                                           value)
        try:
            inspect.signature(fn).bind(None, None, None)
        except TypeError:
            raise ValidationError(f"{key}: expected a function fn(y_true, y_pred, y_prob) -> float; received "
                                  f"{getattr(fn, '__name__', 'function')}{inspect.signature(fn)}.") from None
        except ValueError:  # a builtin without an inspectable signature: trust it
            pass
        out[name] = (fn, direction == "minimize")
    return out


def class_indices(values: np.ndarray) -> np.ndarray:
    """Encoded labels or predictions -> class index per row (one-hot rows: their argmax)."""
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] > 1:
        return values.argmax(axis=1)
    return values.reshape(-1).round().astype(np.int64)


# --- regression -----------------------------------------------------------------------------
def regression(y_true: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """The regression metrics of one split; NaN for all of them on non-finite predictions.

    As scikit-learn's ``r2_score``, ``mean_squared_error``, ``mean_absolute_error``,
    ``explained_variance_score`` (``force_finite=True``: 1.0 for perfect predictions of a
    constant truth, 0.0 for imperfect ones; r2 of fewer than two rows is NaN) and
    ``root_mean_squared_error``, each averaged uniformly over the outputs, from one residual.
    """
    y_true, predictions = (np.asarray(a, dtype=np.float64) for a in (y_true, predictions))
    if y_true.ndim == 2 and y_true.shape[1] == 1:
        y_true = y_true[:, 0]
    predictions = predictions.reshape(y_true.shape)
    if not np.isfinite(predictions).all():
        return dict.fromkeys((d.name for d in REGRESSION), NAN)
    truth = y_true.reshape(len(y_true), -1)  # (rows, outputs), as scikit-learn reshapes them
    residuals = truth - predictions.reshape(truth.shape)
    squared = (residuals ** 2).mean(axis=0)
    spread = truth - truth.mean(axis=0)
    r2 = (_explained(np.sum(residuals ** 2, axis=0), np.sum(spread ** 2, axis=0)) if len(truth) >= 2 else NAN)
    unexplained = ((residuals - residuals.mean(axis=0)) ** 2).mean(axis=0)
    return {
        "r2": r2,
        "mse": float(squared.mean()),
        "mae": float(np.abs(residuals).mean(axis=0).mean()),
        "explained_variance": _explained(unexplained, (spread ** 2).mean(axis=0)),
        "rmse": float(np.sqrt(squared).mean()),
    }


def _explained(numerator: np.ndarray, denominator: np.ndarray) -> float:
    """``1 - numerator / denominator`` per output, averaged, with scikit-learn's
    ``force_finite``: 1.0 where the numerator is 0, 0.0 where only the denominator is."""
    scores = np.ones_like(numerator)
    defined = (numerator != 0) & (denominator != 0)
    scores[defined] = 1 - numerator[defined] / denominator[defined]
    scores[(numerator != 0) & (denominator == 0)] = 0.0
    return float(scores.mean())


# --- classification ---------------------------------------------------------------------------
class Confusion:
    """The counts of one split that every class-based metric is derived from: a confusion
    matrix (truth in rows, predictions in columns) over :attr:`classes`, every class of
    ``labels``, the truth or the predictions, sorted. Values outside ``labels`` are counted,
    as scikit-learn counts them (a prediction of an unknown class is a miss)."""

    def __init__(self, y_true: np.ndarray, predictions: np.ndarray, labels: Any = ()):
        y_true, predictions = np.asarray(y_true).reshape(-1), np.asarray(predictions).reshape(-1)
        labels = np.asarray(labels).reshape(-1)
        self.classes, inverse = np.unique(np.concatenate([labels, y_true, predictions]), return_inverse=True)
        truth, predicted = np.split(inverse[len(labels):], [len(y_true)])
        k = len(self.classes)
        self.matrix = np.bincount(truth * k + predicted, minlength=k * k).reshape(k, k)
        self.tp = np.diagonal(self.matrix)
        self.true = self.matrix.sum(axis=1)
        self.predicted = self.matrix.sum(axis=0)

    def positions(self, labels: Any) -> np.ndarray:
        """Where ``labels`` (classes counted here) are in :attr:`classes`."""
        return np.searchsorted(self.classes, np.asarray(labels).reshape(-1))

    @property
    def present(self) -> np.ndarray:
        """The classes found in the truth or the predictions."""
        return self.classes[(self.true + self.predicted) > 0]

    def accuracy(self) -> float:
        """As ``accuracy_score``: the share of rows predicted right."""
        return float(_ratio(self.tp.sum(), self.true.sum()))

    def scores(self, at: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Precision, recall and F1 per class (at positions ``at``; every class by default), 0
        where undefined, as ``precision_recall_fscore_support(average=None, zero_division=0)``."""
        tp, true, predicted = ((v if at is None else v[at]) for v in (self.tp, self.true, self.predicted))
        return _ratio(tp, predicted), _ratio(tp, true), _ratio(2.0 * tp, 1.0 * true + predicted)

    def weighted(self, labels: Any) -> tuple[float, float, float]:
        """Precision, recall and F1 of ``labels`` weighted by their support, as
        ``average='weighted'`` (unweighted where no row is of any of them)."""
        at = self.positions(labels)
        support = self.true[at]
        return tuple(float(np.average(v, weights=support) if support.sum() else v.mean()) for v in self.scores(at))

    def f1_macro(self) -> float:
        """F1 averaged over the classes present in the truth or predictions, as ``f1_score(average='macro')``."""
        return float(self.scores(self.positions(self.present))[2].mean())

    def balanced_accuracy(self) -> float:
        """Recall averaged over the classes present in the truth, as ``balanced_accuracy_score``."""
        found = self.true > 0
        return float((self.tp[found] / self.true[found]).mean())

    def mcc(self) -> float:
        """As ``matthews_corrcoef``: 0.0 where a variance is 0."""
        t_sum, p_sum = self.true.astype(np.float64), self.predicted.astype(np.float64)
        n_correct, n_samples = np.float64(self.tp.sum()), p_sum.sum()
        cov_ytyp = n_correct * n_samples - np.dot(t_sum, p_sum)
        cov_ypyp = n_samples ** 2 - np.dot(p_sum, p_sum)
        cov_ytyt = n_samples ** 2 - np.dot(t_sum, t_sum)
        product = cov_ypyp * cov_ytyt
        return 0.0 if product == 0 else float(cov_ytyp / np.sqrt(product))

    def positive_scores(self, positive: int) -> tuple[float, float, float]:
        """Precision, recall and F1 of the ``positive`` class, as ``average='binary'`` with
        ``pos_label``: a ValueError, as there, when more than two classes are present or two
        without the positive one."""
        present = self.present
        if len(present) > 2 or (len(present) == 2 and positive not in present):
            raise ValueError(f"positive: expected the truth and predictions to hold at most the two classes "
                             f"0 and 1; received the classes {present.tolist()!r}.")
        counted = np.searchsorted(self.classes, positive)
        if counted < len(self.classes) and self.classes[counted] == positive:
            return tuple(float(v[0]) for v in self.scores(np.array([counted])))
        return 0.0, 0.0, 0.0  # never true nor predicted


def _ratio(numerator: Any, denominator: Any) -> np.ndarray:
    """``numerator / denominator`` as float64, 0 where the denominator is 0 (``zero_division=0``)."""
    numerator, denominator = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)


def _ranking(positives: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(true positives, false positives) at each distinct score, highest first: the points of
    scikit-learn's ROC and precision-recall curves (its ``_binary_clf_curve``)."""
    order = np.argsort(scores, kind="mergesort")[::-1]
    scores, positives = scores[order], positives[order]
    ends = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(positives, dtype=np.float64)[ends]
    return tps, 1 + ends - tps


def roc_auc(positives: np.ndarray, scores: np.ndarray) -> float:
    """The area under the ROC curve of one class (``positives``: which rows are of it), as
    ``roc_auc_score``; NaN unless both that class and another are present."""
    tps, fps = _ranking(positives, scores)
    if not tps[-1] or not fps[-1]:
        return NAN
    return float(np.trapezoid(np.r_[0, tps / tps[-1]], np.r_[0, fps / fps[-1]]))


def average_precision(positives: np.ndarray, scores: np.ndarray) -> float:
    """As ``average_precision_score``: precision at each distinct score weighted by the recall
    it adds; NaN without a positive row."""
    tps, fps = _ranking(positives, scores)
    if not tps[-1]:
        return NAN
    recall = np.r_[0, tps / tps[-1]]
    return float(max(0.0, np.sum(np.diff(recall) * (tps / (tps + fps)))))


def log_loss(y_true: np.ndarray, distribution: np.ndarray, labels: Any) -> float:
    """As ``log_loss(y_true, distribution, labels=labels)``: the mean negative log of each row's
    probability of its true class (clipped to [eps, 1 - eps]); columns are the sorted
    ``labels``. A ValueError, as there, for a truth outside ``labels``, a column count other
    than theirs, or probabilities outside [0, 1]."""
    classes = np.unique(np.asarray(labels))
    if distribution.shape[1] != len(classes):
        raise ValueError(f"probabilities: expected {len(classes)} columns, one per class; "
                         f"received {distribution.shape[1]}.")
    if distribution.size and (distribution.min() < 0 or distribution.max() > 1):
        raise ValueError("probabilities: expected values between 0 and 1; received "
                         f"values from {distribution.min()} to {distribution.max()}.")
    column = np.searchsorted(classes, y_true)
    if np.any(column >= len(classes)) or np.any(classes[np.minimum(column, len(classes) - 1)] != y_true):
        raise ValueError(f"y_true: expected classes of {classes.tolist()!r}; received "
                         f"{np.setdiff1d(y_true, classes).tolist()!r}.")
    eps = np.finfo(distribution.dtype).eps
    chosen = np.clip(distribution, eps, 1 - eps)[np.arange(len(y_true)), column]
    return float((-np.log(chosen)).mean())


def classification(y_true: np.ndarray, predictions: np.ndarray, labels: list[int],
                   distribution: np.ndarray | None = None, auc_scores: np.ndarray | None = None) -> dict[str, float]:
    """The classification metrics of one split.

    ``y_true`` and ``predictions`` are class indices; ``labels`` the full list of class
    indices (so a split lacking a class still gets a log loss); ``distribution`` the (n, k)
    class probabilities (rows summing to 1, columns in ``labels`` order) and ``auc_scores``
    what ROC AUC is computed on (the positive class's probability for two classes, else the
    distribution: one-vs-rest, macro-averaged; of two classes, the second column). Without probabilities, or with non-finite
    ones, roc_auc and log_loss are NaN.
    """
    y_true = np.asarray(y_true).reshape(-1)
    counts = Confusion(y_true, predictions, labels)
    precision, recall, f1 = counts.weighted(labels)
    out = {"accuracy": counts.accuracy(), "precision": precision, "recall": recall, "f1": f1,
           "roc_auc": NAN, "log_loss": NAN}
    if distribution is None or not np.isfinite(distribution).all():
        return out
    distribution = np.asarray(distribution, dtype=np.float64)
    out["log_loss"] = log_loss(y_true, distribution, labels)  # refuses a truth outside labels first
    if set(np.unique(y_true)) >= set(labels):  # ROC AUC needs every class in the split
        scores = distribution if auc_scores is None else np.asarray(auc_scores, dtype=np.float64)
        if scores.ndim == 2 and scores.shape[1] == 2:  # two classes: scikit-learn's binary case, class 1's column
            scores = scores[:, 1]
        out["roc_auc"] = (roc_auc(y_true == max(labels), scores) if scores.ndim == 1 else
                          float(np.mean([roc_auc(y_true == label, scores[:, column])
                                         for column, label in enumerate(sorted(labels))])))
    return out


def binary(y_true: np.ndarray, predictions: np.ndarray, positive: int,
           scores: np.ndarray | None = None) -> dict[str, float]:
    """The metrics of two classes beyond :func:`classification`'s, for one split.

    ``y_true`` and ``predictions`` are class indices 0 / 1; ``positive`` the index of the
    positive class (``pos_label``); ``scores`` the probability of class index 1 per row (as
    stored), turned into the positive class's probability (``1 - scores`` for index 0) for
    ``average_precision``. Without scores, with non-finite ones, or without a positive row,
    ``average_precision`` is NaN.
    """
    if positive not in (0, 1):
        from aiqc.exceptions import ValidationError

        raise ValidationError.expected("positive", "the positive class's index, 0 or 1", positive)
    y_true = np.asarray(y_true).reshape(-1)
    counts = Confusion(y_true, predictions)
    precision, recall, f1 = counts.positive_scores(positive)
    out = {"precision_positive": precision, "recall_positive": recall, "f1_positive": f1,
           "balanced_accuracy": counts.balanced_accuracy(), "average_precision": NAN, "mcc": counts.mcc()}
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if np.isfinite(scores).all():
            out["average_precision"] = average_precision(y_true == positive, scores if positive == 1 else 1 - scores)
    return out


def multiclass(y_true: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """The metrics of k classes beyond :func:`classification`'s, for one split: ``f1_macro``
    (over the classes present in ``y_true`` or ``predictions``, ``zero_division=0``) and
    ``balanced_accuracy``. Both take class indices."""
    counts = Confusion(y_true, predictions)
    return {"f1_macro": counts.f1_macro(), "balanced_accuracy": counts.balanced_accuracy()}


def metric_value(value: Any) -> float | None:
    """What a custom metric returned, as a float (NaN: undefined on this split, as the
    built-in metrics); None when it is not a real number (a bool, a string, an array of
    more than one value, None, an infinity)."""
    import numbers

    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return None if np.isinf(number) else number


def non_finite_count(values: Any) -> int:
    """How many rows of a numeric array hold NaN or an infinity (0 for non-numeric arrays)."""
    array = np.asarray(values)
    if array.dtype.kind not in "fc" or not array.size:
        return 0
    bad = ~np.isfinite(array)
    return int(bad.reshape(len(array), -1).any(axis=1).sum()) if array.ndim else int(bad)


def normalised(probabilities: np.ndarray) -> np.ndarray:
    """Rows summing to 1 exactly (float32 softmax output drifts by ~1e-7)."""
    clipped = np.clip(probabilities, 1e-15, None)
    return clipped / clipped.sum(axis=1, keepdims=True)
