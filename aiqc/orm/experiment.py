"""Experiment (what to train: library, analysis type, user functions, grid) and
Hyperparamset (one combination of the grid)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import peewee as pw

from aiqc.analysis import AnalysisType
from aiqc.backends import Library
from aiqc.orm.base import BaseModel, EnumField, JSONField, PickledBlobField, TagsField, load_checked
from aiqc.orm.splitset import Splitset

if TYPE_CHECKING:
    from aiqc.metrics import MetricSet
    from aiqc.orm.job import Queue
    from aiqc.search import Search


class Experiment(BaseModel):
    """The user's functions are stored twice: serialised (cloudpickle, so any worker
    process can run them) and as source text (for people)."""

    splitset = pw.ForeignKeyField(Splitset, backref="experiments", on_delete="CASCADE")
    library = EnumField(Library)
    analysis_type = EnumField(AnalysisType)
    repeat_count = pw.IntegerField()
    hide_test = pw.BooleanField()
    hyperparameters = JSONField()  # as given: {name: [values] or a search distribution (tagged dict)}
    search = JSONField(null=True)  # aiqc.search.Search settings; null for a plain grid
    functions = PickledBlobField()  # sha256 header + cloudpickle of {"fn_build": ..., ...}
    sources = JSONField()  # {"fn_build": "def fn_build(...): ...", ...}
    name = pw.TextField(null=True)
    description = pw.TextField(null=True)
    tags = TagsField(null=True, default=list)  # ["churn", "baseline"]: what people filter queues by; null (no tags) in older files
    seed = pw.BigIntegerField(null=True)  # every job's seed derives from it; null in files made before it existed
    objective_metric = pw.TextField(null=True)  # what ranks jobs: the search's metric, make(metric=...) or default
    objective_split = pw.TextField(null=True)
    metric_functions = PickledBlobField(null=True)  # sha256 header + cloudpickle of {name: fn(y_true, y_pred, y_prob)}
    metric_directions = JSONField(null=True)  # {name: "maximize" | "minimize"} of the user's metrics
    positive_class = JSONField(null=True)  # binary: the class whose precision / recall / F1 are recorded

    @staticmethod
    def make(
        library: str,
        analysis_type: str,
        fn_build: Any,
        fn_train: Any,
        fn_lose: Any = None,
        fn_optimize: Any = None,
        fn_predict: Any = None,
        repeat_count: int = 1,
        hyperparameters: dict | None = None,
        splitset_id: int | None = None,
        hide_test: bool = False,
        *,
        search: Any = None,
        name: str | None = None,
        description: str | None = None,
        tags: list[str] | None = None,
        metrics: dict | None = None,
        metric: str | None = None,
        seed: int | None = None,
        positive_class: Any = None,
        max_jobs: int | None = 100_000,
    ) -> Queue:
        """Validate everything, then store the experiment, its grid, a Queue and one Job
        per combination x repeat x fold, in one transaction. Returns the Queue.

        User functions (``**hp`` receives one combination of ``hyperparameters``):

        - ``fn_build(features_shape, label_shape, **hp) -> model`` (keras.Model / torch.nn.Module)
        - ``fn_train(model, loser, optimizer, samples_train, samples_evaluate, **hp) -> model``;
          samples are ``{"features": ..., "labels": ...}``: numpy for Keras, tensors for PyTorch
        - ``fn_lose(**hp) -> loss`` (default: per library and analysis type)
        - ``fn_optimize(model, **hp) -> optimizer`` (default: Adamax); a function without a
          positional parameter is called as ``fn_optimize(**hp)``
        - ``fn_predict(model, samples_predict) -> (predictions, probabilities)``; for
          regression ``probabilities`` is None.

        ``search``: None (every combination of the lists) or :class:`aiqc.search.Search`
        (random / Bayesian / GP sampling of ``aiqc.search.Int/Float/Categorical`` values,
        ``n_trials``, and an optional pruner that stops hopeless jobs early).

        ``name``, ``description``, ``tags`` (a list of strings): what ``list_queues(tag=...)`` and
        ``aiqc list --tag`` filter on; change them later with ``queue.describe(...)`` / ``queue.set_tags(...)``.
        ``metrics``: the user's own metrics, ``{name: fn}`` or ``{name: (fn, 'minimize')}`` with
        ``fn(y_true, y_pred, y_prob) -> float``, recorded on every split beside the built-in ones.
        ``metric``: the queue's objective, what ``best_job()`` and the report rank by (default:
        the search's metric, else accuracy or r2), on the search's split or validation.
        ``seed``: every job's seed derives from it (drawn and stored when None), so the same
        seed reproduces the grid. ``positive_class`` (binary): the class whose precision,
        recall and F1 are recorded as ``*_positive`` (default: the second class in sorted order).
        ``max_jobs`` (default 100,000): the most jobs, combinations (or a sampled search's
        ``n_trials``) x repeats x folds, a make may store; counted before anything is expanded,
        more is refused before any write. None: no bound.
        """
        from aiqc.experiment import make_experiment

        return make_experiment(
            library=library, analysis_type=analysis_type, fn_build=fn_build, fn_train=fn_train,
            fn_lose=fn_lose, fn_optimize=fn_optimize, fn_predict=fn_predict, repeat_count=repeat_count,
            hyperparameters=hyperparameters, splitset_id=splitset_id, hide_test=hide_test,
            search=search, name=name, description=description, tags=tags, metrics=metrics, metric=metric, seed=seed,
            positive_class=positive_class, max_jobs=max_jobs,
        )

    @staticmethod
    def from_config(path: Any, overrides: list[str] | None = None, allow_modules: list[str] | None = None) -> Queue:
        """Build the queue of a YAML spec (as ``aiqc run`` does, without running it); modules other
        than ``sklearn.*`` and those beside the spec must be named in ``allow_modules``."""
        from aiqc.spec import from_config

        return from_config(path, overrides, allow_modules)

    def load_functions(self) -> dict[str, Any]:
        """The user's functions, deserialised (None for defaults) after their sha256 is verified
        (:class:`aiqc.exceptions.IntegrityError` when it differs). Unpickling runs code: only for
        databases you trust."""
        return load_checked(self.functions, f"experiment {self.id} field 'functions'")

    @property
    def search_settings(self) -> Search | None:
        """The :class:`aiqc.search.Search` this experiment was made with; None for a plain grid."""
        from aiqc.search import Search

        return None if not self.search else Search(**self.search)

    @property
    def metric_set(self) -> MetricSet:
        """The metrics its jobs record (the analysis type's and the user's own), their
        directions, and the objective metric as the default."""
        spec = self.analysis_type.spec
        custom = {n: d == "minimize" for n, d in (self.metric_directions or {}).items()}
        return spec.metric_set.extended(custom, default=self.objective_metric or spec.default_metric,
                                        owner=f"experiment {self.id} ({self.analysis_type})")

    @property
    def objective(self) -> tuple[str, str]:
        """(metric, split) that ranks this experiment's jobs when none is named."""
        return self.metric_set.default, self.objective_split or "validation"

    def positive_index(self) -> int:
        """Binary: the index (in the model's output order) of the positive class; 1 by default."""
        if self.positive_class is None:
            return 1
        return self.splitset.class_names().index(self.positive_class)

    def load_metric_functions(self) -> dict[str, Any]:
        """The user's own metrics, deserialised after their sha256 is verified (as
        :meth:`load_functions`): ``{name: fn(y_true, y_pred, y_prob)}``."""
        if self.metric_functions is None:
            return {}
        return load_checked(self.metric_functions, f"experiment {self.id} field 'metric_functions'")

    def hyperparameter_names(self) -> list[str]:
        """Every hyperparameter name of the experiment's combinations, in first-seen order."""
        names: list[str] = []
        for row in Hyperparamset.select(Hyperparamset.hyperparameters).where(Hyperparamset.experiment == self):
            names += [n for n in row.hyperparameters if n not in names]
        return names


class Hyperparamset(BaseModel):
    """One combination of an experiment's hyperparameters (one trial of a search)."""

    experiment = pw.ForeignKeyField(Experiment, backref="hyperparamsets", on_delete="CASCADE")
    index = pw.IntegerField()  # position in the grid, 0..n-1
    hyperparameters = JSONField()  # {name: value}

    class Meta:
        indexes = ((("experiment", "index"), True),)
