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


def expand_grid(hyperparameters: Any) -> list[dict[str, Any]]:
    """Every combination of a ``{name: [values]}`` grid, in a stable order."""
    if hyperparameters is None:
        return [{}]
    if not isinstance(hyperparameters, dict):
        raise ValidationError.expected("hyperparameters", "None or a dict of {name: [values]}", hyperparameters)
    for name, values in hyperparameters.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValidationError.expected("hyperparameters", "keys that are valid Python identifiers", name)
        if not isinstance(values, (list, tuple)) or len(values) == 0:
            raise ValidationError.expected(f"hyperparameters[{name!r}]", "a non-empty list of values", values)
        try:
            json.dumps(list(values), allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValidationError.expected(
                f"hyperparameters[{name!r}]", "values that can be stored as JSON (numbers, strings, bools, None, lists)",
                values) from error
    names = list(hyperparameters)
    return [dict(zip(names, combo)) for combo in itertools.product(*(hyperparameters[n] for n in names))]


def check_analysis_against_label(analysis: AnalysisType, label: Any) -> None:
    """The analysis type must agree with what the label holds."""
    import pandas as pd

    numeric = pd.api.types.is_numeric_dtype(label.dtype) and not pd.api.types.is_bool_dtype(label.dtype)
    if analysis is AnalysisType.REGRESSION and not numeric:
        raise ValidationError(
            f"analysis_type: expected a classification type for the {label.dtype} label {label.column!r} "
            f"(classes {label.classes[:5]!r}); received 'regression'."
        )
    if analysis.is_classification and not label.categorical:
        raise ValidationError(
            f"analysis_type: expected 'regression' for the continuous label {label.column!r} (dtype "
            f"{label.dtype}); received {analysis.value!r}."
        )
    if analysis is AnalysisType.CLASSIFICATION_BINARY and label.unique_count != 2:
        raise ValidationError(
            f"analysis_type: expected 'classification_multi' for the label {label.column!r} with "
            f"{label.unique_count} classes; received 'classification_binary', which needs exactly 2."
        )


def make_experiment(*, library, analysis_type, fn_build, fn_train, fn_lose, fn_optimize, fn_predict,
                    repeat_count, hyperparameters, splitset_id, hide_test, name=None, description=None):
    from aiqc import functions
    from aiqc.backends import get_backend
    from aiqc.database import ensure_setup
    from aiqc.orm import Experiment, Fold, Hyperparamset, Job, Queue, Splitset

    database = ensure_setup()
    backend = get_backend(library)
    analysis = AnalysisType.parse(analysis_type)
    backend.check_installed()
    if isinstance(repeat_count, bool) or not isinstance(repeat_count, numbers.Integral) or repeat_count < 1:
        raise ValidationError.expected("repeat_count", "an integer >= 1", repeat_count)
    if not isinstance(hide_test, bool):
        raise ValidationError.expected("hide_test", "True or False", hide_test)
    for key, value in (("name", name), ("description", description)):
        if value is not None and not isinstance(value, str):
            raise ValidationError.expected(key, "None or a string", value)
    grid = expand_grid(hyperparameters)
    names = list(grid[0])
    user_functions = dict(fn_build=fn_build, fn_train=fn_train, fn_lose=fn_lose, fn_optimize=fn_optimize,
                          fn_predict=fn_predict)
    for fn_name, fn in user_functions.items():
        functions.check_function(fn_name, fn, names)
    if isinstance(splitset_id, bool) or not isinstance(splitset_id, numbers.Integral):
        raise ValidationError.expected("splitset_id", "the integer id of a Splitset (splitset.id)", splitset_id)
    splitset = Splitset.get_or_none(Splitset.id == int(splitset_id))
    if splitset is None:
        raise ValidationError.expected("splitset_id", "the id of an existing Splitset", splitset_id)
    check_analysis_against_label(analysis, splitset.label)
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
            splitset=splitset, library=backend.name, analysis_type=analysis.value, repeat_count=int(repeat_count),
            hide_test=hide_test, hyperparameters=hyperparameters or {}, functions=blob, sources=sources,
            name=name, description=description,
        )
        queue = Queue.create(experiment=experiment)
        rows = []
        for index, combination in enumerate(grid):
            hyperparamset = Hyperparamset.create(experiment=experiment, index=index, hyperparameters=combination)
            for repeat_index in range(int(repeat_count)):
                for fold in folds:
                    rows.append(dict(queue=queue, hyperparamset=hyperparamset, fold=fold, repeat_index=repeat_index,
                                     seed=secrets.randbelow(2**31 - 1)))
        for start in range(0, len(rows), 500):
            Job.insert_many(rows[start:start + 500]).execute()
    logger.info("queue %s: %d jobs (%d combinations x %d repeats x %d folds)", queue.id, len(rows), len(grid),
                repeat_count, len(folds) if folds != [None] else 1)
    return queue
