"""``aiqc.Experiment.make``: validate the user's functions and grid, then store the
experiment, its hyperparameter combinations, a Queue and its Jobs in one transaction."""

from __future__ import annotations

import itertools
import json
import logging
import math
import numbers
import os
import secrets
from typing import Any, Iterable, Iterator

from aiqc.analysis import AnalysisType
from aiqc.exceptions import ValidationError
from aiqc.tags import check_tags, check_text

logger = logging.getLogger(__name__)

#: jobs an ``Experiment.make`` stores at most unless ``max_jobs=`` says otherwise (None: no bound)
DEFAULT_MAX_JOBS = 100_000
#: jobs (and their combinations) written per ``insert_many``: what a make holds in memory at once
BATCH_JOBS = 1_000


def check_hyperparameters(hyperparameters: Any, sampled: bool) -> dict[str, Any]:
    """A dict of name -> non-empty list of JSON values (or, when sampled, a distribution). A
    single value (a number, string, bool or None) is taken as the one value of its list."""
    from aiqc.search import is_distribution

    if hyperparameters is None:
        return {}
    if not isinstance(hyperparameters, dict):
        raise ValidationError.expected("hyperparameters", "None or a dict of {name: [values]}", hyperparameters)
    checked = {}
    for name, values in hyperparameters.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValidationError.expected("hyperparameters", "keys that are valid Python identifiers", name)
        if is_distribution(values):
            if not sampled:
                raise ValidationError(
                    f"hyperparameters[{name!r}]: expected a list with search strategy 'grid'; received {values!r}. "
                    "Pass search=aiqc.search.Search(strategy='random' | 'bayesian' | 'gp', n_trials=...)."
                )
            checked[name] = values
            continue
        if values is None or isinstance(values, (str, numbers.Number)):  # one fixed value
            values = [values]
        if not isinstance(values, (list, tuple)) or len(values) == 0:
            raise ValidationError.expected(f"hyperparameters[{name!r}]", "a non-empty list of values (or one value)",
                                           values)
        try:
            json.dumps(list(values), allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValidationError.expected(
                f"hyperparameters[{name!r}]", "values that can be stored as JSON (numbers, strings, bools, None, lists)",
                values) from error
        checked[name] = values
    return checked


def expand_grid(hyperparameters: Any) -> Iterator[dict[str, Any]]:
    """Every combination of a ``{name: [values]}`` grid, in a stable order, generated lazily
    (one at a time: memory does not grow with the grid)."""
    grid = check_hyperparameters(hyperparameters, sampled=False)
    names = list(grid)
    return (dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names)))


def check_max_jobs(max_jobs: Any) -> int | None:
    """``max_jobs`` as an int >= 1, or None (no bound)."""
    if max_jobs is None:
        return None
    if isinstance(max_jobs, bool) or not isinstance(max_jobs, numbers.Integral) or max_jobs < 1:
        raise ValidationError.expected("max_jobs", "None (no bound) or an integer >= 1", max_jobs)
    return int(max_jobs)


def _powers(sizes: list[int]) -> str:
    """``[10, 10, 3]`` -> ``'10^2 x 3'``: a grid's list lengths as a product (lists of one value left out)."""
    counts: dict[int, int] = {}
    for size in sizes:
        if size > 1:
            counts[size] = counts.get(size, 0) + 1
    return " x ".join(f"{size:,}^{count}" if count > 1 else f"{size:,}" for size, count in counts.items()) or "1"


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def check_job_count(grid: dict[str, Any], search: Any, repeat_count: int, fold_count: int,
                    max_jobs: int | None) -> int:
    """The jobs a make will store (combinations, or a sampled search's ``n_trials``, x repeats
    x folds), computed from the sizes alone before anything is expanded; a ValidationError
    when more than ``max_jobs`` (None: no bound)."""
    if search is not None and search.samples:
        parameter, trials = "search.n_trials", int(search.n_trials)
        factor = f"n_trials={trials:,}"
        advice = "Lower search.n_trials, or pass max_jobs=... (None: no bound)."
    else:
        parameter, trials = "hyperparameters", math.prod(len(values) for values in grid.values())
        shown = _powers([len(values) for values in grid.values()])
        factor = f"{shown} combination{'' if trials == 1 else 's'}"
        advice = ("Narrow the grid, use search=Search('random', n_trials=...), or pass max_jobs=... "
                  "(None: no bound).")
    count = trials * repeat_count * fold_count
    if max_jobs is not None and count > max_jobs:
        raise ValidationError(
            f"{parameter}: expected at most max_jobs={max_jobs:,} jobs; received {factor} x "
            f"{_plural(repeat_count, 'repeat')} x {_plural(fold_count, 'fold')} = {count:,}. {advice}"
        )
    return count


