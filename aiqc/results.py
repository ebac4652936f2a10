"""Queries over past jobs, as DataFrames: one row per job x split, aggregates per
hyperparameter combination, the best job, per-epoch history, and listings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiqc.exceptions import ValidationError
from aiqc.states import JobState

if TYPE_CHECKING:
    import pandas as pd

SPLIT_ORDER = {"train": 0, "validation": 1, "test": 2}


def metrics_to_pandas(queue: Any, selected_metrics: list[str] | None = None, sort_by: str | list[str] | None = None,
                      ascending: bool = False, states: list[str] | None = None) -> "pd.DataFrame":
    """One row per job x split of the queue's measured jobs: job id, repeat, fold, split,
    each hyperparameter, each metric, state and seconds. ``states`` keeps only jobs in
    those states (COMPLETE, PRUNED); by default both."""
    import pandas as pd

    from aiqc.orm import Hyperparamset, Job, Metric

    if states is not None:
        states = JobState.parse_many(states)
    query = (Metric.select(Metric.split, Metric.name, Metric.value, Job.id.alias("job_id"), Job.repeat_index,
                           Job.fold, Job.state, Job.seconds, Hyperparamset.index, Hyperparamset.hyperparameters)
             .join(Job).join(Hyperparamset).where(Job.queue == queue))
    if states is not None:
        query = query.where(Job.state.in_(states))
    query = query.dicts()
    rows = list(query)
    names = queue.experiment.hyperparameter_names()
    metric_names = list(queue.experiment.metric_set.names)
    if selected_metrics is not None:
        if isinstance(selected_metrics, str):
            selected_metrics = [selected_metrics]
        unknown = [m for m in selected_metrics if m not in metric_names]
        if unknown:
            raise ValidationError.expected("selected_metrics", f"names among {metric_names!r}", selected_metrics)
        metric_names = list(selected_metrics)
    columns = ["job_id", "hyperparamset", "repeat", "fold", "split", *names, *metric_names, "state", "seconds"]
    if not rows:
        return pd.DataFrame(columns=columns)
    long = pd.DataFrame(rows)
    fold_index = {f.id: f.fold_index for f in queue.experiment.splitset.folds}
    jobs = long.drop_duplicates("job_id").set_index("job_id")
    values = long.pivot(index=["job_id", "split"], columns="name", values="value").reset_index()
    values.columns.name = None
    wide = values.assign(
        hyperparamset=values["job_id"].map(jobs["index"]),
        repeat=values["job_id"].map(jobs["repeat_index"]),
        fold=values["job_id"].map(jobs["fold"]).map(lambda f: fold_index.get(f) if f == f and f is not None else None).astype("Int64"),
        state=values["job_id"].map(jobs["state"]).map(lambda s: JobState(s).value),
        seconds=values["job_id"].map(jobs["seconds"]),
    )
    for name in names:
        wide[name] = wide["job_id"].map(jobs["hyperparameters"].map(lambda h: h.get(name)))
    for name in metric_names:
        if name not in wide:
            wide[name] = float("nan")
    wide = wide[columns]
    wide = wide.sort_values(["job_id", "split"], key=lambda c: c.map(SPLIT_ORDER) if c.name == "split" else c)
    if sort_by is not None:
        keys = [sort_by] if isinstance(sort_by, str) else list(sort_by)
        unknown = [k for k in keys if k not in wide.columns]
        if unknown:
            raise ValidationError.expected("sort_by", f"column names among {list(wide.columns)!r}", sort_by)
        wide = wide.sort_values(keys, ascending=ascending, kind="stable")
    return wide.reset_index(drop=True)


def metrics_aggregate(queue: Any, selected_metrics: list[str] | None = None,
                      stats: tuple[str, ...] = ("mean", "std", "min", "max")) -> "pd.DataFrame":
    """Per hyperparameter combination and split: ``stats`` of each metric across repeats
    and folds, plus how many jobs were measured (``job_count``)."""
    frame = metrics_to_pandas(queue, selected_metrics, states=[JobState.COMPLETE])
    names = queue.experiment.hyperparameter_names()
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
    see :func:`objective`; lower is better for losses, errors and metrics to minimise)."""
    from aiqc.orm import Job

    spec, metric, split = objective(queue, metric, split)
    frame = metrics_to_pandas(queue, [metric], states=[JobState.COMPLETE])
    available = sorted(frame["split"].unique(), key=SPLIT_ORDER.get)
    if split not in available:
        if frame.empty:
            raise ValidationError(f"queue: expected {JobState.COMPLETE} jobs to choose from; queue {queue.id} has none yet.")
        raise ValidationError.expected("split", f"one of the measured splits {available!r}", split)
    scores = frame[frame["split"] == split].dropna(subset=[metric])
    if scores.empty:
        raise ValidationError(f"metric: {metric!r} is undefined on the {split} split of every job of queue {queue.id}.")
    ascending = spec.lower_is_better(metric)
    best = scores.sort_values([metric, "job_id"], ascending=[ascending, True], kind="stable").iloc[0]
    return Job.get_by_id(int(best["job_id"]))


