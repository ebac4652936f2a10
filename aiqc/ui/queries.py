"""What the dashboard reads, without any web framework: the queues' rows and a queue's header
(jobs per state, progress, version, best job), a queue's jobs table cached per version, and the
charts of a queue and of a job (plotly figures from :mod:`aiqc.plots`). :mod:`aiqc.ui.app`
turns these into pages and JSON; every id and value it passes has been checked there.

Reads only, and unpickles nothing.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import threading
from typing import TYPE_CHECKING, Any, Callable

from aiqc import caches
from aiqc.analysis import JobChart
from aiqc.data.split import SPLITS
from aiqc.exceptions import ChartNotApplicableError, MissingExtraError, NotFoundError, ValidationError
from aiqc.results import hyperparameter_columns
from aiqc.states import JobState

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["states", "get_queue", "state_counts", "version_text", "queue_rows", "queue_summary", "JobsFrame",
           "FrameCache", "FRAMES", "jobs_frame", "build_frame", "records", "sorted_frame", "QUEUE_CHARTS",
           "JOB_CHARTS", "NOT_DRAWN", "queue_chart_names", "evaluated_split", "measured_splits",
           "too_many_traces", "CACHED_FRAMES", "MAX_TRACES"]

#: queue versions whose metrics table stays cached in this process
CACHED_FRAMES = 8
#: the most traces a chart of one trace per combination (repeat spread) or per job (intermediate
#: values) draws: past a few hundred, building the figure and drawing it in a browser take seconds
MAX_TRACES = 500


def states() -> list[str]:
    """The job states' names, in their order."""
    return [state.value for state in JobState]


# --- reads -------------------------------------------------------------------------------------
def get_queue(queue_id: int) -> Any:
    """The queue ``queue_id`` with its experiment (one query); :class:`~aiqc.exceptions.NotFoundError` if none."""
    from aiqc.orm import Experiment, Queue

    queue = Queue.select(Queue, Experiment).join(Experiment).where(Queue.id == queue_id).first()
    if queue is None:
        raise NotFoundError(f"Queue id={queue_id!r} does not exist.")
    return queue


def state_counts(queue_id: int) -> tuple[dict[str, int], tuple]:
    """(``{state name: jobs}`` with every state, the queue's version) in one query: the
    version is the jobs per state and the last ``finished_at`` of each; it changes whenever a
    job is added, removed, claimed, finished or queued again."""
    import peewee as pw

    from aiqc.orm import Job

    rows = (Job.select(Job.state, pw.fn.COUNT(Job.id), pw.fn.MAX(Job.finished_at))
            .where(Job.queue == queue_id).group_by(Job.state).tuples())
    counts = dict.fromkeys(states(), 0)
    version = []
    for state, count, finished in rows:
        name = JobState(state).value
        counts[name] = int(count)
        version.append((name, int(count), str(finished)))
    return counts, tuple(sorted(version))


def version_text(version: tuple) -> str:
    """A short, opaque text of a queue version (:func:`state_counts`) for the page to compare."""
    return hashlib.sha1(repr(version).encode()).hexdigest()[:16]


def progress(counts: dict[str, int], expected: int) -> tuple[int, int]:
    """(finished jobs, total jobs): a sampled search's total is the jobs it will have."""
    done = sum(counts[state.value] for state in JobState.finished())
    return done, max(sum(counts.values()), expected)


def _expected_jobs(queue: Any, counts: dict[str, int]) -> int:
    search = queue.experiment.search_settings
    return queue.expected_job_count if search is not None and search.samples else sum(counts.values())


def queue_rows(tag: str | None = None) -> list[dict]:
    """One dict per queue (``aiqc.list_queues``): id, name, tags, library, analysis type, jobs
    per state, finished and total jobs, best score on its objective and the objective."""
    from aiqc.orm import Experiment, Queue
    from aiqc.results import list_queues
    from aiqc.tags import check_tag

    if tag:
        check_tag(tag, "tag")
    frame = list_queues()  # filtered below: list_queues(tag=...) scores only the tagged queues' objectives
    if tag:
        frame = frame[[tag in tags for tags in frame["tags"]]]
    searching = {q.id: q for q in Queue.select(Queue, Experiment).join(Experiment)
                 .where(Experiment.search.is_null(False))}
    rows = []
    for record in frame.to_dict("records"):
        queue_id = int(record["queue_id"])
        counts = {state: int(record[state.lower()]) for state in states()}
        queue = searching.get(queue_id)
        expected = _expected_jobs(queue, counts) if queue is not None else 0
        done, total = progress(counts, expected)
        best = record["best"]
        rows.append({"queue_id": queue_id, "name": record["name"] if isinstance(record["name"], str) else None,
                     "tags": list(record["tags"]), "library": record["library"],
                     "analysis_type": record["analysis_type"], "counts": counts, "done": done, "total": total,
                     "best": None if best is None or best != best else float(best), "objective": record["objective"]})
    return rows


