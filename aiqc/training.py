"""Running one job: build, train, predict every split, measure. No database writes here;
the runner records the returned :class:`JobOutcome` in one transaction.

Measuring refuses what it cannot trust: a non-finite last training loss, predictions or
probabilities raise :class:`~aiqc.exceptions.NonFiniteError`, and a custom metric that raises
or returns something other than a real number raises
:class:`~aiqc.exceptions.UserFunctionError`; either way the job ends FAILED with the reason.
Regression truth and predictions are measured and stored in the label's original units (the
scope's fitted label encoder inverted); classification ones as class indices."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from aiqc import caches
from aiqc import metrics as measuring
from aiqc.exceptions import JobPruned, NonFiniteError, UserFunctionError, _show

if TYPE_CHECKING:
    from aiqc.analysis import AnalysisType
    from aiqc.backends import Backend

logger = logging.getLogger(__name__)


@dataclass
class JobOutcome:
    """What one job produced; the runner records it in one transaction."""

    metrics: dict[str, dict[str, float]]  # split -> metric -> value
    history: dict[str, list[float]]
    # split -> (rows, predictions: class indices or original-unit values, probabilities)
    predictions: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]]
    model_blob: bytes
    timings: dict[str, float] = field(default_factory=dict)
    pruned: bool = False
    # what fn_build received, stored with the job: loading the model rebuilds it without encoding data
    features_shape: tuple[int, ...] = ()
    label_shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Measuring:
    """What measuring one job needs beyond its predictions: the scope's fitted label encoder
    (regression: to put values back in the label's units), the positive class's index
    (binary), and the experiment's custom metrics ``{name: fn(y_true, y_pred, y_prob)}``."""

    label_encoder: Any = None
    positive: int | None = None
    custom: dict[str, Any] = field(default_factory=dict)


@caches.register
@lru_cache(maxsize=16)  # a worker cycling through the jobs of up to 16 folds encodes each fold once
def encoded_scope(database: str, splitset_id: int, created_at: Any,
                  fold_index: int | None) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every split of a scope (a fold's, or the splitset's when ``fold_index`` is None) as
    ``{split: (dataset rows, encoded features, encoded labels)}``, cached per worker and
    database: the jobs of a scope share one encoding. ``created_at`` (the splitset's) is part
    of the key: a splitset deleted in another process, whose id SQLite gives to a new one, is
    never read from the cache."""
    from aiqc.orm import Splitset

    splitset = Splitset.get_by_id(splitset_id)
    scope = {}
    for split in splitset.split_names:
        samples = splitset.samples(split, fold_index)
        scope[split] = (splitset.indices(split, fold_index), samples["features"], samples["labels"])
    return scope


@caches.register
@lru_cache(maxsize=16)
def _label_encoder(database: str, splitset_id: int, created_at: Any, fold_index: int | None) -> Any:
    """The fitted label encoder of a scope (None without one), cached per worker."""
    from aiqc.orm import Splitset

    return Splitset.get_by_id(splitset_id).label_encoder(fold_index)


@caches.register
@lru_cache(maxsize=8)
def _metric_functions(database: str, experiment_id: int, created_at: Any) -> dict[str, Any]:
    """The experiment's custom metrics ``{name: fn}``, deserialised once per worker."""
    from aiqc.orm import Experiment

    return Experiment.get_by_id(experiment_id).load_metric_functions()


#: what a non-finite result suggests checking, in every NonFiniteError
NON_FINITE_HINT = ("check the features for NaN or infinite values, the learning rate (lower it), the label's "
                   "scale (encode it) and the loss function")


def evaluation_splits(splitset: Any, hide_test: bool, fold_index: int | None) -> tuple[str, list[str]]:
    """(the split handed to fn_train as samples_evaluate, every split to predict and measure)."""
    has_validation = fold_index is not None or bool(splitset.count_validation)
    splits = ["train"] + (["validation"] if has_validation else []) + ([] if hide_test else ["test"])
    evaluate = "validation" if has_validation else "test"
    return evaluate, splits


def prepare(job: Any, experiment: Any, threads: int | None = None) -> None:
    """A worker's start-up, paid once before its first claim: the library imported, configured
    and warmed up, and the encoded samples of ``job``'s scope (its fold's or the splitset's)
    cached, so that later jobs reuse them and no job's time includes them."""
    from aiqc.backends import get_backend
    from aiqc.orm.base import database_key

    backend = get_backend(experiment.library)
    backend.configure(threads=threads, seed=None)
    backend.warm_up()
    encoded_scope(database_key(), experiment.splitset_id, experiment.splitset.created_at, job.fold_index)


def run_job(job: Any, experiment: Any, functions: dict[str, Any], threads: int | None = None) -> JobOutcome:
    """Train ``job`` and measure it on every split."""
    import time
    from contextlib import nullcontext

    from aiqc.backends import get_backend
    from aiqc.orm.base import database_key
    from aiqc.pruning import Reporter

    analysis = experiment.analysis_type
    backend = get_backend(experiment.library)
    splitset = experiment.splitset
    hp = dict(job.hyperparamset.hyperparameters)
    fold_index = job.fold_index
    database = database_key()
    timings: dict[str, float] = {}

    tick = time.perf_counter()
    backend.configure(threads=threads, seed=job.seed)
    evaluate, splits = evaluation_splits(splitset, experiment.hide_test, fold_index)
    scope = encoded_scope(database, splitset.id, splitset.created_at, fold_index)
    arrays = {s: scope[s] for s in splits}  # the evaluated split is one of them (checked at make)
    _, train_x, train_y = arrays["train"]
    samples_train = backend.to_samples(train_x, train_y, analysis)
    samples_evaluate = backend.to_samples(arrays[evaluate][1], arrays[evaluate][2], analysis)
    timings["samples"] = time.perf_counter() - tick

    features_shape = backend.sample_shape(train_x.shape[1:])  # as the library takes a sample (channels first in torch)
    model = functions["fn_build"](features_shape, train_y.shape[1:], **hp)
    if not backend.is_model(model):
        raise UserFunctionError(
            f"fn_build: expected a {backend.model_description} for library={backend.name!r}; "
            f"received {type(model).__module__}.{type(model).__qualname__}."
        )
    if functions.get("fn_predict") is None or functions.get("fn_lose") is None:  # the defaults read the width
        _check_output_width(backend, analysis, model, features_shape, train_y.shape[1:],
                            splitset.label.unique_count, hp)
    # in a search, per-epoch values reach aiqc (and its pruner) while fn_train runs
    search = experiment.search_settings
    reporter = Reporter(job, search) if search is not None else None
    with reporter.listening() if reporter is not None else nullcontext():
        model = backend.prepare_model(model)
        trained, timings["train"] = _train(backend, analysis, functions, model, train_y.shape, hp,
                                           samples_train, samples_evaluate)
    backend.release_model(model)
    pruned = reporter is not None and reporter.pruned
    spec = analysis.spec
    measuring_context = _Measuring(
        label_encoder=_label_encoder(database, splitset.id, splitset.created_at, fold_index) if spec.original_units else None,
        positive=experiment.positive_index() if spec.has_positive_class else None,
        custom=_metric_functions(database, experiment.id, experiment.created_at) if experiment.metric_functions is not None else {},
    )
    outcome = _measure(backend, analysis, functions, trained, arrays, splits, splitset, timings, pruned,
                       measuring_context)
    outcome.features_shape, outcome.label_shape = tuple(features_shape), tuple(train_y.shape[1:])
    return outcome


def _check_output_width(backend: Backend, analysis: AnalysisType, model: Any, features_shape: tuple[int, ...],
                        label_shape: tuple[int, ...], class_count: int, hp: dict[str, Any]) -> None:
    """A UserFunctionError naming fn_build when the model built for this job cannot be read by
    the default loss or prediction: its output width does not fit the label (checked at make
    with the first combination only, and not at all with an ``fn_predict``)."""
    import math

    from aiqc.exceptions import ValidationError

    try:
        width = backend.output_width(model, tuple(features_shape))
        analysis.spec.check_output_width(width, math.prod(label_shape), class_count)
    except (ValidationError, ValueError, TypeError, RuntimeError) as error:
        reason = str(error).removeprefix("fn_build: ")
        raise UserFunctionError(f"fn_build: with the hyperparameters {hp!r}, {reason}") from error


def _train(backend: Backend, analysis: AnalysisType, functions: dict[str, Any], model: Any,
           label_shape: tuple[int, ...], hp: dict[str, Any], samples_train: dict,
           samples_evaluate: dict) -> tuple[Any, float]:
    import time

    from aiqc import functions as fn_tools

    loser = functions["fn_lose"](**hp) if functions.get("fn_lose") else backend.default_loss(analysis, label_shape)
    if functions.get("fn_lose") and not backend.is_loss(loser):
        raise UserFunctionError(
            f"fn_lose: expected a loss for library={backend.name!r} (a callable loss object or function"
            f"{', or a loss name' if isinstance(loser, str) else ''}); received {_show(loser)}."
            + (" End fn_lose with `return loss`." if loser is None else "")
        )
    fn_optimize = functions.get("fn_optimize")
    if fn_optimize is None:
        optimizer = backend.default_optimizer(model, analysis, hp)
    else:
        optimizer = fn_optimize(model, **hp) if fn_tools.optimize_takes_model(fn_optimize) else fn_optimize(**hp)
        if not backend.is_optimizer(optimizer):
            raise UserFunctionError(
                f"fn_optimize: expected an optimizer of library={backend.name!r} built on the model's parameters "
                f"(e.g. torch.optim.Adam(model.parameters()) or keras.optimizers.Adam()); received {_show(optimizer)}."
                + (" End fn_optimize with `return optimizer`." if optimizer is None else "")
            )

    tick = time.perf_counter()
    try:
        trained = functions["fn_train"](model, loser, optimizer, samples_train, samples_evaluate, **hp)
    except JobPruned:
        trained = model  # stopped early: measured as it stands
    seconds = time.perf_counter() - tick
    if trained is None:
        raise UserFunctionError(
            f"fn_train: expected the trained model as return value (a {backend.model_description}); "
            "received None. End fn_train with `return model`."
        )
    if not backend.is_model(trained):
        raise UserFunctionError(
            f"fn_train: expected the trained model (a {backend.model_description}); received "
            f"{type(trained).__module__}.{type(trained).__qualname__}."
        )
    return trained, seconds


def _measure(backend: Backend, analysis: AnalysisType, functions: dict[str, Any], trained: Any,
             arrays: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], splits: list[str], splitset: Any,
             timings: dict[str, float], pruned: bool, context: _Measuring | None = None) -> JobOutcome:
    """Predict every split with the trained model and compute its metrics (built-in, then
    custom), refusing non-finite results."""
    import time

    context = context or _Measuring()
    spec = analysis.spec
    history = backend.history(trained)
    _check_loss(history)
    tick = time.perf_counter()
    fn_predict = functions.get("fn_predict")
    labels = spec.metric_labels(splitset.label.unique_count)
    outcome_metrics, outcome_predictions = {}, {}
    for split in splits:
        rows, features, encoded_labels = arrays[split]
        if fn_predict is None:
            prediction = backend.predict(trained, features, analysis)
            predictions, probabilities = prediction.predictions, prediction.probabilities
        else:
            returned = fn_predict(trained, backend.to_samples(features, encoded_labels, analysis))
            if not (isinstance(returned, tuple) and len(returned) == 2):
                raise UserFunctionError(
                    f"fn_predict: expected a tuple (predictions, probabilities); received {type(returned).__name__}."
                )
            predictions, probabilities = (backend.to_numpy(v) for v in returned)
        predictions = np.asarray(predictions)
        if len(predictions) != len(rows):
            raise UserFunctionError(
                f"fn_predict: expected {len(rows)} predictions for the {split} split; received {len(predictions)}."
            )
        probabilities = None if probabilities is None else np.asarray(probabilities)
        _check_finite(predictions, "predictions", split)
        _check_finite(probabilities, "probabilities", split)
        y_true = spec.in_original_units(spec.truth(encoded_labels), context.label_encoder)
        predictions = spec.in_original_units(spec.prediction_values(predictions, len(rows)), context.label_encoder)
        _check_finite(predictions, "predictions", split)  # also once back in the label's units
        values = spec.compute_metrics(y_true, predictions, probabilities, labels=labels, positive=context.positive)
        values.update(_custom_metrics(context.custom, split, y_true, predictions, spec.metric_probabilities(probabilities)))
        outcome_metrics[split] = values
        outcome_predictions[split] = (rows, predictions, probabilities)
    timings["predict"] = time.perf_counter() - tick

    tick = time.perf_counter()
    blob = backend.dump(trained)
    timings["dump"] = time.perf_counter() - tick
    return JobOutcome(outcome_metrics, history, outcome_predictions, blob, timings, pruned)


def _check_loss(history: dict[str, list[float]]) -> None:
    """A NonFiniteError if the last recorded training loss is NaN or infinite."""
    losses = history.get("loss") or []
    if not losses:
        return
    values = np.asarray([np.nan if v is None else v for v in losses], dtype=np.float64)
    if np.isfinite(values[-1]):
        return
    first = int(np.flatnonzero(~np.isfinite(values))[0]) + 1
    raise NonFiniteError(
        f"job: the training loss is not finite ({values[-1]} at epoch {len(values)} of {len(values)}, the first "
        f"non-finite one at epoch {first}): {NON_FINITE_HINT}."
    )


def _check_finite(values: np.ndarray | None, what: str, split: str) -> None:
    """A NonFiniteError naming the split and the rows if ``values`` hold NaN or an infinity."""
    if values is None:
        return
    bad = measuring.non_finite_count(values)
    if bad:
        raise NonFiniteError(
            f"job: the model's {what} on the {split} split are not finite ({bad} of {len(values)} rows): "
            f"{NON_FINITE_HINT}."
        )


def _custom_metrics(custom: dict[str, Any], split: str, y_true: np.ndarray, predictions: np.ndarray,
                    probabilities: np.ndarray | None) -> dict[str, float]:
    """Each custom metric of one split, ``fn(y_true, y_pred, y_prob)`` on copies (a function
    that changes its arguments changes nothing stored); a UserFunctionError naming the
    metric and the split when one raises or returns something other than a real number."""
    out: dict[str, float] = {}
    for name, fn in custom.items():
        try:
            returned = fn(y_true.copy(), predictions.copy(), None if probabilities is None else probabilities.copy())
        except Exception as error:  # noqa: BLE001 - any error of a user's metric fails the job, named
            raise UserFunctionError(
                f"metrics[{name!r}]: raised {type(error).__name__} on the {split} split: {error}"
            ) from error
        value = measuring.metric_value(returned)
        if value is None:
            raise UserFunctionError(
                f"metrics[{name!r}]: expected a real number (a float; NaN where undefined) on the {split} split; "
                f"received {_show(returned)}."
            )
        out[name] = value
    return out

