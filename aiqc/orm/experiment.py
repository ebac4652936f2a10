"""Experiment (what to train: library, analysis type, user functions, grid) and
Hyperparamset (one combination of the grid)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import peewee as pw

from aiqc.analysis import AnalysisType
from aiqc.backends import Library
from aiqc.orm.base import BaseModel, EnumField, JSONField
from aiqc.orm.splitset import Splitset

if TYPE_CHECKING:
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
    functions = pw.BlobField()  # cloudpickle of {"fn_build": ..., ...}
    sources = JSONField()  # {"fn_build": "def fn_build(...): ...", ...}
    name = pw.CharField(null=True)
    description = pw.TextField(null=True)

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
        """
        from aiqc.experiment import make_experiment

        return make_experiment(
            library=library, analysis_type=analysis_type, fn_build=fn_build, fn_train=fn_train,
            fn_lose=fn_lose, fn_optimize=fn_optimize, fn_predict=fn_predict, repeat_count=repeat_count,
            hyperparameters=hyperparameters, splitset_id=splitset_id, hide_test=hide_test,
            search=search, name=name, description=description,
        )

    @staticmethod
    def from_config(path: Any, overrides: list[str] | None = None) -> Queue:
        """Build the queue of a YAML spec (as ``aiqc run`` does, without running it)."""
        from aiqc.spec import from_config

        return from_config(path, overrides)

    def load_functions(self) -> dict[str, Any]:
        """The user's functions, deserialised (None for defaults)."""
        import cloudpickle

        return cloudpickle.loads(bytes(self.functions))

    @property
    def search_settings(self) -> Search | None:
        """The :class:`aiqc.search.Search` this experiment was made with; None for a plain grid."""
        from aiqc.search import Search

        return None if not self.search else Search(**self.search)

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
