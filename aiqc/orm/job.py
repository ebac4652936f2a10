"""Queue (the jobs of one experiment) and Job (one combination x repeat x fold)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import peewee as pw

from aiqc.orm.base import Annotated, BaseModel, EnumField, JSONField, ensure_database, query_on_class, utcnow
from aiqc.orm.experiment import Experiment, Hyperparamset
from aiqc.orm.splitset import Fold
from aiqc.states import JobState

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import pandas as pd
    import plotly.graph_objects as go

    from aiqc.deletion import Deleted


class Queue(Annotated, BaseModel):
    """A run of an experiment: its jobs (hyperparameter combination x repeat x fold) and its output directory.

    Its name, description and tags are its experiment's (``Experiment.make(name=, description=,
    tags=)``); change them with :meth:`describe`, :meth:`set_tags`, :meth:`add_tags` and
    :meth:`remove_tags`."""

    experiment = pw.ForeignKeyField(Experiment, backref="queues", on_delete="CASCADE")
    output_dir = pw.TextField(null=True)  # set by `aiqc run`: config, log, metrics, report

    def _annotated(self) -> Experiment:
        return self.experiment

    @property
    def name(self) -> str | None:
        """The queue's name (its experiment's)."""
        return self.experiment.name

    @property
    def description(self) -> str | None:
        """The queue's description (its experiment's)."""
        return self.experiment.description

    @property
    def tags(self) -> list[str]:
        """The queue's tags (its experiment's), in the order given."""
        return list(self.experiment.tags)

    def to_config(self, path: str | Path) -> Path:
        """Write a YAML spec (plus the functions' source as a module) that reproduces this queue."""
        from aiqc.spec import export

        return export(self, path)

    def run_jobs(self, workers: int = 1, *, threads: int | None = None, progress: bool = True,
                 retry_failed: bool = False, executor: Any = None) -> Any:
        """Train every job not yet COMPLETE; returns a :class:`~aiqc.executors.RunSummary`.

        ``workers=1`` runs jobs one at a time in this process; ``workers=N`` starts N local
        worker processes (``python -m aiqc.worker``) that claim jobs from the database, so no job runs twice.
        ``executor=`` picks where instead: ``aiqc.executors.InProcess()``, ``Processes(workers=N)``
        or ``Ray(address=None, cpus_per_job=1, gpus_per_job=0)``.
        Calling it again after a crash or Ctrl-C finishes exactly the remaining jobs;
        FAILED jobs stay failed unless ``retry_failed=True``. ``threads`` caps each worker's TF/torch intra-op threads
        (default: CPU cores / workers).
        """
        from aiqc.executors import run_queue

        return run_queue(self, workers=workers, threads=threads, progress=progress, retry_failed=retry_failed,
                         executor=executor)

    def state_counts(self) -> dict[JobState, int]:
        """Jobs per state, every state present (zero where none)."""
        counts = dict.fromkeys(JobState, 0)
        query = Job.select(Job.state, pw.fn.COUNT(Job.id).alias("n")).where(Job.queue == self).group_by(Job.state)
        for row in query:
            counts[row.state] = row.n
        return counts

    @property
    def objective(self) -> tuple[str, str]:
        """(metric, split) that ranks the queue's jobs when none is named: the search's metric
        and split, ``Experiment.make(metric=...)``, or accuracy / r2 on validation."""
        return self.experiment.objective

    @property
    def job_count(self) -> int:
        """Jobs the queue holds now."""
        return self.jobs.count()

    @property
    def expected_job_count(self) -> int:
        """Jobs the queue will hold when done: a sampled search adds them trial by trial."""
        experiment = self.experiment
        search = experiment.search_settings
        if search is None or not search.samples:
            return self.job_count
        folds = experiment.splitset.fold_count or 1
        return int(search.n_trials) * experiment.repeat_count * folds

    def best_params(self, metric: str | None = None, split: str | None = None) -> dict:
        """The hyperparameters of the best combination: its mean ``metric`` over repeats and
        folds (COMPLETE jobs) is the best on ``split``. Both default to the queue's
        :attr:`objective`."""
        from aiqc.results import best_params

        return best_params(self, metric, split)

    # --- results ---------------------------------------------------------------------
    def metrics_to_pandas(self, selected_metrics: list[str] | None = None, sort_by: str | list[str] | None = None,
                          ascending: bool = False, states: list[str] | None = None) -> "pd.DataFrame":
        """One row per job x split: ids, repeat, fold, split, hyperparameters, metrics, state.
        ``states`` filters, e.g. ``["COMPLETE"]`` (default: COMPLETE and PRUNED jobs)."""
        from aiqc.results import metrics_to_pandas

        return metrics_to_pandas(self, selected_metrics, sort_by, ascending, states)

    def metrics_aggregate(self, selected_metrics: list[str] | None = None,
                          stats: tuple[str, ...] = ("mean", "std", "min", "max")) -> "pd.DataFrame":
        """Per hyperparameter combination and split: mean/std/min/max across repeats and folds."""
        from aiqc.results import metrics_aggregate

        return metrics_aggregate(self, selected_metrics, stats)

    def best_job(self, metric: str | None = None, split: str | None = None) -> "Job":
        """The COMPLETE job with the best ``metric`` on ``split`` (default: the queue's
        :attr:`objective`; lower is better for losses, errors and metrics to minimise)."""
        from aiqc.results import best_job

        return best_job(self, metric, split)

    def plot_performance(self, metric: str | None = None, min_score: float | None = None,
                         max_score: float | None = None) -> "go.Figure":
        """Chart of every COMPLETE job's train score against its validation (else test) score:
        overfitting shows as points far from the diagonal."""
        from aiqc.plots import plot_performance

        return plot_performance(self, metric, min_score, max_score)

    def plot_hyperparameters(self, metric: str | None = None, split: str = "validation") -> "go.Figure":
        """Chart of the metric of every COMPLETE job by the value of each varying hyperparameter (box + points)."""
        from aiqc.plots import plot_hyperparameters

        return plot_hyperparameters(self, metric, split)

    def plot_repeat_spread(self, metric: str | None = None, split: str = "validation") -> "go.Figure":
        """Chart of the metric's spread across repeats and folds, per hyperparameter combination."""
        from aiqc.plots import plot_repeat_spread

        return plot_repeat_spread(self, metric, split)

    def plot_optimization_history(self) -> "go.Figure":
        """Chart of a search's trial values, in trial order, and the best so far."""
        from aiqc.plots import plot_optimization_history

        return plot_optimization_history(self)

    def plot_param_importance(self) -> "go.Figure":
        """Chart of how much each searched hyperparameter explains the trial value (random-forest importance)."""
        from aiqc.plots import plot_param_importance

        return plot_param_importance(self)

    def plot_contour(self, x: str, y: str) -> "go.Figure":
        """Contour chart of a search's trial value over two numeric hyperparameters ``x`` and ``y``."""
        from aiqc.plots import plot_contour

        return plot_contour(self, x, y)

    def plot_slice(self) -> "go.Figure":
        """Chart of a search's trial value against each searched hyperparameter."""
        from aiqc.plots import plot_slice

        return plot_slice(self)

    def plot_intermediate_values(self) -> "go.Figure":
        """Chart of the value the pruner watched per epoch, per job; pruned jobs end early (dashed)."""
        from aiqc.plots import plot_intermediate_values

        return plot_intermediate_values(self)

    def report(self, path: str | Path) -> Path:
        """Write one self-contained HTML file (tables + every chart); returns its path."""
        from aiqc.report import write_report

        return write_report(self, path)

    @query_on_class
    def delete(self, *, force: bool = False) -> Deleted:
        """Delete this queue, its jobs and all they produced (metrics, history, predictions,
        models, aliases), and its experiment unless another queue runs it; never its splitset or
        dataset. Refused while jobs are RUNNING, unless ``force=True``. Returns what went
        (:class:`aiqc.deletion.Deleted`). ``Queue.delete()`` on the class is peewee's DELETE query."""
        from aiqc.deletion import delete

        return delete("queue", self.id, force=force)


class Job(BaseModel):
    """One training run of a queue: a hyperparameter combination x repeat x fold, its seed and state."""

    queue = pw.ForeignKeyField(Queue, backref="jobs", on_delete="CASCADE")
    hyperparamset = pw.ForeignKeyField(Hyperparamset, backref="jobs", on_delete="CASCADE")
    fold = pw.ForeignKeyField(Fold, backref="jobs", null=True, on_delete="CASCADE")
    repeat_index = pw.IntegerField()
    seed = pw.IntegerField()
    state = EnumField(JobState, default=JobState.QUEUED, index=True)
    worker = pw.TextField(null=True)  # "host:pid:token" of the worker running it
    attempts = pw.IntegerField(default=0)
    heartbeat_at = pw.DateTimeField(null=True)
    started_at = pw.DateTimeField(null=True)
    finished_at = pw.DateTimeField(null=True)
    seconds = pw.FloatField(null=True)  # wall time of the last run
    error = pw.TextField(null=True)  # traceback of the last failure
    features_shape = JSONField(null=True)  # what fn_build received: [n_features, ...] (set when recorded)
    label_shape = JSONField(null=True)
    versions = JSONField(null=True)  # aiqc.versions.runtime() of the worker that recorded it

    # --- aliases -------------------------------------------------------------------------
    @classmethod
    def get_by_alias(cls, alias: str) -> "Job":
        """The job an alias points to (:class:`aiqc.exceptions.NotFoundError` when none does)."""
        from aiqc.exceptions import NotFoundError
        from aiqc.tags import check_alias

        check_alias(alias)
        row = JobAlias.select(JobAlias.job).where(JobAlias.name == alias).first()
        if row is None:
            known = [a.name for a in JobAlias.select(JobAlias.name).order_by(JobAlias.name).limit(20)]
            raise NotFoundError(f"alias: expected an alias of a job; received {alias!r}, which no job has "
                                f"(aliases: {known!r}).")
        return cls.get_by_id(row.job_id)

    @property
    def aliases(self) -> list[str]:
        """The aliases pointing to this job, sorted."""
        return [a.name for a in JobAlias.select(JobAlias.name).where(JobAlias.job == self).order_by(JobAlias.name)]

    def set_alias(self, alias: str) -> "Job | None":
        """Point ``alias`` (e.g. ``'churn-prod'``) at this job, which must be COMPLETE. An alias
        names one job: one already pointing at another job is moved here, in one statement, so
        every reader sees either the old job or the new one. Returns the job it was moved from
        (None when it is new or already here)."""
        from aiqc.exceptions import ValidationError
        from aiqc.tags import check_alias

        check_alias(alias)
        with ensure_database().write_transaction():
            state = Job.select(Job.state).where(Job.id == self.id).scalar()
            if state != JobState.COMPLETE.value:
                raise ValidationError(f"alias: expected a {JobState.COMPLETE} job to point {alias!r} at; job {self.id} is "
                                      f"{state or 'deleted'}. Nothing was changed.")
            previous = JobAlias.select(JobAlias.job).where(JobAlias.name == alias).scalar()
            if previous == self.id:
                return None
            (JobAlias.insert(name=alias, job=self.id, updated_at=utcnow())
             .on_conflict(conflict_target=[JobAlias.name],
                          update={JobAlias.job: self.id, JobAlias.updated_at: utcnow()}).execute())
        if previous is None:
            return None
        import logging

        logging.getLogger(__name__).info("alias %r moved from job %s to job %s", alias, previous, self.id)
        return Job.get_or_none(Job.id == previous)

    def remove_alias(self, alias: str) -> None:
        """Remove ``alias`` from this job (an error when it does not point here)."""
        from aiqc.exceptions import ValidationError
        from aiqc.tags import check_alias

        check_alias(alias)
        removed = JobAlias.delete().where((JobAlias.name == alias) & (JobAlias.job == self.id)).execute()
        if not removed:
            raise ValidationError.expected("alias", f"one of job {self.id}'s aliases {self.aliases!r}", alias)

    @property
    def hyperparameters(self) -> dict:
        """The job's hyperparameters, ``{name: value}``."""
        return self.hyperparamset.hyperparameters

    @property
    def fold_index(self) -> int | None:
        """The index of the job's fold, or None without cross-validation."""
        return None if self.fold_id is None else self.fold.fold_index

    def get_model(self) -> Any:
        """The trained model (keras.Model / torch.nn.Module), loaded from the database."""
        from aiqc.backends import get_backend
        from aiqc.exceptions import AIQCError
        from aiqc.orm.result import TrainedModel

        record = TrainedModel.get_or_none(TrainedModel.job == self)
        if record is None:
            raise AIQCError(f"job {self.id} has no stored model (state {self.state}).")
        experiment = self.queue.experiment
        backend = get_backend(experiment.library)
        fns = experiment.load_functions()

        def rebuild():
            return fns["fn_build"](*self.input_shapes(), **self.hyperparameters)

        return backend.load(bytes(record.blob), rebuild)

    def input_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(features shape, label shape) of one sample, as fn_build received them: stored with
        the job when it was recorded (a job recorded by an older aiqc: its training split is
        encoded to learn them)."""
        if self.features_shape is not None and self.label_shape is not None:
            return tuple(self.features_shape), tuple(self.label_shape)
        samples = self.queue.experiment.splitset.samples("train", self.fold_index)
        return samples["features"].shape[1:], samples["labels"].shape[1:]

    def metrics(self) -> dict[str, dict[str, float]]:
        """``{split: {metric: value}}`` of a COMPLETE job."""
        from aiqc.orm.result import Metric

        out: dict[str, dict[str, float]] = {}
        for row in Metric.select().where(Metric.job == self).order_by(Metric.id):
            out.setdefault(row.split, {})[row.name] = float("nan") if row.value is None else row.value
        return out

    def history(self) -> dict[str, list[float]]:
        """Per-epoch values, e.g. ``{"loss": [...], "val_loss": [...]}``."""
        from aiqc.orm.result import HistoryEntry

        out: dict[str, list[float]] = {}
        for row in HistoryEntry.select().where(HistoryEntry.job == self).order_by(HistoryEntry.name, HistoryEntry.epoch):
            out.setdefault(row.name, []).append(float("nan") if row.value is None else row.value)
        return out

    def history_to_pandas(self) -> "pd.DataFrame":
        """One row per epoch, one column per recorded name (loss, val_loss, ...)."""
        from aiqc.results import history_to_pandas

        return history_to_pandas(self)

    def predict(self, df: "pd.DataFrame | dict | list[dict]") -> "pd.DataFrame":
        """Predict raw rows (a DataFrame, a dict for one row, or a list of dicts; excluded
        columns such as an ID are ignored) through the stored encoders and model; returns
        ``prediction`` in the label's original values (+ class probabilities)."""
        from aiqc.inference import predict

        return predict(self, df)

    def export(self, path: str | Path) -> Path:
        """Write this COMPLETE job as one self-contained file (a zip, e.g. ``'churn.aiqc'``): the
        model in its library's safe format, the fitted encoders, the feature schema, the classes,
        the job's metrics and the versions it was made under. ``aiqc.load_predictor(path)``
        predicts from it as this job does, with no database; it unpickles the encoders, so share
        it only with people who trust you. Returns the file's absolute path."""
        from aiqc.export import export

        return export(self, path)

    def plot_learning_curve(self) -> "go.Figure":
        """Chart of the loss and each recorded metric per epoch, train against validation."""
        from aiqc.plots import plot_learning_curve

        return plot_learning_curve(self)

    def plot_confusion_matrix(self, splits: list[str] | None = None) -> "go.Figure":
        """Confusion-matrix heatmaps, one per split (default: every measured split); classification only."""
        from aiqc.plots import plot_confusion_matrix

        return plot_confusion_matrix(self, splits)

    def plot_roc_curve(self, split: str = "test") -> "go.Figure":
        """Chart of the ROC curve (binary) or one-vs-rest curves (multiclass) on ``split``, with each AUC."""
        from aiqc.plots import plot_roc_curve

        return plot_roc_curve(self, split)

    def plot_precision_recall(self, split: str = "test") -> "go.Figure":
        """Chart of precision against recall on ``split``, with each average precision."""
        from aiqc.plots import plot_precision_recall

        return plot_precision_recall(self, split)

    def plot_regression(self, split: str = "test") -> "go.Figure":
        """Charts of predicted against actual values and of residuals on ``split``; regression only."""
        from aiqc.plots import plot_regression

        return plot_regression(self, split)

    def predictions(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The stored ``(row indices, predictions, probabilities)`` of ``split``."""
        from aiqc.orm.result import Prediction

        row = Prediction.get_or_none((Prediction.job == self) & (Prediction.split == split))
        if row is None:
            from aiqc.exceptions import ValidationError

            have = [p.split for p in Prediction.select(Prediction.split).where(Prediction.job == self)]
            raise ValidationError.expected("split", f"one of {have!r}", split)
        return row.indices, row.predictions, row.probabilities


class JobAlias(BaseModel):
    """A name people give a job (``'churn-prod'``), unique in the database: :meth:`Job.set_alias`
    moves it from job to job, :meth:`Job.get_by_alias` follows it."""

    name = pw.TextField(unique=True)
    job = pw.ForeignKeyField(Job, backref="alias_rows", on_delete="CASCADE")
    updated_at = pw.DateTimeField(default=utcnow)