def queue_summary(queue: Any) -> dict:
    """A queue's header: names, objective, search, jobs per state, progress, version and best job."""
    from aiqc.orm import Metric

    experiment = queue.experiment
    counts, version = state_counts(queue.id)
    done, total = progress(counts, _expected_jobs(queue, counts))
    metric, split = experiment.objective
    search = experiment.search_settings
    best = None
    if counts[JobState.COMPLETE.value]:
        try:
            job = queue.best_job()
        except ValidationError:  # the objective is undefined on every job
            job = None
        if job is not None:
            row = Metric.get_or_none((Metric.job == job.id) & (Metric.split == split) & (Metric.name == metric))
            best = {"job_id": job.id, "value": None if row is None else row.value}
    return {"queue_id": queue.id, "name": experiment.name, "description": experiment.description,
            "tags": list(experiment.tags or []), "library": experiment.library.value,
            "analysis_type": experiment.analysis_type.value, "splitset_id": experiment.splitset_id,
            "repeat_count": experiment.repeat_count, "objective_metric": metric, "objective_split": split,
            "direction": experiment.metric_set.direction(metric), "output_dir": queue.output_dir,
            "search": None if search is None else _search_text(search), "counts": counts, "done": done,
            "total": total, "version": version_text(version), "best": best}


def _search_text(search: Any) -> str:
    parts = [search.strategy]
    if search.samples:
        parts.append(f"{search.n_trials} trials")
    if search.pruner:
        parts.append(f"pruner {search.pruner}")
    return ", ".join(parts) + f" ({search.direction} {search.split} {search.metric})"


# --- the jobs table, cached per queue version -----------------------------------------------------
@dataclasses.dataclass
class JobsFrame:
    """A queue's jobs table: :meth:`~aiqc.orm.Queue.metrics_to_pandas`'s rows (one per
    measured job x split), then one row per job without metrics (queued, running, failed),
    in job id order; the metric and hyperparameter column names."""

    frame: "pd.DataFrame"
    metrics: list[str]
    hyperparameters: list[str]
    _haystack: "pd.Series | None" = None

    def haystack(self) -> "pd.Series":
        """Per row, ``name=value`` of each hyperparameter, lower case (what ``q`` is looked for in)."""
        if self._haystack is None:
            import pandas as pd

            text = pd.Series([""] * len(self.frame), index=self.frame.index, dtype=object)
            for name in self.hyperparameters:
                text = text + f"{name}=" + self.frame[name].map(str) + " "
            self._haystack = text.str.lower()
        return self._haystack

    def rows(self, state: str | None = None, split: str | None = None, text: str = "", sort: str | None = None,
             ascending: bool = True) -> "pd.DataFrame":
        """The rows of the job ``state``, of the ``split``, whose hyperparameters' ``name=value``
        contain ``text`` (case-insensitive), sorted by the column ``sort`` as
        :func:`sorted_frame` sorts; every one given must hold."""
        frame = self.frame
        if not len(frame):
            return frame
        keep = None
        if state is not None:
            keep = frame["state"] == state
        if split is not None:
            keep = (frame["split"] == split) if keep is None else keep & (frame["split"] == split)
        if text:
            found = self.haystack().str.contains(text.lower(), regex=False)
            keep = found if keep is None else keep & found
        if keep is not None:
            frame = frame[keep.to_numpy(dtype=bool)]
        return frame if sort is None else sorted_frame(frame, sort, ascending)