def check_seed(seed: Any, parameter: str = "seed") -> int:
    """``seed`` as an int in [0, 2**31 - 2]; one is drawn when None."""
    if seed is None:
        return secrets.randbelow(2**31 - 1)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**31 - 1:
        raise ValidationError.expected(parameter, "None or an integer in [0, 2**31 - 2]", seed)
    return int(seed)


def default_split(splitset: Any, hide_test: bool) -> str:
    """The split jobs are ranked on when none is named: validation (or the folds' held-out
    rows) where there is one, else test."""
    return "validation" if splitset.has_validation or hide_test else "test"


def resolve_objective(search: Any, metric: Any, seed: Any, metric_set: Any, has_distributions: bool,
                      split: str) -> tuple[Any, str, str, int]:
    """(the checked search, objective metric, objective split, queue seed). The search's
    metric and seed are the queue's: naming different ones in ``metric=`` / ``seed=`` is an error."""
    import dataclasses

    if metric is not None:
        metric = metric_set.check(metric, "metric")
    if search is None:
        return None, metric or metric_set.default, split, check_seed(seed)
    for key, mine, theirs in (("metric", metric, search.metric), ("seed", seed, search.seed)):
        if mine is not None and theirs is not None and mine != theirs:
            raise ValidationError(f"{key}: expected None or the search's {key} {theirs!r} (one objective and one "
                                  f"seed per queue); received {mine!r}.")
    search_seed = check_seed(search.seed if search.seed is not None else seed, "search.seed")
    search = dataclasses.replace(search, metric=search.metric or metric, seed=search_seed)
    search = search.resolved(metric_set, has_distributions)
    return search, search.metric, search.split, search.seed


def check_positive_class(positive_class: Any, analysis: AnalysisType, splitset: Any) -> None:
    """``positive_class`` must be None, or one of the classes of a binary label."""
    if positive_class is None:
        return
    if not analysis.spec.has_positive_class:
        raise ValidationError.expected("positive_class", f"None for analysis_type {analysis.value!r} "
                                       "(a positive class exists for two classes only)", positive_class)
    if positive_class not in splitset.class_names():
        raise ValidationError.expected("positive_class", f"None or one of the classes {splitset.class_names()!r}",
                                       positive_class)


def check_evaluation_splits(search: Any, splitset: Any, hide_test: bool) -> None:
    """The search's split must exist and must not be a hidden test split; ``hide_test`` needs
    a validation split or folds to evaluate on instead."""
    has_validation = splitset.has_validation
    if search is not None and search.split == "validation" and not has_validation:
        raise ValidationError.expected("search.split", f"'train' or 'test' (splitset {splitset.id} has no validation "
                                       "split or folds)", search.split)
    if search is not None and search.split == "test" and hide_test:
        raise ValidationError("search.split: expected a split other than 'test' with hide_test=True; received 'test'.")
    if hide_test and not has_validation:
        raise ValidationError(
            f"hide_test: expected False for splitset {splitset.id}, which has no validation split or folds "
            "to evaluate on instead; received True."
        )


