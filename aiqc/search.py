"""Search spaces and strategies: random, Bayesian (TPE) and Gaussian-process sampling
through Optuna's ask/tell interface, with aiqc's tables as the only record.

    hyperparameters = {"neuron_count": aiqc.search.Int(8, 128, log=True),
                       "learning_rate": aiqc.search.Float(1e-4, 1e-1, log=True),
                       "activation": aiqc.search.Categorical(["relu", "tanh"]),
                       "epoch_count": [30]}
    aiqc.Experiment.make(..., hyperparameters=hyperparameters,
                         search=aiqc.search.Search(strategy="bayesian", n_trials=40, pruner="median"))

Each trial is a Hyperparamset with its Jobs (repeats x folds). This module holds the
search space and settings, with no database and no Optuna at import; :mod:`aiqc.sampling`
rebuilds the sampler from the finished trials in the database before each new trial.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any

from aiqc.analysis import AnalysisType
from aiqc.exceptions import MissingExtraError, ValidationError
from aiqc.metrics import MetricSet, lower_is_better

MARK = "__aiqc_search__"
STRATEGIES = ("grid", "random", "bayesian", "gp")
PRUNERS = ("median", "successive_halving")

__all__ = ["Int", "Float", "Categorical", "Search", "STRATEGIES", "PRUNERS"]


def _number(value: Any, parameter: str, integer: bool) -> Any:
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or (not integer and not math.isfinite(value)):
        raise ValidationError.expected(parameter, "an integer" if integer else "a finite number", value)
    return int(value) if integer else float(value)


def _check_range(cls: str, low: Any, high: Any, log: bool) -> None:
    if not low < high:
        raise ValidationError(f"{cls}: expected low < high (a non-empty range); received low={low!r}, high={high!r}.")
    if log and low <= 0:
        raise ValidationError(f"{cls}: expected low > 0 with log=True (a log scale has no zero); received low={low!r}.")


@dataclass(frozen=True)
class Int:
    """Integers in ``[low, high]``, optionally sampled on a log scale."""

    low: int
    high: int
    log: bool = False
    step: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "low", _number(self.low, "Int.low", True))
        object.__setattr__(self, "high", _number(self.high, "Int.high", True))
        object.__setattr__(self, "step", _number(self.step, "Int.step", True))
        _check_range("Int", self.low, self.high, self.log)
        if self.step < 1 or (self.log and self.step != 1):
            raise ValidationError.expected("Int.step", "an integer >= 1 (and 1 with log=True)", self.step)

    def to_optuna(self) -> Any:
        """The same range as an Optuna ``IntDistribution``."""
        from optuna.distributions import IntDistribution

        return IntDistribution(self.low, self.high, log=self.log, step=self.step)


@dataclass(frozen=True)
class Float:
    """Floats in ``[low, high]``, optionally sampled on a log scale."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "low", _number(self.low, "Float.low", False))
        object.__setattr__(self, "high", _number(self.high, "Float.high", False))
        _check_range("Float", self.low, self.high, self.log)

    def to_optuna(self) -> Any:
        """The same range as an Optuna ``FloatDistribution``."""
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, self.high, log=self.log)


@dataclass(frozen=True)
class Categorical:
    """One of ``choices`` (numbers, strings, bools or None)."""

    choices: tuple

    def __post_init__(self) -> None:
        choices = self.choices
        if isinstance(choices, (str, bytes)) or not isinstance(choices, (list, tuple)) or len(choices) == 0:
            raise ValidationError.expected("Categorical.choices", "a non-empty list of values", choices)
        for choice in choices:
            if not isinstance(choice, (str, int, float, bool, type(None))):
                raise ValidationError.expected("Categorical.choices", "numbers, strings, bools or None", choice)
        object.__setattr__(self, "choices", tuple(choices))

    def to_optuna(self) -> Any:
        """The same choices as an Optuna ``CategoricalDistribution``."""
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(list(self.choices))


DISTRIBUTIONS = {"int": Int, "float": Float, "categorical": Categorical}


def is_distribution(value: Any) -> bool:
    """Whether ``value`` is a search distribution (:class:`Int`, :class:`Float` or :class:`Categorical`)."""
    return isinstance(value, (Int, Float, Categorical))


def to_json(value: Any) -> Any:
    """Distributions become tagged dicts so a grid with distributions is plain JSON."""
    if not is_distribution(value):
        return value
    kind = {Int: "int", Float: "float", Categorical: "categorical"}[type(value)]
    data = asdict(value)
    if kind == "categorical":
        data["choices"] = list(value.choices)
    return {MARK: kind, **data}


def from_json(value: Any) -> Any:
    """The inverse of :func:`to_json`: a tagged dict becomes its distribution again; other values are unchanged."""
    if isinstance(value, dict) and MARK in value:
        data = {k: v for k, v in value.items() if k != MARK}
        return DISTRIBUTIONS[value[MARK]](**data)
    return value


