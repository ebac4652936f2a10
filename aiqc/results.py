"""Queries over past jobs, as DataFrames: one row per job x split, aggregates per
hyperparameter combination, the best job, per-epoch history, and listings."""

from __future__ import annotations

import contextlib
import gc
import itertools
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from aiqc.exceptions import ValidationError
from aiqc.states import JobState

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

SPLIT_ORDER = {"train": 0, "validation": 1, "test": 2}
#: the columns of a :func:`metrics_to_pandas` frame that are neither hyperparameters nor metrics
BOOKKEEPING_COLUMNS = ("job_id", "hyperparamset", "repeat", "fold", "split", "state", "seconds")


def hyperparameter_columns(frame: "pd.DataFrame", metric_names: Iterable[str]) -> list[str]:
    """The hyperparameter columns of a :func:`metrics_to_pandas` frame of ``metric_names``, in order."""
    skip = {*BOOKKEEPING_COLUMNS, *metric_names}
    return [column for column in frame.columns if column not in skip]


def metrics_to_pandas(queue: Any, selected_metrics: list[str] | None = None, sort_by: str | list[str] | None = None,
                      ascending: bool = False, states: list[str] | None = None) -> "pd.DataFrame":
    """One row per job x split of the queue's measured jobs: job id, repeat, fold, split,
    each hyperparameter, each metric, state and seconds. ``states`` keeps only jobs in
    those states (COMPLETE, PRUNED); by default both."""
    return _wide(queue, selected_metrics, sort_by, ascending, states)[0]


