"""Running one job: build, train, predict every split, measure. No database writes here;
the runner records the returned :class:`JobOutcome` in one transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from aiqc import caches
from aiqc.exceptions import JobPruned, UserFunctionError

if TYPE_CHECKING:
    from aiqc.analysis import AnalysisType
    from aiqc.backends import Backend

logger = logging.getLogger(__name__)


@dataclass
class JobOutcome:
    """What one job produced; the runner records it in one transaction."""

    metrics: dict[str, dict[str, float]]  # split -> metric -> value
    history: dict[str, list[float]]
    predictions: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]]  # split -> (rows, preds, probs)
    model_blob: bytes
    timings: dict[str, float] = field(default_factory=dict)
    pruned: bool = False


@caches.register
@lru_cache(maxsize=8)
def _encoded_samples(database: str, splitset_id: int, fold_index: int | None,
                     split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encoded arrays of one split, cached per worker: jobs of a queue share them."""
    from aiqc.orm import Splitset

    splitset = Splitset.get_by_id(splitset_id)
    rows = splitset.indices(split, fold_index)
    samples = splitset.samples(split, fold_index)
    return rows, samples["features"], samples["labels"]


def evaluation_splits(splitset: Any, hide_test: bool, fold_index: int | None) -> tuple[str, list[str]]:
    """(the split handed to fn_train as samples_evaluate, every split to predict and measure)."""
    has_validation = fold_index is not None or bool(splitset.count_validation)
    splits = ["train"] + (["validation"] if has_validation else []) + ([] if hide_test else ["test"])
    evaluate = "validation" if has_validation else "test"
    return evaluate, splits


def run_job(job: Any, experiment: Any, functions: dict[str, Any], threads: int | None = None) -> JobOutcome:
    """Train ``job`` and measure it on every split."""
    import time
    from contextlib import nullcontext

    from aiqc.backends import get_backend
    from aiqc.orm import database_proxy
    from aiqc.pruning import Reporter

    analysis = experiment.analysis_type
    backend = get_backend(experiment.library)
    splitset = experiment.splitset
    hp = dict(job.hyperparamset.hyperparameters)
    fold_index = job.fold_index
    database = str(database_proxy.obj.database)
    timings: dict[str, float] = {}

    tick = time.perf_counter()
    backend.configure(threads=threads, seed=job.seed)
    evaluate, splits = evaluation_splits(splitset, experiment.hide_test, fold_index)
    arrays = {s: _encoded_samples(database, splitset.id, fold_index, s) for s in splits}
    if evaluate not in arrays:  # hide_test with neither validation nor folds is refused at make
        arrays[evaluate] = _encoded_samples(database, splitset.id, fold_index, evaluate)
    _, train_x, train_y = arrays["train"]
    samples_train = backend.to_samples(train_x, train_y, analysis)
    samples_evaluate = backend.to_samples(arrays[evaluate][1], arrays[evaluate][2], analysis)
    timings["samples"] = time.perf_counter() - tick

    model = functions["fn_build"](train_x.shape[1:], train_y.shape[1:], **hp)
    if not backend.is_model(model):
        raise UserFunctionError(
            f"fn_build: expected a {backend.model_description} for library={backend.name!r}; "
            f"received {type(model).__module__}.{type(model).__qualname__}."
        )
    # in a search, per-epoch values reach aiqc (and its pruner) while fn_train runs
    search = experiment.search_settings
    reporter = Reporter(job, search) if search is not None else None
    with reporter.listening() if reporter is not None else nullcontext():
        model = backend.prepare_model(model)
        trained, timings["train"] = _train(backend, analysis, functions, model, train_y.shape, hp,
                                           samples_train, samples_evaluate)
    backend.release_model(model)
    pruned = reporter is not None and reporter.pruned
    return _measure(backend, analysis, functions, trained, arrays, splits, splitset, timings, pruned)


def _train(backend: Backend, analysis: AnalysisType, functions: dict[str, Any], model: Any,
           label_shape: tuple[int, ...], hp: dict[str, Any], samples_train: dict,
           samples_evaluate: dict) -> tuple[Any, float]:
    import time

    from aiqc import functions as fn_tools

    loser = functions["fn_lose"](**hp) if functions.get("fn_lose") else backend.default_loss(analysis, label_shape)
    fn_optimize = functions.get("fn_optimize")
    if fn_optimize is None:
        optimizer = backend.default_optimizer(model, analysis, hp)
    elif fn_tools.optimize_takes_model(fn_optimize):
        optimizer = fn_optimize(model, **hp)
    else:
        optimizer = fn_optimize(**hp)

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
             timings: dict[str, float], pruned: bool) -> JobOutcome:
    """Predict every split with the trained model and compute its metrics."""
    import time

    spec = analysis.spec
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
        y_true, predictions = spec.truth(encoded_labels), spec.prediction_values(predictions, len(rows))
        outcome_metrics[split] = spec.compute_metrics(y_true, predictions, probabilities, labels=labels)
        outcome_predictions[split] = (rows, predictions, None if probabilities is None else np.asarray(probabilities))
    timings["predict"] = time.perf_counter() - tick

    history = backend.history(trained)
    tick = time.perf_counter()
    blob = backend.dump(trained)
    timings["dump"] = time.perf_counter() - tick
    return JobOutcome(outcome_metrics, history, outcome_predictions, blob, timings, pruned)
