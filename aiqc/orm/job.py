"""Queue (the jobs of one experiment) and Job (one combination x repeat x fold)."""

from __future__ import annotations

import peewee as pw

from aiqc.orm.base import BaseModel, EnumField
from aiqc.orm.experiment import Experiment, Hyperparamset
from aiqc.orm.splitset import Fold
from aiqc.states import JobState


class Queue(BaseModel):
    experiment = pw.ForeignKeyField(Experiment, backref="queues", on_delete="CASCADE")
    output_dir = pw.TextField(null=True)  # set by `aiqc run`: config, log, metrics, report

    def to_config(self, path):
        """Write a YAML spec (plus the functions' source as a module) that reproduces this queue."""
        from aiqc.spec import export

        return export(self, path)

    def run_jobs(self, workers: int = 1, *, threads: int | None = None, progress: bool = True,
                 retry_failed: bool = False):
        """Train every job not yet COMPLETE; returns a :class:`~aiqc.runner.RunSummary`.

        ``workers=1`` runs jobs one at a time in this process; ``workers=N`` starts N local
        worker processes (spawned) that claim jobs from the database, so no job runs twice.
        Calling it again after a crash or Ctrl-C finishes exactly the remaining jobs;
        FAILED jobs stay failed unless ``retry_failed=True``. ``threads`` caps each worker's TF/torch intra-op threads
        (default: CPU cores / workers).
        """
        from aiqc.runner import run_queue

        return run_queue(self, workers=workers, threads=threads, progress=progress, retry_failed=retry_failed)

    def state_counts(self) -> dict[JobState, int]:
        """Jobs per state, every state present (zero where none)."""
        counts = dict.fromkeys(JobState, 0)
        query = Job.select(Job.state, pw.fn.COUNT(Job.id).alias("n")).where(Job.queue == self).group_by(Job.state)
        for row in query:
            counts[row.state] = row.n
        return counts

    def finished_count(self) -> int:
        """Jobs that are done with: COMPLETE, PRUNED or FAILED."""
        return self.jobs.where(Job.state.in_(JobState.finished())).count()

    @property
    def job_count(self) -> int:
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

    def best_params(self, metric: str | None = None, split: str = "validation") -> dict:
        """The hyperparameters of the best combination: its mean ``metric`` over repeats and
        folds (COMPLETE jobs) is the best on ``split``."""
        from aiqc.results import best_params

        return best_params(self, metric, split)

    # --- results ---------------------------------------------------------------------
    def metrics_to_pandas(self, selected_metrics=None, sort_by=None, ascending: bool = False, states=None):
        """One row per job x split: ids, repeat, fold, split, hyperparameters, metrics, state.
        ``states`` filters, e.g. ``["COMPLETE"]`` (default: COMPLETE and PRUNED jobs)."""
        from aiqc.results import metrics_to_pandas

        return metrics_to_pandas(self, selected_metrics, sort_by, ascending, states)

    def metrics_aggregate(self, selected_metrics=None, stats=("mean", "std", "min", "max")):
        """Per hyperparameter combination and split: mean/std/min/max across repeats and folds."""
        from aiqc.results import metrics_aggregate

        return metrics_aggregate(self, selected_metrics, stats)

    def best_job(self, metric: str | None = None, split: str = "validation") -> "Job":
        """The COMPLETE job with the best ``metric`` on ``split`` (lower is better for losses/errors)."""
        from aiqc.results import best_job

        return best_job(self, metric, split)

    def plot_performance(self, metric: str | None = None, min_score=None, max_score=None):
        from aiqc.plots import plot_performance

        return plot_performance(self, metric, min_score, max_score)

    def plot_hyperparameters(self, metric: str | None = None, split: str = "validation"):
        from aiqc.plots import plot_hyperparameters

        return plot_hyperparameters(self, metric, split)

    def plot_repeat_spread(self, metric: str | None = None, split: str = "validation"):
        from aiqc.plots import plot_repeat_spread

        return plot_repeat_spread(self, metric, split)

    def plot_optimization_history(self):
        from aiqc.plots import plot_optimization_history

        return plot_optimization_history(self)

    def plot_param_importance(self):
        from aiqc.plots import plot_param_importance

        return plot_param_importance(self)

    def plot_contour(self, x: str, y: str):
        from aiqc.plots import plot_contour

        return plot_contour(self, x, y)

    def plot_slice(self):
        from aiqc.plots import plot_slice

        return plot_slice(self)

    def plot_intermediate_values(self):
        from aiqc.plots import plot_intermediate_values

        return plot_intermediate_values(self)

    def report(self, path):
        """Write one self-contained HTML file (tables + every chart); returns its path."""
        from aiqc.report import write_report

        return write_report(self, path)