class FrameCache:
    """The :class:`JobsFrame` of the last :data:`CACHED_FRAMES` (database, queue, version)
    keys read by this process; registered with :mod:`aiqc.caches`, so ``clear_caches()``
    empties it."""

    def __init__(self, size: int = CACHED_FRAMES) -> None:
        self.size = size
        self._entries: collections.OrderedDict[tuple, JobsFrame] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, build: Callable[[], JobsFrame]) -> JobsFrame:
        """The entry of ``key``, built (once, under a lock) when missing."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            entry = build()
            self._entries[key] = entry
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
            return entry

    def cache_clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()


FRAMES = caches.register(FrameCache())


def jobs_frame(queue: Any) -> tuple[JobsFrame, dict[str, int], tuple]:
    """(the queue's :class:`JobsFrame`, its jobs per state, its version), cached per version."""
    from aiqc.database import ensure_setup

    counts, version = state_counts(queue.id)
    key = (ensure_setup().cache_key, queue.id, version)
    return FRAMES.get(key, lambda: build_frame(queue)), counts, version


def build_frame(queue: Any) -> JobsFrame:
    """The :class:`JobsFrame` of ``queue`` read now (:func:`jobs_frame` caches it per version)."""
    import pandas as pd

    measured = queue.metrics_to_pandas()
    metric_names = list(queue.experiment.metric_set.names)
    columns = list(measured.columns)
    pending = unmeasured(queue, columns, metric_names)
    if len(pending) and len(measured):  # a job measured, then queued again: its metrics rows show it
        pending = pending[~pending["job_id"].isin(measured["job_id"])]
    if len(pending):
        for name in pending.columns:
            if name not in columns:
                columns.insert(columns.index(metric_names[0]) if metric_names else len(columns), name)
        frame = pending.reindex(columns=columns) if measured.empty else pd.concat(
            [measured.reindex(columns=columns), pending.reindex(columns=columns)], ignore_index=True)
        frame = frame.sort_values("job_id", kind="stable").reset_index(drop=True)
    else:
        frame = measured
    metrics = [m for m in metric_names if m in frame.columns]
    return JobsFrame(frame, metrics, hyperparameter_columns(frame, metric_names))


def unmeasured(queue: Any, columns: list[str], metric_names: list[str]) -> "pd.DataFrame":
    """One row per job of the queue without metrics (queued, running, failed): its ids, repeat,
    fold, hyperparameters, state and seconds, no split and no metrics."""
    import numpy as np
    import pandas as pd
    import peewee as pw

    from aiqc.orm import Fold, Hyperparamset, Job

    measured = [state for state in JobState if state.is_measured]
    query = (Job.select(Job.id, Hyperparamset.index, Hyperparamset.hyperparameters, Job.repeat_index, Fold.fold_index,
                        Job.state, Job.seconds)
             .join(Hyperparamset).switch(Job).join(Fold, pw.JOIN.LEFT_OUTER)
             .where((Job.queue == queue.id) & Job.state.not_in(measured)).order_by(Job.id).tuples())
    rows = list(query)
    if not rows:
        return pd.DataFrame(columns=columns)
    names = list(dict.fromkeys(n for row in rows for n in (row[2] or {})))
    data = {"job_id": np.array([r[0] for r in rows], dtype=np.int64),
            "hyperparamset": np.array([r[1] for r in rows], dtype=np.int64),
            "repeat": np.array([r[3] for r in rows], dtype=np.int64),
            "fold": pd.array([r[4] for r in rows], dtype="Int64"), "split": [None] * len(rows),
            **{name: [(r[2] or {}).get(name) for r in rows] for name in names},
            **{name: np.full(len(rows), np.nan) for name in metric_names},
            "state": [JobState(r[5]).value for r in rows],
            "seconds": np.array([np.nan if r[6] is None else r[6] for r in rows], dtype=np.float64)}
    return pd.DataFrame(data)


def records(frame: "pd.DataFrame") -> list[dict]:
    """The rows of ``frame`` as dicts, missing values as None."""
    shown = frame.astype(object)
    return shown.where(frame.notna(), None).to_dict("records")


def sorted_frame(frame: "pd.DataFrame", column: str, ascending: bool) -> "pd.DataFrame":
    """``frame`` sorted by ``column`` as ``metrics_to_pandas(sort_by=...)`` sorts (stable,
    missing values last); a column of mixed types by its values' text."""
    try:
        return frame.sort_values(column, ascending=ascending, kind="stable")
    except TypeError:
        return frame.sort_values(column, ascending=ascending, kind="stable",
                                 key=lambda values: values.map(lambda v: None if v is None else str(v)))


# --- charts ----------------------------------------------------------------------------------------
def _plots() -> Any:
    from aiqc import plots

    return plots


def _numeric_searched(queue: Any) -> list[str]:
    from aiqc.search import Float, Int, loads_grid

    return [n for n, v in loads_grid(queue.experiment.hyperparameters).items() if isinstance(v, (Int, Float))]


def _contour(queue: Any) -> Any:
    numeric = _numeric_searched(queue)
    if len(numeric) < 2:
        raise ChartNotApplicableError(f"queue: a contour expects two numeric searched hyperparameters; "
                                      f"queue {queue.id} searches {len(numeric)}.")
    return _plots().plot_contour(queue, numeric[0], numeric[1])


#: a queue's charts: name -> (title, draw(queue, metric, split))
QUEUE_CHARTS: dict[str, tuple[str, Callable[[Any, str | None, str], Any]]] = {
    "performance": ("Performance of every job", lambda q, metric, split: _plots().plot_performance(q, metric)),
    "hyperparameters": ("Hyperparameters", lambda q, metric, split: _plots().plot_hyperparameters(q, metric, split)),
    "repeat-spread": ("Spread across repeats and folds",
                      lambda q, metric, split: _plots().plot_repeat_spread(q, metric, split)),
    "optimization-history": ("Optimisation history", lambda q, metric, split: _plots().plot_optimization_history(q)),
    "param-importance": ("Hyperparameter importance", lambda q, metric, split: _plots().plot_param_importance(q)),
    "slice": ("Slices", lambda q, metric, split: _plots().plot_slice(q)),
    "contour": ("Contour of two searched hyperparameters", lambda q, metric, split: _contour(q)),
    "intermediate-values": ("Intermediate values (pruning)",
                            lambda q, metric, split: _plots().plot_intermediate_values(q)),
}

#: a job's charts: name -> (title, the analysis chart it is (None: every job), draw(job, split))
JOB_CHARTS: dict[str, tuple[str, JobChart | None, Callable[[Any, str], Any]]] = {
    "learning-curve": ("Learning curve", None, lambda job, split: _plots().plot_learning_curve(job)),
    "confusion-matrix": ("Confusion matrices", JobChart.CONFUSION_MATRIX,
                         lambda job, split: _plots().plot_confusion_matrix(job)),
    "roc-curve": ("ROC curve", JobChart.ROC_CURVE, lambda job, split: _plots().plot_roc_curve(job, split)),
    "precision-recall": ("Precision-recall", JobChart.PRECISION_RECALL,
                         lambda job, split: _plots().plot_precision_recall(job, split)),
    "predicted-vs-actual": ("Predicted vs actual", JobChart.PREDICTED_VS_ACTUAL,
                   lambda job, split: _plots().plot_regression(job, split)),
}

#: what a chart that cannot be drawn from this data raises: its message becomes the chart's note
NOT_DRAWN = (ChartNotApplicableError, ValidationError, MissingExtraError)


def queue_chart_names(queue: Any) -> list[str]:
    """The charts a queue's page shows: performance, hyperparameters and repeat spread; with a
    sampled search its history, importance, slices (and contour); with any search the
    intermediate values."""
    names = ["performance", "hyperparameters", "repeat-spread"]
    search = queue.experiment.search_settings
    if search is not None:
        if search.samples:
            names += ["optimization-history", "param-importance", "slice"]
            if len(_numeric_searched(queue)) >= 2:
                names.append("contour")
        names.append("intermediate-values")
    return names


def evaluated_split(splits: list[str], objective_split: str) -> str:
    """The split a queue's charts show by default: the objective's, else validation, else test."""
    for split in (objective_split, "validation", "test"):
        if split in splits:
            return split
    return splits[0] if splits else objective_split


def measured_splits(entry: JobsFrame) -> list[str]:
    """The splits the jobs table holds metrics of, in train, validation, test order."""
    present = set(entry.frame["split"].dropna()) if len(entry.frame) else set()
    return [s for s in SPLITS if s in present]


def too_many_traces(queue: Any, name: str) -> str | None:
    """Why a chart of one trace per combination or per job is left out (over :data:`MAX_TRACES`); None to draw it."""
    from aiqc.orm import Hyperparamset, Job

    if name == "repeat-spread":
        count = Hyperparamset.select().where(Hyperparamset.experiment == queue.experiment_id).count()
        what, trace = "hyperparameter combinations", "a box per combination"
    elif name == "intermediate-values":
        count = Job.select().where(Job.queue == queue.id).count()
        what, trace = "jobs", "a line per job"
    else:
        return None
    if count <= MAX_TRACES:
        return None
    return (f"left out: queue {queue.id} has {count:,} {what}, and this chart draws {trace} (at most {MAX_TRACES}); "
            "the jobs table above sorts and filters them all.")
