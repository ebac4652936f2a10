"""``aiqc.Experiment.make``: validate the user's functions and grid, then store the
experiment, its hyperparameter combinations, a Queue and its Jobs in one transaction."""

from __future__ import annotations

import itertools
import json
import logging
import numbers
import secrets
from typing import Any

from aiqc.analysis import AnalysisType
from aiqc.exceptions import ValidationError

logger = logging.getLogger(__name__)


def check_hyperparameters(hyperparameters: Any, sampled: bool) -> dict[str, Any]:
    """A dict of name -> non-empty list of JSON values (or, when sampled, a distribution)."""
    from aiqc.search import is_distribution

    if hyperparameters is None:
        return {}
    if not isinstance(hyperparameters, dict):
        raise ValidationError.expected("hyperparameters", "None or a dict of {name: [values]}", hyperparameters)
    for name, values in hyperparameters.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValidationError.expected("hyperparameters", "keys that are valid Python identifiers", name)
        if is_distribution(values):
            if not sampled:
                raise ValidationError(
                    f"hyperparameters[{name!r}]: expected a list with search strategy 'grid'; received {values!r}. "
                    "Pass search=aiqc.search.Search(strategy='random' | 'bayesian' | 'gp', n_trials=...)."
                )
            continue
        if not isinstance(values, (list, tuple)) or len(values) == 0:
            raise ValidationError.expected(f"hyperparameters[{name!r}]", "a non-empty list of values", values)
        try:
            json.dumps(list(values), allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValidationError.expected(
                f"hyperparameters[{name!r}]", "values that can be stored as JSON (numbers, strings, bools, None, lists)",
                values) from error
    return dict(hyperparameters)


def expand_grid(hyperparameters: Any) -> list[dict[str, Any]]:
    """Every combination of a ``{name: [values]}`` grid, in a stable order."""
    grid = check_hyperparameters(hyperparameters, sampled=False)
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def make_experiment(*, library: Any, analysis_type: Any, fn_build: Any, fn_train: Any, fn_lose: Any,
                    fn_optimize: Any, fn_predict: Any, repeat_count: Any, hyperparameters: Any, splitset_id: Any,
                    hide_test: Any, search: Any = None, name: Any = None, description: Any = None) -> Any:
    """Validate every argument of ``Experiment.make`` (see there), then store the experiment,
    its combinations, a Queue and its Jobs in one transaction; return the Queue."""
    from aiqc import functions
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
    if not isinstance(hide_test, bool):
        raise ValidationError.expected("hide_test", "True or False", hide_test)
    for key, value in (("name", name), ("description", description)):
        if value is not None and not isinstance(value, str):
            raise ValidationError.expected(key, "None or a string", value)
    search = searching.Search.parse(search)
    sampled = search is not None and search.samples
    grid = check_hyperparameters(hyperparameters, sampled)
    if search is not None:
        search = search.resolved(analysis, any(searching.is_distribution(v) for v in grid.values()))
    combinations = [] if sampled else expand_grid(grid)
    names = list(grid)
    user_functions = dict(fn_build=fn_build, fn_train=fn_train, fn_lose=fn_lose, fn_optimize=fn_optimize,
                          fn_predict=fn_predict)
    for fn_name, fn in user_functions.items():
        functions.check_function(fn_name, fn, names)
    if isinstance(splitset_id, bool) or not isinstance(splitset_id, numbers.Integral):
        raise ValidationError.expected("splitset_id", "the integer id of a Splitset (splitset.id)", splitset_id)
    splitset = Splitset.get_or_none(Splitset.id == int(splitset_id))
    if splitset is None:
        raise ValidationError.expected("splitset_id", "the id of an existing Splitset", splitset_id)
    analysis.spec.check_label(splitset.label)
    if search is not None and search.split == "validation" and not splitset.fold_count and not splitset.count_validation:
        raise ValidationError.expected("search.split", f"'train' or 'test' (splitset {splitset.id} has no validation "
                                       "split or folds)", search.split)
    if search is not None and search.split == "test" and hide_test:
        raise ValidationError("search.split: expected a split other than 'test' with hide_test=True; received 'test'.")
    if hide_test and not splitset.fold_count and not splitset.count_validation:
        raise ValidationError(
            f"hide_test: expected False for splitset {splitset.id}, which has no validation split or folds "
            "to evaluate on instead; received True."
        )
    blob = functions.dumps(user_functions)
    sources = {k: functions.source_text(v) for k, v in user_functions.items() if v is not None}
    folds = list(splitset.folds.order_by(Fold.fold_index)) or [None]

    with database.atomic():
        experiment = Experiment.create(
            splitset=splitset, library=library, analysis_type=analysis, repeat_count=int(repeat_count),
            hide_test=hide_test, hyperparameters=searching.dumps_grid(grid), functions=blob, sources=sources,
            search=None if search is None else search.to_json(), name=name, description=description,
        )
        queue = Queue.create(experiment=experiment)
        seed = None if search is None else search.seed
        for index, combination in enumerate(combinations):
            add_trial(experiment, queue, index, combination, seed)
    logger.info("queue %s: %s", queue.id, f"{len(combinations)} combinations x {repeat_count} repeats x "
                f"{len(folds)} fold(s)" if not sampled else f"{search.strategy} search of {search.n_trials} trials")
    return queue


def add_trial(experiment: Any, queue: Any, index: int, combination: dict, seed: int | None) -> Any:
    """A Hyperparamset and its jobs (one per repeat x fold), QUEUED."""
    from aiqc.orm import Fold, Hyperparamset, Job
    from aiqc.search import job_seed

    hyperparamset = Hyperparamset.create(experiment=experiment, index=index, hyperparameters=combination)
    folds = list(experiment.splitset.folds.order_by(Fold.fold_index)) or [None]
    rows = [dict(queue=queue, hyperparamset=hyperparamset, fold=fold, repeat_index=repeat,
                 seed=secrets.randbelow(2**31 - 1) if seed is None
                 else job_seed(seed, index, repeat, 0 if fold is None else fold.fold_index))
            for repeat in range(experiment.repeat_count) for fold in folds]
    for start in range(0, len(rows), 500):
        Job.insert_many(rows[start:start + 500]).execute()
    return hyperparamset
