"""The sampler of a search: an in-memory Optuna study kept in step with aiqc's tables.

Optuna's ask/tell interface chooses the combinations; aiqc's tables stay the only record
(every trial is a Hyperparamset with ordinary Jobs). Each process keeps one study per search
(:func:`_cached_study`, forgotten by :func:`aiqc.database.clear_caches`). Before each new
trial it reads only what changed since the last one (trials added since, and trials it saw
unfinished) and tells the study the newly finished ones, so asking costs the same at the
300th trial as at the first (for the random sampler; TPE's and GP's models grow with the
trials by nature). A search thus resumes after a crash and is shared by several workers;
with ``seed`` set, a search run by one worker is reproducible: it samples the same
combinations as a study rebuilt from every trial (:func:`build_study`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Collection

from peewee import fn

from aiqc import caches
from aiqc.search import Search, check_space, constants, loads_grid
from aiqc.states import JobState, TrialState

__all__ = ["TrialRecord", "trial_records", "build_study", "next_trial", "search_space"]


@dataclass
class TrialRecord:
    """One trial (hyperparamset) as the database holds it."""

    number: int  # the hyperparamset's index
    hyperparamset_id: int
    state: TrialState
    params: dict[str, Any]
    value: float | None  # mean of the search metric over its COMPLETE jobs; None unless COMPLETE
    intermediate: dict[int, float] = field(default_factory=dict)  # epoch -> mean reported value
    job_states: frozenset[JobState] = frozenset()

    @property
    def is_final(self) -> bool:
        """Whether the record can no longer change: every job is COMPLETE or PRUNED (a FAILED
        job can be queued again, ``run_jobs(retry_failed=True)``)."""
        return bool(self.job_states) and all(state.is_measured for state in self.job_states)


def search_space(experiment: Any) -> dict[str, Any]:
    """The searched names of an experiment -> their distributions."""
    return check_space(loads_grid(experiment.hyperparameters), experiment.search_settings)


def trial_records(experiment: Any, search: Search, after: int = -1, ids: Collection[int] = ()) -> list[TrialRecord]:
    """Per trial (hyperparamset) of the experiment, by index: its state, value and mean
    intermediate value per epoch. Every trial by default; else those past index ``after``
    and those whose hyperparamset id is in ``ids`` (each read through an index, so the cost
    is that of the trials read, not of the search)."""
    from aiqc.orm import Hyperparamset, IntermediateValue, Job, Metric

    trials = Hyperparamset.select(Hyperparamset.id).where(
        (Hyperparamset.experiment == experiment) & (Hyperparamset.index > after))
    if ids:
        trials |= Hyperparamset.select(Hyperparamset.id).where(Hyperparamset.id.in_(sorted(ids)))  # UNION
    selected = Job.hyperparamset.in_(trials)
    jobs_by_trial: dict[int, list] = {}
    for job_id, state, trial in Job.select(Job.id, Job.state, Job.hyperparamset).where(selected).tuples():
        jobs_by_trial.setdefault(trial, []).append((job_id, JobState(state)))
    values = dict(Metric.select(Metric.job, Metric.value).join(Job)
                  .where(selected & (Metric.split == search.split) & (Metric.name == search.metric)).tuples())
    intermediate: dict[int, dict[int, list]] = {}
    for job_id, epoch, value in (IntermediateValue.select(IntermediateValue.job, IntermediateValue.epoch,
                                                          IntermediateValue.value).join(Job).where(selected).tuples()):
        if value is not None:  # None: a value that was not finite (the job was pruned on it)
            intermediate.setdefault(job_id, {}).setdefault(epoch, []).append(value)
    records = []
    for hyperparamset in Hyperparamset.select().where(Hyperparamset.id.in_(trials)).order_by(Hyperparamset.index):
        jobs = jobs_by_trial.get(hyperparamset.id, [])
        states = frozenset(state for _, state in jobs)
        state = TrialState.of_jobs(set(states))
        scores = [values[j] for j, s in jobs if values.get(j) is not None and s is JobState.COMPLETE]
        per_epoch: dict[int, list] = {}
        for job_id, _ in jobs:
            for epoch, vs in intermediate.get(job_id, {}).items():
                per_epoch.setdefault(epoch, []).extend(vs)
        records.append(TrialRecord(
            number=hyperparamset.index, hyperparamset_id=hyperparamset.id, state=state,
            params=hyperparamset.hyperparameters,
            value=(sum(scores) / len(scores)) if scores and state is TrialState.COMPLETE else None,
            intermediate={e: sum(v) / len(v) for e, v in sorted(per_epoch.items()) if v}, job_states=states))
    return records


def _sampler(search: Search, seed: int | None) -> Any:
    """A new Optuna sampler of the search's strategy."""
    import optuna

    samplers = {
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "bayesian": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=search.n_startup_trials),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed, n_startup_trials=search.n_startup_trials),
    }
    return samplers[search.strategy]()