def make_experiment(*, library: Any, analysis_type: Any, fn_build: Any, fn_train: Any, fn_lose: Any,
                    fn_optimize: Any, fn_predict: Any, repeat_count: Any, hyperparameters: Any, splitset_id: Any,
                    hide_test: Any, search: Any = None, name: Any = None, description: Any = None, tags: Any = None,
                    metrics: Any = None, metric: Any = None, seed: Any = None, positive_class: Any = None,
                    max_jobs: Any = DEFAULT_MAX_JOBS) -> Any:
    """Validate every argument of ``Experiment.make`` (see there), then store the experiment,
    its combinations, a Queue and its Jobs in one transaction; return the Queue. The job
    count is computed from the grid's sizes (nothing expanded) and bounded by ``max_jobs``;
    combinations are generated lazily and written in batches of :data:`BATCH_JOBS` jobs."""
    from aiqc import functions
    from aiqc import metrics as measuring
    from aiqc import search as searching
    from aiqc.backends import get_backend, parse_library
    from aiqc.database import ensure_setup
    from aiqc.orm import Experiment, Fold, Queue, Splitset

    database = ensure_setup()
    backend = get_backend(library)
    library = parse_library(library)
    analysis = AnalysisType.parse(analysis_type)
    backend.check_installed()
    if isinstance(repeat_count, bool) or not isinstance(repeat_count, numbers.Integral) or repeat_count < 1:
        raise ValidationError.expected("repeat_count", "an integer >= 1", repeat_count)
    max_jobs = check_max_jobs(max_jobs)
    if not isinstance(hide_test, bool):
        raise ValidationError.expected("hide_test", "True or False", hide_test)
    for key, value in (("name", name), ("description", description)):
        check_text(value, key)
    tags = check_tags(tags)
    search = searching.Search.parse(search)
    sampled = search is not None and search.samples
    grid = check_hyperparameters(hyperparameters, sampled)
    custom = measuring.parse_custom(metrics, reserved=analysis.spec.metrics)
    metric_set = analysis.spec.metric_set.extended({n: lower for n, (_, lower) in custom.items()})
    names = list(grid)
    user_functions = dict(fn_build=fn_build, fn_train=fn_train, fn_lose=fn_lose, fn_optimize=fn_optimize,
                          fn_predict=fn_predict)
    for fn_name, fn in user_functions.items():
        functions.check_function(fn_name, fn, names)
    functions.check_grid_keys(user_functions, names)  # hp['key'] reads of keys the grid lacks
    if isinstance(splitset_id, bool) or not isinstance(splitset_id, numbers.Integral):
        raise ValidationError.expected("splitset_id", "the integer id of a Splitset (splitset.id)", splitset_id)
    splitset = Splitset.get_or_none(Splitset.id == int(splitset_id))
    if splitset is None:
        raise ValidationError.expected("splitset_id", "the id of an existing Splitset", splitset_id)
    analysis.spec.check_label(splitset.label)
    check_positive_class(positive_class, analysis, splitset)
    search, objective_metric, objective_split, seed = resolve_objective(
        search, metric, seed, metric_set, any(searching.is_distribution(v) for v in grid.values()),
        default_split(splitset, hide_test))
    check_evaluation_splits(search, splitset, hide_test)
    folds = list(splitset.folds.order_by(Fold.fold_index)) or [None]
    job_count = check_job_count(grid, search, int(repeat_count), len(folds), max_jobs)  # before expanding anything
    check_model_output(backend, analysis, splitset, fn_build, first_sample(grid),  # = the grid's first combination
                       check_width=fn_predict is None)  # fn_build once; its output width against the label
    blob = functions.dumps(user_functions)
    sources = {k: functions.source_text(v) for k, v in user_functions.items() if v is not None}
    sources.update({f"metrics.{n}": functions.source_text(fn) for n, (fn, _) in custom.items()})

    with database.atomic():
        experiment = Experiment.create(
            splitset=splitset, library=library, analysis_type=analysis, repeat_count=int(repeat_count),
            hide_test=hide_test, hyperparameters=searching.dumps_grid(grid), functions=blob, sources=sources,
            search=None if search is None else search.to_json(), name=name, description=description, tags=tags,
            seed=seed, objective_metric=objective_metric, objective_split=objective_split,
            metric_functions=functions.dumps({n: fn for n, (fn, _) in custom.items()}) if custom else None,
            metric_directions={n: metric_set.direction(n) for n in custom} or None,
            positive_class=positive_class,
        )
        queue = Queue.create(experiment=experiment)
        if not sampled:  # a sampled search adds its trials one by one as workers claim jobs
            write_trials(experiment, queue, 0, expand_grid(grid), seed, folds)
    logger.info("queue %s: %s", queue.id, f"{job_count:,} jobs ({job_count // (int(repeat_count) * len(folds)):,} "
                f"combinations x {repeat_count} repeats x {len(folds)} fold(s))" if not sampled
                else f"{search.strategy} search of {search.n_trials} trials")
    return queue


def add_trial(experiment: Any, queue: Any, index: int, combination: dict, seed: int | None) -> Any:
    """A Hyperparamset and its jobs (one per repeat x fold), QUEUED: one trial of a sampled
    search, in the caller's transaction. Raises ``peewee.IntegrityError`` (whatever the
    database's driver) when the experiment has a trial ``index`` already: another worker
    added it first."""
    from aiqc.orm import Fold, Hyperparamset

    folds = list(experiment.splitset.folds.order_by(Fold.fold_index)) or [None]
    (hyperparamset_id,) = _write_batch(experiment, queue, index, [combination], seed, folds)
    return Hyperparamset(id=hyperparamset_id, experiment=experiment, index=index, hyperparameters=combination)


