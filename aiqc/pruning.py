"""Pruning: per-epoch values reach aiqc while a job trains, and a pruner stops a job whose
trial is doing worse than the others at the same epoch.

The training service listens with a :class:`Reporter` while a job of a search trains
(:func:`aiqc.backends.epochs.listen`). The Keras backend adds a callback to the user's
``model.fit``; for PyTorch, :func:`aiqc.torch_fit` and :func:`aiqc.record_epoch` report each
epoch and raise :class:`aiqc.exceptions.JobPruned` when the job should stop. Repeats and
folds of a combination are judged together: a trial's value at an epoch is the mean over
its jobs that reached it.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from typing import Any, Iterator

from aiqc.backends import epochs
from aiqc.states import JobState, TrialState


class Reporter:
    """Stores the ``prune_on`` value of each epoch of one job and decides whether to stop it."""

    def __init__(self, job: Any, search: Any) -> None:
        self.job_id = job.id
        self.queue_id = job.queue_id
        self.trial_id = job.hyperparamset_id
        self.search = search
        self.pruned_at: int | None = None
        self._history: list[float] = []  # this job's reported values, by epoch
        self._complete_curves: dict[int, list[float]] | None = None  # epoch -> COMPLETE trials' means

    @contextlib.contextmanager
    def listening(self) -> Iterator[Reporter]:
        """Receive every epoch the job's training reports in this context."""
        with epochs.listen(self.report):
            yield self

    @property
    def pruned(self) -> bool:
        """Whether the pruner stopped the job."""
        return self.pruned_at is not None

    def report(self, epoch: int, values: dict) -> bool:
        """Store this epoch's ``prune_on`` value; True when the job should stop now."""
        from aiqc.orm import IntermediateValue

        value = (values or {}).get(self.search.prune_on)
        if value is None:
            return False
        value = float(value)
        self._history.append(value)
        stored = value if math.isfinite(value) else None
        (IntermediateValue.insert(job=self.job_id, epoch=epoch, value=stored)
         .on_conflict(conflict_target=[IntermediateValue.job, IntermediateValue.epoch],
                      update={IntermediateValue.value: stored}).execute())
        if self.search.pruner is None or self.pruned:
            return self.pruned
        decide = {"median": self._median, "successive_halving": self._halving}[self.search.pruner]
        if not math.isfinite(value) or decide(epoch):
            self.pruned_at = epoch
        return self.pruned

    # --- the decisions ---------------------------------------------------------------------
    def _trial_values(self, epoch: int) -> tuple[float | None, list[float]]:
        """(this trial's mean at ``epoch``, every other trial's mean at ``epoch``)."""
        from aiqc.orm import IntermediateValue, Job

        query = (IntermediateValue.select(Job.hyperparamset, IntermediateValue.value)
                 .join(Job).where((Job.queue == self.queue_id) & (IntermediateValue.epoch == epoch)
                                  & IntermediateValue.value.is_null(False)).tuples())
        per_trial: dict[int, list[float]] = {}
        for trial, value in query:
            per_trial.setdefault(trial, []).append(value)
        mine = per_trial.pop(self.trial_id, None)
        others = [statistics.fmean(v) for v in per_trial.values()]
        return (statistics.fmean(mine) if mine else None), others

    def _complete_trials(self) -> set[int]:
        from aiqc.orm import Job

        states: dict[int, set] = {}
        for trial, state in Job.select(Job.hyperparamset, Job.state).where(Job.queue == self.queue_id).tuples():
            states.setdefault(trial, set()).add(JobState(state))
        return {t for t, s in states.items() if TrialState.of_jobs(s) is TrialState.COMPLETE}

    def _worse(self, value: float, threshold: float) -> bool:
        return value > threshold if self.search.prune_minimize else value < threshold

    def _median(self, epoch: int) -> bool:
        """As Optuna's MedianPruner: the best value this job reached so far is worse than the
        median of COMPLETE trials' values at the same epoch (after warm-up). COMPLETE trials
        do not change while this job runs, so they are read once."""
        if epoch + 1 <= self.search.n_warmup_epochs:
            return False
        if self._complete_curves is None:
            self._complete_curves = self._curves_of_complete_trials()
        others = self._complete_curves.get(epoch, [])
        if len(others) < max(1, self.search.n_startup_trials):
            return False
        finite = [v for v in self._history if math.isfinite(v)]
        best = (min if self.search.prune_minimize else max)(finite)
        return self._worse(best, statistics.median(others))

    def _curves_of_complete_trials(self) -> dict[int, list[float]]:
        from aiqc.orm import IntermediateValue, Job

        complete = self._complete_trials() - {self.trial_id}
        per_trial: dict[tuple[int, int], list[float]] = {}
        query = (IntermediateValue.select(Job.hyperparamset, IntermediateValue.epoch, IntermediateValue.value)
                 .join(Job).where((Job.queue == self.queue_id) & IntermediateValue.value.is_null(False)).tuples())
        for trial, epoch, value in query:
            if trial in complete:
                per_trial.setdefault((trial, epoch), []).append(value)
        curves: dict[int, list[float]] = {}
        for (_, epoch), values in per_trial.items():
            curves.setdefault(epoch, []).append(statistics.fmean(values))
        return curves

    def _halving(self, epoch: int) -> bool:
        """Asynchronous successive halving: at rungs after 1, r, r**2, ... epochs, continue
        only in the top 1/r of every trial that reached the rung."""
        rate = self.search.reduction_factor
        reached = epoch + 1
        rung = 1
        while rung < reached:
            rung *= rate
        if rung != reached or reached <= self.search.n_warmup_epochs:
            return False
        mine, others = self._trial_values(epoch)
        if mine is None or len(others) + 1 < rate:
            return False
        ranked = sorted(others + [mine], reverse=not self.search.prune_minimize)
        keep = max(1, len(ranked) // rate)
        return self._worse(mine, ranked[keep - 1])
