"""The vocabulary of states: a job's (stored in ``job.state``) and a search trial's.

These enums are the only place where state names are spelled out; everything else
compares members, so a typo is an AttributeError, not a silently empty query.
"""

from __future__ import annotations

import enum

__all__ = ["JobState", "TrialState"]


class JobState(str, enum.Enum):
    """The state of a job, stored as text; never inferred from nulls.

    ``QUEUED -> RUNNING -> COMPLETE | PRUNED | FAILED``; a RUNNING job whose worker died
    goes back to QUEUED. Members compare equal to their names (``JobState.COMPLETE == "COMPLETE"``).
    """

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"  # stopped early by a pruner; measured on its partly trained model
    FAILED = "FAILED"

    def __str__(self) -> str:
        return self.value

    @property
    def is_finished(self) -> bool:
        """Whether the job is done with (COMPLETE, PRUNED or FAILED): no worker will run it again."""
        return self in FINISHED

    @property
    def is_measured(self) -> bool:
        """Whether the job has metrics, predictions and a model (COMPLETE or PRUNED)."""
        return self in MEASURED

    @classmethod
    def finished(cls) -> frozenset[JobState]:
        """The states of jobs that are done with: COMPLETE, PRUNED and FAILED."""
        return FINISHED

    @classmethod
    def parse_many(cls, states: object, parameter: str = "states") -> list[JobState]:
        """A state name, a member or a list of them as members; a ValidationError otherwise."""
        from aiqc.exceptions import ValidationError

        values = [states] if isinstance(states, str) else states
        if not isinstance(values, (list, tuple, set, frozenset)):
            raise ValidationError.expected(parameter, f"names among {[s.value for s in cls]!r}", states)
        try:
            return [cls(s) for s in values]
        except ValueError:
            raise ValidationError.expected(parameter, f"names among {[s.value for s in cls]!r}", states) from None


FINISHED = frozenset({JobState.COMPLETE, JobState.PRUNED, JobState.FAILED})
MEASURED = frozenset({JobState.COMPLETE, JobState.PRUNED})


class TrialState(str, enum.Enum):
    """The state of a search trial (a hyperparameter combination), derived from its jobs:
    COMPLETE when all of them are, PRUNED or FAIL once none runs and one was pruned or
    failed, else RUNNING. The names are Optuna's, whose sampler is fed these trials."""

    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAIL = "FAIL"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def of_jobs(cls, states: set[JobState]) -> TrialState:
        """The state of a trial whose jobs are in ``states``."""
        if states and states == {JobState.COMPLETE}:
            return cls.COMPLETE
        if states & {JobState.QUEUED, JobState.RUNNING} or not states:
            return cls.RUNNING
        if JobState.PRUNED in states:
            return cls.PRUNED
        if JobState.FAILED in states:
            return cls.FAIL
        return cls.RUNNING

    @property
    def is_finished(self) -> bool:
        """Whether the trial has ended (its value, if any, is final)."""
        return self is not TrialState.RUNNING