def write_trials(experiment: Any, queue: Any, start: int, combinations: Iterable[dict[str, Any]],
                 seed: int | None, folds: list[Any]) -> int:
    """Hyperparamsets numbered ``start``, ``start + 1``, ... and their jobs (repeat x fold each,
    QUEUED), written with ``insert_many`` about :data:`BATCH_JOBS` jobs at a time: ``combinations``
    is consumed lazily, so memory is that of one batch whatever the grid. Runs in the caller's
    transaction. Returns the number of combinations written."""
    per_batch = max(1, BATCH_JOBS // (experiment.repeat_count * len(folds)))
    combinations = iter(combinations)
    index = start
    while batch := list(itertools.islice(combinations, per_batch)):
        _write_batch(experiment, queue, index, batch, seed, folds)
        index += len(batch)
    return index - start


def _write_batch(experiment: Any, queue: Any, start: int, batch: list[dict[str, Any]], seed: int | None,
                 folds: list[Any]) -> list[int]:
    """Insert ``batch`` as Hyperparamsets ``start``.. and their jobs; return the Hyperparamset ids."""
    from aiqc.orm import Hyperparamset, Job
    from aiqc.orm.base import insert_rows
    from aiqc.search import job_seed
    from aiqc.states import JobState

    to_json = Hyperparamset.hyperparameters.db_value
    insert_rows(Hyperparamset, [Hyperparamset.experiment, Hyperparamset.index, Hyperparamset.hyperparameters],
                 [(experiment.id, index, to_json(combination)) for index, combination in enumerate(batch, start)])
    stop = start + len(batch) - 1
    ids = dict(Hyperparamset.select(Hyperparamset.index, Hyperparamset.id)
               .where((Hyperparamset.experiment == experiment.id) & Hyperparamset.index.between(start, stop))
               .tuples())
    hyperparamset_ids = [ids[index] for index in range(start, stop + 1)]
    fold_keys = [(None, 0) if fold is None else (fold.id, fold.fold_index) for fold in folds]
    queued = Job.state.db_value(JobState.QUEUED)
    rows = [(queue.id, hyperparamset_id, fold_id, repeat,
             secrets.randbelow(2**31 - 1) if seed is None else job_seed(seed, index, repeat, fold_index), queued, 0)
            for index, hyperparamset_id in enumerate(hyperparamset_ids, start)
            for repeat in range(experiment.repeat_count) for fold_id, fold_index in fold_keys]
    insert_rows(Job, [Job.queue, Job.hyperparamset, Job.fold, Job.repeat_index, Job.seed, Job.state, Job.attempts],
                 rows)
    return hyperparamset_ids


def first_sample(grid: dict[str, Any]) -> dict[str, Any]:
    """A combination of a sampled search's space to try ``fn_build`` with at make: each list's
    first value, each Categorical's first choice, each Int's and Float's low bound."""
    from aiqc.search import Categorical, is_distribution

    return {name: (value.choices[0] if isinstance(value, Categorical) else value.low) if is_distribution(value)
            else value[0] for name, value in grid.items()}


def check_model_output(backend: Any, analysis: AnalysisType, splitset: Any, fn_build: Any,
                       combination: dict[str, Any], check_width: bool = True) -> None:
    """Call ``fn_build`` once as the first job will (the encoded training split's feature and
    label shapes, ``combination``) and check that it returns a model of the library whose
    output width suits the analysis type and the label (``check_width``: with the default
    ``fn_predict``). Skipped where the library is not installed; imports only that library."""
    import math

    if not backend.installed():
        return
    backend.configure(threads=os.cpu_count(), seed=None)  # as run_jobs() will: caps apply before a runtime starts
    samples = splitset.samples("train")
    features_shape, label_shape = backend.sample_shape(samples["features"].shape[1:]), samples["labels"].shape[1:]
    try:
        model = fn_build(features_shape, label_shape, **combination)
    except Exception as error:
        raise ValidationError(f"fn_build: calling it with the first combination {combination!r} failed: "
                              f"{type(error).__name__}: {error}") from error
    if not backend.is_model(model):
        raise ValidationError(
            f"fn_build: expected a {backend.model_description} for library={backend.name!r}; received "
            f"{type(model).__module__}.{type(model).__qualname__} (from the first combination {combination!r})."
        )
    if not check_width:
        return
    try:
        width = backend.output_width(model, features_shape)
    except Exception as error:
        raise ValidationError(
            f"fn_build: the model built with the first combination {combination!r} cannot take a batch of "
            f"zeros with features_shape {features_shape}: {type(error).__name__}: {error}"
        ) from error
    analysis.spec.check_output_width(width, math.prod(label_shape), splitset.label.unique_count)
