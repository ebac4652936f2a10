"""Several queues side by side: ``aiqc.compare_queues([1, 2], metric=..., split=...)``, one row
per queue with its best and mean score on one metric and split and their spread; the data
behind :func:`aiqc.plots.plot_compare_queues` and the report's comparison section."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiqc.exceptions import NotFoundError, ValidationError
from aiqc.states import JobState

if TYPE_CHECKING:
    import pandas as pd

#: the columns of :func:`compare_queues`, in order
COLUMNS = ["queue_id", "name", "tags", "library", "analysis_type", "metric", "split", "direction", "jobs", "best",
           "best_job_id", "mean", "std", "min", "max", "best_params_mean"]


@dataclass(frozen=True)
class Comparison:
    """What :func:`comparison` read: the queues in the order given, the metric, split and
    direction they were compared on, the table, and each queue's scores (``{queue id:
    {"job_ids": [...], "scores": [...]}}``, in job id order)."""

    queues: list[Any]
    metric: str
    split: str
    direction: str
    frame: "pd.DataFrame"
    scores: dict[int, dict[str, list]]


def compare_queues(queues: list[Any], metric: str | None = None, split: str | None = None) -> "pd.DataFrame":
    """One row per queue, in the order given, scored on ``metric`` over ``split`` (both default
    to the first queue's :attr:`~aiqc.orm.Queue.objective`; every queue must measure that
    metric, whatever its analysis type).

    ``queues`` is a list of Queue objects or queue ids, each once. Columns: ``queue_id``,
    ``name``, ``tags``, ``library``, ``analysis_type``, ``metric``, ``split``, ``direction``
    (``'maximize'`` or ``'minimize'``), ``jobs`` (the queue's COMPLETE jobs with a value of
    the metric on the split; undefined values are left out, as :meth:`~aiqc.orm.Queue.best_job`
    leaves them), ``best`` (the best of those values by the direction) and ``best_job_id``
    (its job; ties go to the lowest id), ``mean``, ``std`` (sample, ddof=1: NaN for one job),
    ``min`` and ``max`` over those jobs, and ``best_params_mean``: the best mean over the repeats
    and folds of one hyperparameter combination (:meth:`~aiqc.orm.Queue.best_params`'s
    combination). A queue with no COMPLETE job yet (still running) has ``jobs`` 0 and NaN
    scores. Two queries, whatever the number of queues and jobs."""
    return comparison(queues, metric, split).frame


def comparison(queues: list[Any], metric: str | None = None, split: str | None = None) -> Comparison:
    """:func:`compare_queues`'s checks and reads: the table and each queue's scores."""
    import numpy as np
    import pandas as pd

    resolved = resolve_queues(queues)
    metric, split, direction = _objective(resolved, metric, split)
    rows = _scores(resolved, metric, split)
    scores = pd.DataFrame(rows, columns=["queue_id", "job_id", "hyperparamset", "value"])
    scores = scores[scores["value"].astype("float64").notna()]  # NaN (PostgreSQL keeps it; SQLite stores NULL)
    minimize = direction == "minimize"
    records, per_queue = [], {}
    grouped = dict(tuple(scores.groupby("queue_id", sort=False)))
    for queue in resolved:
        experiment = queue.experiment
        group = grouped.get(queue.id, scores.iloc[:0])
        values = group["value"].astype("float64").reset_index(drop=True)
        job_ids = group["job_id"].astype("int64").reset_index(drop=True)
        per_queue[queue.id] = {"job_ids": job_ids.tolist(), "scores": values.tolist()}
        record = dict(queue_id=queue.id, name=experiment.name, tags=list(experiment.tags or []),
                      library=experiment.library.value, analysis_type=experiment.analysis_type.value, metric=metric,
                      split=split, direction=direction, jobs=len(values))
        if len(values):
            at = int(values.idxmin() if minimize else values.idxmax())  # first of equals: the lowest job id
            means = group.groupby("hyperparamset", sort=False)["value"].mean()
            record.update(best=float(values[at]), best_job_id=int(job_ids[at]), mean=float(values.mean()),
                          std=float(values.std(ddof=1)), min=float(values.min()), max=float(values.max()),
                          best_params_mean=float(means.min() if minimize else means.max()))
        else:
            record.update(best=np.nan, best_job_id=None, mean=np.nan, std=np.nan, min=np.nan, max=np.nan,
                          best_params_mean=np.nan)
        records.append(record)
    frame = pd.DataFrame(records, columns=COLUMNS)
    frame = frame.astype({"queue_id": "int64", "jobs": "int64", "best_job_id": "Int64",
                          **{c: "float64" for c in ("best", "mean", "std", "min", "max", "best_params_mean")}})
    return Comparison(resolved, metric, split, direction, frame, per_queue)


def resolve_queues(queues: Any, parameter: str = "queues") -> list[Any]:
    """The Queue records (each with its experiment, read in one query) of ``queues``, a list
    of Queue objects or queue ids, in the order given. A ValidationError naming ``parameter``
    for anything else, an empty list or a queue given twice; a NotFoundError for an id that
    does not exist."""
    from aiqc.database import ensure_setup
    from aiqc.orm import Experiment, Queue

    if not isinstance(queues, (list, tuple)):
        raise ValidationError.expected(parameter, "a list of Queue objects or queue ids", queues)
    if not queues:
        raise ValidationError.expected(parameter, "at least one Queue or queue id", queues)
    ids = []
    for position, item in enumerate(queues):
        if isinstance(item, Queue) and item.id is not None:
            ids.append(int(item.id))
        elif isinstance(item, numbers.Integral) and not isinstance(item, bool):
            ids.append(int(item))
        else:
            raise ValidationError.expected(f"{parameter}[{position}]", "a Queue or a queue id (int)", item)
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValidationError(f"{parameter}: expected each queue once; received queue "
                              f"{', '.join(map(str, repeated))} more than once.")
    ensure_setup()
    found = {q.id: q for q in Queue.select(Queue, Experiment).join(Experiment).where(Queue.id.in_(ids))}
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFoundError(f"Queue id={missing[0]!r} does not exist." if len(missing) == 1
                            else f"Queue ids {missing!r} do not exist.")
    return [found[i] for i in ids]


def queue_label(queue: Any) -> str:
    """How a chart names a queue: ``'3: name'``, or ``'queue 3'`` when it has no name."""
    name = queue.name
    return f"{queue.id}: {name}" if name else f"queue {queue.id}"


def _objective(queues: list[Any], metric: Any, split: Any) -> tuple[str, str, str]:
    """(metric, split, direction) checked against every queue: both default to the first
    queue's objective; every queue must measure the metric and agree on its direction."""
    from aiqc.data.split import SPLITS

    default_metric, default_split = queues[0].objective
    if metric is None:
        metric = default_metric
    elif not isinstance(metric, str):
        raise ValidationError.expected("metric", "a metric name (str)", metric)
    if split is None:
        split = default_split
    elif split not in SPLITS:
        raise ValidationError.expected("split", f"one of {list(SPLITS)!r}", split)
    directions: dict[str, list[int]] = {}
    for queue in queues:
        metric_set = queue.experiment.metric_set
        if metric not in metric_set.names:
            named = f" ({queue.name})" if queue.name else ""
            raise ValidationError(f"metric: expected a metric every queue measures; queue {queue.id}{named} measures "
                                  f"{list(metric_set.names)!r}; received {metric!r}.")
        directions.setdefault(metric_set.direction(metric), []).append(queue.id)
    if len(directions) > 1:
        sides = "; ".join(f"queues {ids} {direction} it" for direction, ids in directions.items())
        raise ValidationError(f"metric: expected queues that agree on the direction of {metric!r}; {sides}.")
    return metric, split, next(iter(directions))


def _scores(queues: list[Any], metric: str, split: str) -> list[tuple]:
    """``(queue id, job id, hyperparamset id, value)`` of ``metric`` on ``split`` of every
    COMPLETE job of ``queues`` with a value, in job id order: one query."""
    from aiqc.orm import Job, Metric

    query = (Metric.select(Job.queue, Job.id, Job.hyperparamset, Metric.value).join(Job)
             .where(Job.queue.in_([q.id for q in queues]) & (Job.state == JobState.COMPLETE)
                    & (Metric.split == split) & (Metric.name == metric) & Metric.value.is_null(False))
             .order_by(Job.id))
    return Metric._meta.database.execute(query).fetchall()
