"""The sampler of a search, rebuilt from aiqc's tables before each new trial.

Optuna's ask/tell interface chooses the combinations; aiqc's tables stay the only record
(every trial is a Hyperparamset with ordinary Jobs). Before each trial an in-memory study
is filled with the finished trials found in the database, so a search resumes after a
crash and is shared by several workers; with ``seed`` set, a search run by one worker is
reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


def search_space(experiment: Any) -> dict[str, Any]:
    """The searched names of an experiment -> their distributions."""
    return check_space(loads_grid(experiment.hyperparameters), experiment.search_settings)


def trial_records(experiment: Any, search: Search) -> list[TrialRecord]:
    """Per trial (hyperparamset): its state, value and mean intermediate value per epoch."""
    from aiqc.orm import Hyperparamset, IntermediateValue, Job, Metric

    jobs_by_trial: dict[int, list] = {}
    for job in Job.select(Job.id, Job.state, Job.hyperparamset).join(Hyperparamset).where(
            Hyperparamset.experiment == experiment):
        jobs_by_trial.setdefault(job.hyperparamset_id, []).append(job)
    values = dict(Metric.select(Metric.job, Metric.value).join(Job).join(Hyperparamset)
                  .where((Hyperparamset.experiment == experiment) & (Metric.split == search.split)
                         & (Metric.name == search.metric)).tuples())
    intermediate: dict[int, dict[int, list]] = {}
    for job_id, epoch, value in (IntermediateValue.select(IntermediateValue.job, IntermediateValue.epoch,
                                                          IntermediateValue.value).join(Job).join(Hyperparamset)
                                 .where(Hyperparamset.experiment == experiment).tuples()):
        intermediate.setdefault(job_id, {}).setdefault(epoch, []).append(value)
    trials = []
    for hyperparamset in experiment.hyperparamsets.order_by(Hyperparamset.index):
        jobs = jobs_by_trial.get(hyperparamset.id, [])
        state = TrialState.of_jobs({j.state for j in jobs})
        scores = [values[j.id] for j in jobs if values.get(j.id) is not None and j.state is JobState.COMPLETE]
        per_epoch: dict[int, list] = {}
        for job in jobs:
            for epoch, vs in intermediate.get(job.id, {}).items():
                per_epoch.setdefault(epoch, []).extend(vs)
        trials.append(TrialRecord(
            number=hyperparamset.index, hyperparamset_id=hyperparamset.id, state=state,
            params=hyperparamset.hyperparameters,
            value=(sum(scores) / len(scores)) if scores and state is TrialState.COMPLETE else None,
            intermediate={e: sum(v) / len(v) for e, v in sorted(per_epoch.items()) if v}))
    return trials


def build_study(experiment: Any, search: Search, space: dict[str, Any], sampler_seed: int | None) -> tuple[Any, dict]:
    """An in-memory Optuna study holding the finished trials recorded in aiqc's tables."""
    import optuna
    from optuna.trial import create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    samplers = {
        "random": lambda: optuna.samplers.RandomSampler(seed=sampler_seed),
        "bayesian": lambda: optuna.samplers.TPESampler(seed=sampler_seed, n_startup_trials=search.n_startup_trials),
        "gp": lambda: optuna.samplers.GPSampler(seed=sampler_seed, n_startup_trials=search.n_startup_trials),
    }
    study = optuna.create_study(direction=search.direction, sampler=samplers[search.strategy]())
    distributions = {n: d.to_optuna() for n, d in space.items()}
    for record in trial_records(experiment, search):
        if not record.state.is_finished or (record.state is TrialState.COMPLETE and record.value is None):
            continue
        params = {n: record.params[n] for n in distributions if n in record.params}
        if len(params) != len(distributions):
            continue
        state = optuna.trial.TrialState[record.state.name]  # aiqc's trial states carry Optuna's names
        study.add_trial(create_trial(params=params, distributions=distributions, state=state,
                                     value=record.value if record.state is TrialState.COMPLETE else None,
                                     intermediate_values=record.intermediate))
    return study, distributions


def next_trial(experiment: Any) -> dict | None:
    """The next combination to try, or None once ``n_trials`` exist."""
    search = experiment.search_settings
    existing = experiment.hyperparamsets.count()
    if existing >= search.n_trials:
        return None
    grid = loads_grid(experiment.hyperparameters)
    space = check_space(grid, search)
    seed = None if search.seed is None else search.seed + existing
    study, distributions = build_study(experiment, search, space, seed)
    trial = study.ask(distributions)
    return {**constants(grid), **trial.params}