def best_params(queue: Any, metric: str | None = None, split: str | None = None) -> dict:
    """The hyperparameters of the combination whose mean ``metric`` on ``split`` (over its
    COMPLETE repeats and folds) is best; both default to the queue's objective."""
    from aiqc.orm import Hyperparamset

    spec, metric, split = objective(queue, metric, split)
    aggregate = metrics_aggregate(queue, [metric], stats=("mean",))
    scores = aggregate[aggregate["split"] == split].dropna(subset=[f"{metric}_mean"])
    if scores.empty:
        raise ValidationError(f"queue: expected {JobState.COMPLETE} jobs measured on {split!r}; queue {queue.id} has none.")
    ascending = spec.lower_is_better(metric)
    best = scores.sort_values([f"{metric}_mean", "hyperparamset"], ascending=[ascending, True], kind="stable").iloc[0]
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


def list_queues() -> "pd.DataFrame":
    """One row per queue: its experiment, library, analysis type, jobs by state."""
    import pandas as pd

    from aiqc.database import ensure_setup
    from aiqc.orm import Queue

    ensure_setup()
    rows = []
    for queue in Queue.select().order_by(Queue.id):
        experiment = queue.experiment
        counts = queue.state_counts()
        metric, split = experiment.objective
        rows.append(dict(queue_id=queue.id, experiment_id=experiment.id, splitset_id=experiment.splitset_id,
                         library=experiment.library.value, analysis_type=experiment.analysis_type.value,
                         repeat_count=experiment.repeat_count, jobs=sum(counts.values()),
                         **{s.value.lower(): n for s, n in counts.items()}, objective=f"{split} {metric}",
                         best=_best_score(queue, metric, split, experiment.metric_set.lower_is_better(metric)),
                         created_at=queue.created_at))
    return pd.DataFrame(rows, columns=["queue_id", "experiment_id", "splitset_id", "library", "analysis_type",
                                       "repeat_count", "jobs", *(s.value.lower() for s in JobState), "objective",
                                       "best", "created_at"])


def _best_score(queue: Any, metric: str, split: str, lower_is_better: bool) -> float | None:
    """The best value of ``metric`` on ``split`` among the queue's COMPLETE jobs (None before any)."""
    import peewee as pw

    from aiqc.orm import Job, Metric

    best = pw.fn.MIN(Metric.value) if lower_is_better else pw.fn.MAX(Metric.value)
    return (Metric.select(best).join(Job)
            .where((Job.queue == queue) & (Job.state == JobState.COMPLETE) & (Metric.split == split)
                   & (Metric.name == metric)).scalar())


def _listing(model: Any, fields: dict[str, Any]) -> "pd.DataFrame":
    import pandas as pd

    from aiqc.database import ensure_setup

    ensure_setup()
    rows = [{name: get(record) for name, get in fields.items()} for record in model.select().order_by(model.id)]
    return pd.DataFrame(rows, columns=list(fields))


def list_experiments() -> "pd.DataFrame":
    """One row per experiment: its splitset, library, analysis type, hyperparameters, repeats."""
    from aiqc.orm import Experiment

    return _listing(Experiment, {
        "experiment_id": lambda e: e.id, "splitset_id": lambda e: e.splitset_id, "library": lambda e: e.library.value,
        "analysis_type": lambda e: e.analysis_type.value, "hyperparameters": lambda e: e.hyperparameters,
        "repeat_count": lambda e: e.repeat_count, "hide_test": lambda e: e.hide_test, "created_at": lambda e: e.created_at})


def list_datasets() -> "pd.DataFrame":
    """One row per dataset: its name, source, rows, columns, hash and stored size."""
    from aiqc.orm import Dataset

    return _listing(Dataset, {
        "dataset_id": lambda d: d.id, "name": lambda d: d.name, "source": lambda d: d.source,
        "rows": lambda d: d.row_count, "columns": lambda d: d.column_count, "sha256": lambda d: d.sha256,
        "stored_bytes": lambda d: d.stored_bytes, "created_at": lambda d: d.created_at})


def list_splitsets() -> "pd.DataFrame":
    """One row per splitset: its dataset, label, rows per split, folds, bins and random state."""
    from aiqc.orm import Splitset

    return _listing(Splitset, {
        "splitset_id": lambda s: s.id, "dataset_id": lambda s: s.label.dataset_id, "label": lambda s: s.label.column,
        "train": lambda s: s.count_train, "validation": lambda s: s.count_validation, "test": lambda s: s.count_test,
        "fold_count": lambda s: s.fold_count, "bin_count": lambda s: s.bin_count, "stratify": lambda s: s.stratify,
        "random_state": lambda s: s.random_state, "created_at": lambda s: s.created_at})
