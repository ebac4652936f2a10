"""Metrics, computed with scikit-learn on stored predictions.

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

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

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
        # as sklearn's root_mean_squared_error (>= 1.4): the square root per output, then the mean
        rmse = np.sqrt(m.mean_squared_error(y_true, predictions, multioutput="raw_values")).mean()
        return {
            "r2": float(m.r2_score(y_true, predictions)),
            "mse": float(m.mean_squared_error(y_true, predictions)),
            "mae": float(m.mean_absolute_error(y_true, predictions)),
            "explained_variance": float(m.explained_variance_score(y_true, predictions)),
            "rmse": float(rmse),
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


def binary(y_true: np.ndarray, predictions: np.ndarray, positive: int,
           scores: np.ndarray | None = None) -> dict[str, float]:
    """The metrics of two classes beyond :func:`classification`'s, for one split.

    ``y_true`` and ``predictions`` are class indices 0 / 1; ``positive`` the index of the
    positive class (``pos_label``); ``scores`` the probability of class index 1 per row (as
    stored), turned into the positive class's probability (``1 - scores`` for index 0) for
    ``average_precision``. Without scores, with non-finite ones, or without a positive row,
    ``average_precision`` is NaN.
    """
    from sklearn import metrics as m

    if positive not in (0, 1):
        from aiqc.exceptions import ValidationError

        raise ValidationError.expected("positive", "the positive class's index, 0 or 1", positive)
    with _quiet_sklearn():
        precision, recall, f1, _ = m.precision_recall_fscore_support(
            y_true, predictions, pos_label=positive, average="binary", zero_division=0)
        out = {"precision_positive": float(precision), "recall_positive": float(recall), "f1_positive": float(f1),
               "balanced_accuracy": float(m.balanced_accuracy_score(y_true, predictions)),
               "average_precision": NAN, "mcc": float(m.matthews_corrcoef(y_true, predictions))}
        if scores is not None:
            scores = np.asarray(scores, dtype=np.float64).reshape(-1)
            if np.isfinite(scores).all() and (np.asarray(y_true) == positive).any():
                positive_scores = scores if positive == 1 else 1 - scores
                out["average_precision"] = float(m.average_precision_score(y_true, positive_scores, pos_label=positive))
    return out


def multiclass(y_true: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """The metrics of k classes beyond :func:`classification`'s, for one split: ``f1_macro``
    (over the classes present in ``y_true`` or ``predictions``, ``zero_division=0``) and
    ``balanced_accuracy``. Both take class indices."""
    from sklearn import metrics as m

    with _quiet_sklearn():
        return {"f1_macro": float(m.f1_score(y_true, predictions, average="macro", zero_division=0)),
                "balanced_accuracy": float(m.balanced_accuracy_score(y_true, predictions))}


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