class Job(BaseModel):
    queue = pw.ForeignKeyField(Queue, backref="jobs", on_delete="CASCADE")
    hyperparamset = pw.ForeignKeyField(Hyperparamset, backref="jobs", on_delete="CASCADE")
    fold = pw.ForeignKeyField(Fold, backref="jobs", null=True, on_delete="CASCADE")
    repeat_index = pw.IntegerField()
    seed = pw.IntegerField()
    state = EnumField(JobState, default=JobState.QUEUED, index=True)
    worker = pw.CharField(null=True)  # "host:pid:token" of the worker running it
    attempts = pw.IntegerField(default=0)
    heartbeat_at = pw.DateTimeField(null=True)
    started_at = pw.DateTimeField(null=True)
    finished_at = pw.DateTimeField(null=True)
    seconds = pw.FloatField(null=True)  # wall time of the last run
    error = pw.TextField(null=True)  # traceback of the last failure

    @property
    def hyperparameters(self) -> dict:
        return self.hyperparamset.hyperparameters

    @property
    def fold_index(self) -> int | None:
        return None if self.fold_id is None else self.fold.fold_index

    def get_model(self):
        """The trained model (keras.Model / torch.nn.Module), loaded from the database."""
        from aiqc.backends import get_backend
        from aiqc.exceptions import AIQCError
        from aiqc.orm.result import TrainedModel

        record = TrainedModel.get_or_none(TrainedModel.job == self)
        if record is None:
            raise AIQCError(f"job {self.id} has no stored model (state {self.state}).")
        experiment = self.queue.experiment
        backend = get_backend(experiment.library)
        splitset = experiment.splitset
        fns = experiment.load_functions()
        fold = self.fold_index

        def rebuild():
            samples = splitset.samples("train", fold)
            return fns["fn_build"](samples["features"].shape[1:], samples["labels"].shape[1:], **self.hyperparameters)

        return backend.load(bytes(record.blob), rebuild)

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

    def history_to_pandas(self):
        """One row per epoch, one column per recorded name (loss, val_loss, ...)."""
        from aiqc.results import history_to_pandas

        return history_to_pandas(self)

    def predict(self, df):
        """Predict raw rows (original columns) through the stored encoders and model;
        returns ``prediction`` in the label's original values (+ class probabilities)."""
        from aiqc.inference import predict

        return predict(self, df)

    def plot_learning_curve(self):
        from aiqc.plots import plot_learning_curve

        return plot_learning_curve(self)

    def plot_confusion_matrix(self, splits=None):
        from aiqc.plots import plot_confusion_matrix

        return plot_confusion_matrix(self, splits)

    def plot_roc_curve(self, split: str = "test"):
        from aiqc.plots import plot_roc_curve

        return plot_roc_curve(self, split)

    def plot_precision_recall(self, split: str = "test"):
        from aiqc.plots import plot_precision_recall

        return plot_precision_recall(self, split)

    def plot_regression(self, split: str = "test"):
        from aiqc.plots import plot_regression

        return plot_regression(self, split)

    def predictions(self, split: str):
        """The stored ``(row indices, predictions, probabilities)`` of ``split``."""
        from aiqc.orm.result import Prediction

        row = Prediction.get_or_none((Prediction.job == self) & (Prediction.split == split))
        if row is None:
            from aiqc.exceptions import ValidationError

            have = [p.split for p in Prediction.select(Prediction.split).where(Prediction.job == self)]
            raise ValidationError.expected("split", f"one of {have!r}", split)
        return row.indices, row.predictions, row.probabilities