def _wide(queue: Any, selected_metrics: list[str] | None = None, sort_by: str | list[str] | None = None,
          ascending: bool = False, states: list[str] | None = None) -> tuple["pd.DataFrame", list[str]]:
    """(:func:`metrics_to_pandas`'s frame, the hyperparameter names) in four queries whatever
    the number of jobs: the experiment, the metrics pivoted per job x split in SQL, the jobs,
    and the hyperparameter combinations (each decoded once). The frame is built column-wise:
    each job's attributes computed once per job and spread over its splits by position."""
    if states is not None:
        states = JobState.parse_many(states)
    experiment = queue.experiment
    metric_names = list(experiment.metric_set.names)
    if selected_metrics is not None:
        if isinstance(selected_metrics, str):
            selected_metrics = [selected_metrics]
        unknown = [m for m in selected_metrics if m not in metric_names]
        if unknown:
            raise ValidationError.expected("selected_metrics", f"names among {metric_names!r}", selected_metrics)
        metric_names = list(selected_metrics)
    wide, names = _assembled(queue, experiment, metric_names, states)
    if sort_by is not None and len(wide):  # nothing measured: the empty frame, whatever sort_by names
        keys = [sort_by] if isinstance(sort_by, str) else list(sort_by)
        unknown = [k for k in keys if k not in wide.columns]
        if unknown:
            raise ValidationError.expected("sort_by", f"column names among {list(wide.columns)!r}", sort_by)
        wide = wide.sort_values(keys, ascending=ascending, kind="stable").reset_index(drop=True)
    return wide, names


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off in the block (back on after it, when it was on):
    building a frame from tens of thousands of fetched rows otherwise sets off full collections
    that walk every object of the process (pandas' included): about 0.03 s of metrics_to_pandas
    over 10,000 jobs. The block makes no reference cycles worth collecting early."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_collector_paused()
def _assembled(queue: Any, experiment: Any, metric_names: list[str],
               states: list[JobState] | None) -> tuple["pd.DataFrame", list[str]]:
    """:func:`_wide`'s frame before ``sort_by``, and the hyperparameter names. Every row,
    tuple and array it makes is freed as it returns, before the garbage collector is back on."""
    import numpy as np
    import pandas as pd

    rows = _pivoted_metrics(queue, metric_names, states)
    combinations = _combinations(experiment)
    names = _first_seen_names(combinations.values())
    columns = ["job_id", "hyperparamset", "repeat", "fold", "split", *names, *metric_names, "state", "seconds"]
    if not rows:
        return pd.DataFrame(columns=columns), names
    # one record per row: job id, split, one float per metric name (NULL, i.e. None: NaN)
    table = np.array(rows, dtype=[("job", np.int64), ("split", object),
                                  *((f"value{i}", np.float64) for i in range(len(metric_names)))])
    del rows
    job_id, splits = table["job"], table["split"]
    labels = sorted(set(splits), key=lambda s: (SPLIT_ORDER.get(s, len(SPLIT_ORDER)), s))  # train, validation, test
    codes = {split: code for code, split in enumerate(labels)}
    split_code = np.fromiter(map(codes.__getitem__, splits), dtype=np.intp, count=len(table))
    order = np.lexsort((split_code, job_id))  # by job, then split
    job_id = job_id[order]
    jobs, positions, found = _measured_jobs(queue, states, job_id, combinations, names)
    if not found.all():  # a job deleted, or moved out of ``states``, between the two queries
        order, job_id, positions = order[found], job_id[found], positions[found]
        if not len(order):
            return pd.DataFrame(columns=columns), names
    data = {"job_id": job_id, "split": pd.Series(labels).array.take(split_code[order]),
            **{name: table[f"value{i}"][order] for i, name in enumerate(metric_names)},
            **{name: column.array.take(positions) for name, column in jobs.items()}}
    return pd.DataFrame({name: data[name] for name in columns}, columns=columns), names


def _table(rows: list[tuple], width: int) -> "np.ndarray":
    """Fetched ``rows`` of ``width`` values as a 2-D object array, the values as they are."""
    import numpy as np

    return np.fromiter(itertools.chain.from_iterable(rows), dtype=object,
                       count=len(rows) * width).reshape(len(rows), width)


def _queue_jobs(queue: Any, states: list[JobState] | None) -> Any:
    """The ids of the queue's jobs (in ``states`` when given), as a subquery."""
    from aiqc.orm import Job

    query = Job.select(Job.id).where(Job.queue == queue)
    return query if states is None else query.where(Job.state.in_(states))


def _pivoted_metrics(queue: Any, metric_names: list[str], states: list[JobState] | None) -> list[tuple]:
    """:func:`_pivot_query`'s rows, read from the cursor unconverted, in no particular order."""
    from aiqc.orm import Metric

    return Metric._meta.database.execute(_pivot_query(queue, metric_names, states)).fetchall()


def _pivot_query(queue: Any, metric_names: list[str], states: list[JobState] | None) -> Any:
    """``(job id, split, *one value per metric name)`` per job x split with metrics, pivoted
    in SQL (``SUM(value) FILTER (WHERE name = ...)``: SQLite >= 3.30, PostgreSQL >= 9.4; it
    steps one aggregate per row where ``SUM(CASE ...)`` steps all). A job has at most one
    value per split and name (the unique index), so the sum is that value (NULL: none or
    NULL); SUM steps cheaper than MAX (no collation, no comparison). It reads only the
    covering index ``metric(job, split, name, value)`` (SQLite: ``USING COVERING INDEX``)."""
    import peewee as pw

    from aiqc.orm import Metric

    pivot = [pw.fn.SUM(Metric.value).filter(Metric.name == name) for name in metric_names]
    return (Metric.select(Metric.job, Metric.split, *pivot)
            .where(Metric.job.in_(_queue_jobs(queue, states)))
            .group_by(Metric.job, Metric.split))


def _combinations(experiment: Any) -> dict[int, tuple[int, dict]]:
    """``{hyperparamset id: (index, {name: value})}`` of the experiment, in id order: one
    query read from the cursor, every combination's JSON decoded once (in one document)."""
    from aiqc.orm import Hyperparamset

    query = (Hyperparamset.select(Hyperparamset.id, Hyperparamset.index, Hyperparamset.hyperparameters)
             .where(Hyperparamset.experiment == experiment).order_by(Hyperparamset.id))
    rows = Hyperparamset._meta.database.execute(query).fetchall()
    decoded = Hyperparamset.hyperparameters.python_value("[" + ",".join(text for _, _, text in rows) + "]")
    return {id_: (index, values) for (id_, index, _), values in zip(rows, decoded)}


def _first_seen_names(combinations: Any) -> list[str]:
    """Every hyperparameter name of ``(index, {name: value})`` pairs, in first-seen order."""
    return list(dict.fromkeys(itertools.chain.from_iterable(values for _, values in combinations)))


def _measured_jobs(queue: Any, states: list[JobState] | None, measured: "np.ndarray",
                   combinations: dict[int, tuple[int, dict]],
                   names: list[str]) -> tuple[dict, "np.ndarray", "np.ndarray"]:
    """The jobs among ``measured`` (job ids, sorted), one value per job in id order:
    ``({column: Series}, the position of each of ``measured``'s ids among those jobs, whether
    it is there)``.
    Columns: hyperparamset index, repeat, fold index (Int64), state (its name), seconds and
    each hyperparameter in ``names``; each column's dtype is inferred from its values as
    a frame of the measured rows would infer it (the same values, each job once)."""
    import numpy as np
    import pandas as pd
    import peewee as pw

    from aiqc.orm import Fold, Job

    query = (Job.select(Job.id, Job.hyperparamset, Job.repeat_index, Fold.fold_index, Job.state, Job.seconds)
             .join(Fold, pw.JOIN.LEFT_OUTER).where(Job.queue == queue))
    if states is not None:
        query = query.where(Job.state.in_(states))
    table = _table(Job._meta.database.execute(query).fetchall(), 6)
    ids = table[:, 0].astype(np.int64)
    order = np.argsort(ids, kind="stable")
    kept = order[np.isin(ids[order], measured)]  # in id order
    ids = ids[kept]
    if not len(ids):
        return {}, np.zeros(len(measured), dtype=np.intp), np.zeros(len(measured), dtype=bool)
    positions = np.minimum(np.searchsorted(ids, measured), len(ids) - 1)
    _, hyperparamset_ids, repeats, folds, stored_states, seconds = (column.tolist() for column in table[kept].T)
    combination = [combinations[h] for h in hyperparamset_ids]
    hyperparameters = [values for _, values in combination]
    stored = list(set(stored_states))  # a few distinct texts: each checked and named once
    codes = {state: code for code, state in enumerate(stored)}
    state_codes = np.fromiter(map(codes.__getitem__, stored_states), dtype=np.intp, count=len(stored_states))
    columns = {"hyperparamset": pd.Series(np.array([index for index, _ in combination], dtype=np.int64)),
               "repeat": pd.Series(np.array(repeats, dtype=np.int64)),  # NOT NULL integers
               "fold": pd.Series(folds).astype("Int64"),
               # Series(list) infers as Series.map(lambda h: h.get(name)) would (NaN for a missing int, ...)
               **{name: pd.Series([values.get(name) for values in hyperparameters]) for name in names},
               "state": pd.Series([JobState(state).value for state in stored]).take(state_codes),
               "seconds": pd.Series(seconds)}
    return columns, positions, ids[positions] == measured


def metrics_aggregate(queue: Any, selected_metrics: list[str] | None = None,
                      stats: tuple[str, ...] = ("mean", "std", "min", "max")) -> "pd.DataFrame":
    """Per hyperparameter combination and split: ``stats`` of each metric across repeats
    and folds, plus how many jobs were measured (``job_count``)."""
    frame, names = _wide(queue, selected_metrics, states=[JobState.COMPLETE])
    metric_names = [c for c in frame.columns if c in set(selected_metrics or queue.experiment.metric_set.names)]
    if frame.empty:
        import pandas as pd

        return pd.DataFrame(columns=["hyperparamset", "split", *names, "job_count"])
    grouped = frame.groupby(["hyperparamset", "split"], sort=False)
    aggregated = grouped[metric_names].agg(list(stats))
    aggregated.columns = [f"{metric}_{stat}" for metric, stat in aggregated.columns]
    aggregated.insert(0, "job_count", grouped["job_id"].nunique())
    firsts = grouped[names].first() if names else None
    out = aggregated if firsts is None else firsts.join(aggregated)
    out = out.reset_index()
    return out.sort_values(["hyperparamset", "split"], key=lambda c: c.map(SPLIT_ORDER) if c.name == "split" else c,
                           kind="stable").reset_index(drop=True)


def objective(queue: Any, metric: str | None = None, split: str | None = None) -> tuple[Any, str, str]:
    """(the queue's metric set, ``metric``, ``split``) checked, each defaulting to the queue's
    objective: the search's metric and split, ``Experiment.make(metric=...)``, or accuracy /
    r2 on the validation split (test where there is none)."""
    experiment = queue.experiment
    metric_set = experiment.metric_set
    default_metric, default_split = experiment.objective
    return metric_set, metric_set.check(metric) if metric is not None else default_metric, split or default_split


def best_job(queue: Any, metric: str | None = None, split: str | None = None) -> Any:
    """The COMPLETE job with the best ``metric`` on ``split`` (default: the queue's objective,
    see :func:`objective`; lower is better for losses, errors and metrics to minimise).
    Ties go to the lowest job id; undefined (NULL) values are left out."""
    from aiqc.orm import Job, Metric

    spec, metric, split = objective(queue, metric, split)
    order = Metric.value.asc() if spec.lower_is_better(metric) else Metric.value.desc()
    best = (Job.select().join(Metric)
            .where(_complete_scores(queue, metric, split) & Metric.value.is_null(False))
            .order_by(order, Job.id).first())
    if best is None:
        _raise_unmeasured(queue, metric, split)
    return best


def _complete_scores(queue: Any, metric: str, split: str) -> Any:
    """The condition on Metric joined to Job: ``metric`` on ``split`` of the queue's COMPLETE jobs."""
    from aiqc.orm import Job, Metric

    return ((Job.queue == queue) & (Job.state == JobState.COMPLETE) & (Metric.split == split)
            & (Metric.name == metric))


def _raise_unmeasured(queue: Any, metric: str, split: str) -> None:
    """Why no COMPLETE job has a ``metric`` value on ``split``: none is COMPLETE (measured),
    ``split`` is not among the measured splits, or the metric is undefined on every job."""
    from aiqc.orm import Job, Metric

    measured = (Metric.select(Metric.split).distinct().join(Job)
                .where((Job.queue == queue) & (Job.state == JobState.COMPLETE)).tuples())
    available = sorted((s for (s,) in measured), key=SPLIT_ORDER.get)
    if not available:
        raise ValidationError(f"queue: expected {JobState.COMPLETE} jobs to choose from; queue {queue.id} has none yet.")
    if split not in available:
        raise ValidationError.expected("split", f"one of the measured splits {available!r}", split)
    raise ValidationError(f"metric: {metric!r} is undefined on the {split} split of every job of queue {queue.id}.")


def best_params(queue: Any, metric: str | None = None, split: str | None = None) -> dict:
    """The hyperparameters of the combination whose mean ``metric`` on ``split`` (over its
    COMPLETE repeats and folds) is best; both default to the queue's objective. Ties go to
    the lowest combination index."""
    import pandas as pd

    from aiqc.orm import Hyperparamset, Job, Metric

    spec, metric, split = objective(queue, metric, split)
    query = (Metric.select(Hyperparamset.index, Metric.value).join(Job).join(Hyperparamset)
             .where(_complete_scores(queue, metric, split) & Metric.value.is_null(False)).order_by(Job.id))
    scores = pd.DataFrame(Metric._meta.database.execute(query).fetchall(), columns=["hyperparamset", "value"])
    if scores.empty:
        raise ValidationError(f"queue: expected {JobState.COMPLETE} jobs measured on {split!r}; queue {queue.id} has none.")
    # each combination's mean over its values in job order: the same sum as metrics_aggregate's
    means = scores.groupby("hyperparamset", sort=False)["value"].mean().reset_index()
    best = means.sort_values(["value", "hyperparamset"], ascending=[spec.lower_is_better(metric), True],
                             kind="stable").iloc[0]
    record = Hyperparamset.get((Hyperparamset.experiment == queue.experiment_id)
                               & (Hyperparamset.index == int(best["hyperparamset"])))
    return dict(record.hyperparameters)


def history_to_pandas(job: Any) -> "pd.DataFrame":
    """Per-epoch values of a job: one row per epoch, one column per recorded name."""
    import pandas as pd

    history = job.history()
    frame = pd.DataFrame({k: pd.Series(v, dtype="float64") for k, v in history.items()})
    frame.index.name = "epoch"
    return frame


def tagged(records: list[Any], tag: Any, tags_of: Any = lambda r: r.tags) -> list[Any]:
    """The records carrying every tag of ``tag`` (one string, or a list of them; None: all)."""
    from aiqc.tags import check_tags

    wanted = check_tags(tag, "tag")
    return [r for r in records if all(t in tags_of(r) for t in wanted)]


def list_queues(tag: str | list[str] | None = None) -> "pd.DataFrame":
    """One row per queue: its name and tags, experiment, library, analysis type, jobs by state,
    and the best value of its objective; three queries whatever the number of queues and jobs.
    ``tag``: only the queues with that tag (a list: with every one of them)."""
    import pandas as pd

    from aiqc.database import ensure_setup
    from aiqc.orm import Experiment, Queue

    ensure_setup()
    queues = tagged(list(Queue.select(Queue, Experiment).join(Experiment).order_by(Queue.id)), tag)
    counts = _state_counts()
    best = _best_scores(queues)
    rows = []
    for queue in queues:
        experiment = queue.experiment
        states = {state: counts.get((queue.id, state), 0) for state in JobState}
        metric, split = experiment.objective
        rows.append(dict(queue_id=queue.id, name=experiment.name, tags=list(experiment.tags),
                         experiment_id=experiment.id, splitset_id=experiment.splitset_id,
                         library=experiment.library.value, analysis_type=experiment.analysis_type.value,
                         repeat_count=experiment.repeat_count, jobs=sum(states.values()),
                         **{s.value.lower(): n for s, n in states.items()}, objective=f"{split} {metric}",
                         best=best.get(queue.id), created_at=queue.created_at))
    return pd.DataFrame(rows, columns=["queue_id", "name", "tags", "experiment_id", "splitset_id", "library",
                                       "analysis_type",
                                       "repeat_count", "jobs", *(s.value.lower() for s in JobState), "objective",
                                       "best", "created_at"])


def _state_counts() -> dict[tuple[int, JobState], int]:
    """``{(queue id, state): jobs}`` of every queue, in one query."""
    import peewee as pw

    from aiqc.orm import Job

    query = Job.select(Job.queue, Job.state, pw.fn.COUNT(Job.id)).group_by(Job.queue, Job.state).tuples()
    return {(queue_id, state): count for queue_id, state, count in query}


def _best_scores(queues: list[Any]) -> dict[int, float]:
    """``{queue id: best value of its objective among its COMPLETE jobs}`` (absent before
    any), in one query: the minimum and maximum of each queue's (metric, split) candidates."""
    import peewee as pw

    from aiqc.orm import Job, Metric

    objectives = {}  # queue id -> (metric, split, lower is better)
    for queue in queues:
        metric, split = queue.experiment.objective
        objectives[queue.id] = metric, split, queue.experiment.metric_set.lower_is_better(metric)
    if not objectives:
        return {}
    query = (Metric.select(Job.queue, Metric.name, Metric.split, pw.fn.MIN(Metric.value), pw.fn.MAX(Metric.value))
             .join(Job)
             .where((Job.state == JobState.COMPLETE) & Job.queue.in_(list(objectives))
                    & Metric.name.in_(sorted({m for m, _, _ in objectives.values()}))
                    & Metric.split.in_(sorted({s for _, s, _ in objectives.values()})))
             .group_by(Job.queue, Metric.name, Metric.split).tuples())
    best = {}
    for queue_id, name, split, low, high in query:
        metric, objective_split, lower = objectives[queue_id]
        if (name, split) == (metric, objective_split):
            best[queue_id] = low if lower else high
    return best


def _listing(model: Any, fields: dict[str, Any], tag: Any = None) -> "pd.DataFrame":
    import pandas as pd

    from aiqc.database import ensure_setup

    ensure_setup()
    records = list(model.select().order_by(model.id))
    if tag is not None:
        records = tagged(records, tag)
    rows = [{name: get(record) for name, get in fields.items()} for record in records]
    return pd.DataFrame(rows, columns=list(fields))


def list_experiments() -> "pd.DataFrame":
    """One row per experiment: its splitset, library, analysis type, hyperparameters, repeats."""
    from aiqc.orm import Experiment

    return _listing(Experiment, {
        "experiment_id": lambda e: e.id, "name": lambda e: e.name, "tags": lambda e: list(e.tags),
        "splitset_id": lambda e: e.splitset_id, "library": lambda e: e.library.value,
        "analysis_type": lambda e: e.analysis_type.value, "hyperparameters": lambda e: e.hyperparameters,
        "repeat_count": lambda e: e.repeat_count, "hide_test": lambda e: e.hide_test, "created_at": lambda e: e.created_at})


def list_datasets() -> "pd.DataFrame":
    """One row per dataset: its name, source, rows, columns, hash and stored size."""
    from aiqc.orm import Dataset

    return _listing(Dataset, {
        "dataset_id": lambda d: d.id, "name": lambda d: d.name, "source": lambda d: d.source,
        "rows": lambda d: d.row_count, "columns": lambda d: d.column_count, "sha256": lambda d: d.sha256,
        "stored_bytes": lambda d: d.stored_bytes, "created_at": lambda d: d.created_at})


def list_splitsets(tag: str | list[str] | None = None) -> "pd.DataFrame":
    """One row per splitset: its name, tags, dataset, label, rows per split, folds, bins and
    random state. ``tag``: only the splitsets with that tag (a list: with every one of them)."""
    from aiqc.orm import Splitset

    return _listing(Splitset, {
        "splitset_id": lambda s: s.id, "name": lambda s: s.name, "tags": lambda s: list(s.tags),
        "dataset_id": lambda s: s.label.dataset_id, "label": lambda s: s.label.column,
        "train": lambda s: s.count_train, "validation": lambda s: s.count_validation, "test": lambda s: s.count_test,
        "fold_count": lambda s: s.fold_count, "bin_count": lambda s: s.bin_count, "stratify": lambda s: s.stratify,
        "random_state": lambda s: s.random_state, "created_at": lambda s: s.created_at}, tag)