def _new_study(search: Search, sampler_seed: int | None) -> Any:
    """An empty in-memory Optuna study in the search's direction."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(direction=search.direction, sampler=_sampler(search, sampler_seed))


def _tell(study: Any, distributions: dict, record: TrialRecord) -> None:
    """Add a finished trial to ``study``; left out, as the sampler cannot use it: a COMPLETE
    trial without a value, or one whose combination lacks a searched name."""
    import optuna
    from optuna.trial import create_trial

    if record.state is TrialState.COMPLETE and record.value is None:
        return
    params = {n: record.params[n] for n in distributions if n in record.params}
    if len(params) != len(distributions):
        return
    state = optuna.trial.TrialState[record.state.name]  # aiqc's trial states carry Optuna's names
    study.add_trial(create_trial(params=params, distributions=distributions, state=state,
                                 value=record.value if record.state is TrialState.COMPLETE else None,
                                 intermediate_values=record.intermediate))


def build_study(experiment: Any, search: Search, space: dict[str, Any], sampler_seed: int | None) -> tuple[Any, dict]:
    """An in-memory Optuna study holding every finished trial recorded in aiqc's tables, read
    afresh (what the cached study of :func:`next_trial` equals, by index order)."""
    study = _new_study(search, sampler_seed)
    distributions = {n: d.to_optuna() for n, d in space.items()}
    for record in trial_records(experiment, search):
        if record.state.is_finished:
            _tell(study, distributions, record)
    return study, distributions


class _SearchStudy:
    """One search's study in this process, and which of the database's trials it holds.

    Trials at or below index :attr:`top` were read; of those, :attr:`unfinished` ones are
    not in the study yet, and :attr:`unsettled` ones are in it but may still change (a FAILED
    job can be queued again): both are read again before each trial. A trial in the study
    that did change (rare: failed jobs retried) makes the study start over from the database.
    """

    def __init__(self, search: Search, space: dict[str, Any]) -> None:
        self.search = search
        self.distributions = {n: d.to_optuna() for n, d in space.items()}
        self.lock = threading.Lock()  # workers in threads of one process take turns
        self._start_over()

    def _start_over(self) -> None:
        self.study = _new_study(self.search, None)
        self.top = -1
        self.unfinished: set[int] = set()  # hyperparamset ids
        self.unsettled: dict[int, TrialRecord] = {}  # hyperparamset id -> the record the study holds

    def update(self, experiment: Any) -> None:
        """Read the trials added or changed since the last update, and add the newly finished ones."""
        changed = trial_records(experiment, self.search, after=self.top, ids=self.unfinished | set(self.unsettled))
        if any(r.hyperparamset_id in self.unsettled and r != self.unsettled[r.hyperparamset_id] for r in changed):
            self._start_over()
            changed = trial_records(experiment, self.search)
        for record in changed:
            self.top = max(self.top, record.number)
            if record.hyperparamset_id in self.unsettled:
                continue  # unchanged: in the study already
            self.unfinished.discard(record.hyperparamset_id)
            if not record.state.is_finished:
                self.unfinished.add(record.hyperparamset_id)
                continue
            _tell(self.study, self.distributions, record)
            if not record.is_final:
                self.unsettled[record.hyperparamset_id] = record

    def ask(self, sampler_seed: int | None) -> dict[str, Any]:
        """The sampler's next combination of the searched names. The asked trial is closed
        as FAIL, which every sampler ignores: the study keeps only the database's trials."""
        import optuna

        self.study.sampler = _sampler(self.search, sampler_seed)
        trial = self.study.ask(self.distributions)
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return trial.params


@caches.register
@lru_cache(maxsize=8)
def _cached_study(database: str, experiment_id: int, created_at: Any) -> _SearchStudy:
    """This process's study of an experiment's search, per database (``created_at``: a
    database made anew at the same place never meets a study of the old one)."""
    from aiqc.orm import Experiment

    experiment = Experiment.get_by_id(experiment_id)
    return _SearchStudy(experiment.search_settings, search_space(experiment))


def next_trial(experiment: Any) -> tuple[int, dict] | None:
    """The next trial of a sampled search, ``(index, combination)``, or None once ``n_trials``
    exist. Trials are numbered 0, 1, ...: the next one's index is one past the highest, and
    with ``seed`` set its sampler's seed is ``seed + index``. Only reads: call it outside any
    transaction, then add the trial under Hyperparamset's unique (experiment, index), which
    tells the worker that lost a race for the index (it samples again, one index further)."""
    from aiqc.orm import Hyperparamset
    from aiqc.orm.base import database_key

    search = experiment.search_settings
    highest = Hyperparamset.select(fn.MAX(Hyperparamset.index)).where(Hyperparamset.experiment == experiment).scalar()
    index = 0 if highest is None else highest + 1
    if index >= search.n_trials:
        return None
    cached = _cached_study(database_key(), experiment.id, experiment.created_at)
    with cached.lock:
        cached.update(experiment)
        params = cached.ask(None if search.seed is None else search.seed + index)
    return index, {**constants(loads_grid(experiment.hyperparameters)), **params}