@dataclass(frozen=True)
class Search:
    """How to explore the hyperparameters.

    strategy: ``grid`` (every combination of lists; the default), ``random``, ``bayesian``
        (TPE) or ``gp`` (Gaussian process).
    n_trials: combinations to try (required unless grid); each trains repeats x folds jobs.
    metric, split: what a trial's value is: the mean of ``metric`` on ``split`` over its jobs.
        Default: accuracy (classification) or r2 (regression), on the validation split.
    direction: ``maximize`` or ``minimize``; default from the metric (losses and errors are minimised).
    seed: makes sampling (and each job's seed) reproducible.
    pruner: None, ``median`` or ``successive_halving``: stop a job whose per-epoch ``prune_on``
        value (a history name such as ``val_loss``) is worse than finished trials' at the same epoch.
    """

    strategy: str = "grid"
    n_trials: int | None = None
    metric: str | None = None
    split: str = "validation"
    direction: str | None = None
    seed: int | None = None
    pruner: str | None = None
    prune_on: str = "val_loss"
    n_startup_trials: int = 5
    n_warmup_epochs: int = 1
    reduction_factor: int = 3
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, value: Any) -> "Search | None":
        """A Search from the ``search`` argument: None, a Search, or a dict of its settings."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(cls.__dataclass_fields__) - {"extra"})
            if unknown:
                raise ValidationError(f"search: expected keys among {sorted(cls.__dataclass_fields__)[:-1]!r}; "
                                      f"received unknown keys {unknown!r}.")
            return cls(**value)
        raise ValidationError.expected("search", "None, a dict or aiqc.search.Search(...)", value)

    def resolved(self, metrics: MetricSet | AnalysisType, has_distributions: bool) -> Search:
        """Checked, with defaults filled in from the experiment's metrics (or an analysis type's)."""
        spec = metrics if isinstance(metrics, MetricSet) else AnalysisType.parse(metrics).spec.metric_set
        if self.strategy not in STRATEGIES:
            raise ValidationError.expected("search.strategy", f"one of {STRATEGIES!r}", self.strategy)
        if self.pruner is not None and self.pruner not in PRUNERS:
            raise ValidationError.expected("search.pruner", f"None or one of {PRUNERS!r}", self.pruner)
        if self.strategy == "grid":
            if has_distributions:
                raise ValidationError(
                    "hyperparameters: expected lists only with search strategy 'grid'; received distributions "
                    "(aiqc.search.Int/Float/Categorical). Use strategy='random', 'bayesian' or 'gp'."
                )
            if self.n_trials is not None:
                raise ValidationError.expected("search.n_trials", "None with strategy 'grid' (the grid decides)",
                                               self.n_trials)
        elif isinstance(self.n_trials, bool) or not isinstance(self.n_trials, numbers.Integral) or self.n_trials < 1:
            raise ValidationError.expected("search.n_trials", "an integer >= 1", self.n_trials)
        metric = spec.check(self.metric, "search.metric")
        if self.split not in ("train", "validation", "test"):
            raise ValidationError.expected("search.split", "'train', 'validation' or 'test'", self.split)
        direction = self.direction or spec.direction(metric)
        if direction not in ("maximize", "minimize"):
            raise ValidationError.expected("search.direction", "'maximize' or 'minimize'", self.direction)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral)
                                      or self.seed < 0):
            raise ValidationError.expected("search.seed", "None or an integer >= 0", self.seed)
        for name in ("n_startup_trials", "n_warmup_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValidationError.expected(f"search.{name}", "an integer >= 0", value)
        if isinstance(self.reduction_factor, bool) or not isinstance(self.reduction_factor, int) or self.reduction_factor < 2:
            raise ValidationError.expected("search.reduction_factor", "an integer >= 2", self.reduction_factor)
        if not isinstance(self.prune_on, str):
            raise ValidationError.expected("search.prune_on", "a history name such as 'val_loss'", self.prune_on)
        if self.strategy != "grid":
            require_optuna()
        return Search(self.strategy, self.n_trials, metric, self.split, direction, self.seed, self.pruner,
                      self.prune_on, self.n_startup_trials, self.n_warmup_epochs, self.reduction_factor)

    @property
    def samples(self) -> bool:
        """Whether a sampler chooses the combinations (every strategy but grid)."""
        return self.strategy != "grid"

    @property
    def prune_minimize(self) -> bool:
        """Whether a smaller ``prune_on`` value is better (losses and errors)."""
        return lower_is_better(self.prune_on)

    def to_json(self) -> dict:
        """The settings as stored in ``experiment.search``."""
        return {k: v for k, v in asdict(self).items() if k != "extra"}


def require_optuna() -> None:
    """Raise MissingExtraError unless optuna is installed (the ``aiqc[search]`` extra)."""
    import importlib.util

    if importlib.util.find_spec("optuna") is None:
        raise MissingExtraError(
            "search: sampling strategies need optuna, which is not installed; "
            "install it with: pip install 'aiqc[search]'"
        )


def check_space(hyperparameters: dict, search: Search | None) -> dict[str, Any]:
    """The searched names -> distribution (lists of several values are categorical)."""
    space = {}
    for name, value in (hyperparameters or {}).items():
        if is_distribution(value):
            space[name] = value
        elif search is not None and search.samples and isinstance(value, (list, tuple)) and len(value) > 1:
            space[name] = Categorical(list(value))
    return space


def constants(hyperparameters: dict) -> dict[str, Any]:
    """Names with a single value in a sampled search."""
    return {n: v[0] for n, v in (hyperparameters or {}).items()
            if isinstance(v, (list, tuple)) and len(v) == 1}


def job_seed(seed: int, trial: int, repeat: int, fold: int) -> int:
    """A job's seed, derived deterministically from the search seed, trial, repeat and fold."""
    return (seed * 1_000_003 + trial * 10_007 + repeat * 101 + fold) % (2**31 - 1)


def dumps_grid(hyperparameters: dict | None) -> dict:
    """A grid of lists and distributions as plain JSON (distributions become tagged dicts)."""
    return {n: to_json(v) for n, v in (hyperparameters or {}).items()}


def loads_grid(stored: dict | None) -> dict:
    """The grid back from :func:`dumps_grid`'s JSON, with distribution objects."""
    return {n: from_json(v) for n, v in (stored or {}).items()}

