"""Deleting a queue, a splitset or a dataset: what depends on it goes with it, what others
still use stays.

Each delete is planned first (:func:`plan`: the rows of each table that would go, who still
uses the record), then done in one write transaction (:func:`delete`), which plans again
under the write lock, refuses before the first write when something still uses the record,
and deletes children before parents, so the counts it returns are the rows each ``DELETE``
removed. A queue takes its jobs and what they produced (metrics, history, intermediate
values, predictions, models, aliases), and its experiment when no other queue runs it; it
never takes the splitset or the dataset, which other queues may share. A splitset goes only
when no queue uses it, with its folds and encoders, and its label and feature when no other
splitset uses them; a dataset only when no queue uses any of its splitsets, with all of them.
"""

from __future__ import annotations

import logging
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import peewee as pw

from aiqc import caches
from aiqc.database import ensure_setup, translated, write_transaction
from aiqc.exceptions import InUseError, ValidationError
from aiqc.orm import (MODELS, Dataset, DatasetArray, DatasetPart, Encoder, Experiment, Feature, Fold, HistoryEntry, Hyperparamset,
                      IntermediateValue, Job, JobAlias, Label, Metric, Prediction, Queue, Splitset, TrainedModel)
from aiqc.states import JobState

__all__ = ["KINDS", "Deleted", "DeletionPlan", "plan", "delete"]

logger = logging.getLogger(__name__)


#: how a count of each table's rows reads: (one, several)
_NOUNS = {
    "Dataset": ("dataset", "datasets"), "DatasetPart": ("dataset part", "dataset parts"),
    "DatasetArray": ("array part", "array parts"),
    "Label": ("label", "labels"), "Feature": ("feature", "features"), "Splitset": ("splitset", "splitsets"),
    "Fold": ("fold", "folds"), "Encoder": ("encoder", "encoders"), "Experiment": ("experiment", "experiments"),
    "Hyperparamset": ("hyperparamset", "hyperparamsets"), "Queue": ("queue", "queues"), "Job": ("job", "jobs"),
    "JobAlias": ("alias", "aliases"), "Metric": ("metric", "metrics"),
    "HistoryEntry": ("history entry", "history entries"),
    "IntermediateValue": ("intermediate value", "intermediate values"),
    "Prediction": ("prediction", "predictions"), "TrainedModel": ("trained model", "trained models"),
}
_ORDER = {model.__name__: index for index, model in enumerate(MODELS)}
#: at most this many users named in a refusal
_SHOWN = 20

#: one step of a delete: a table and which of its rows go
Step = tuple[type[pw.Model], Any]


def _counted(counts: Mapping[str, int]) -> str:
    """``"1 queue, 12 jobs, 504 metrics"``: the tables in creation order (parents first)."""
    return ", ".join(f"{n} {_NOUNS.get(table, (table, table))[n != 1]}"
                     for table, n in sorted(counts.items(), key=lambda item: _ORDER.get(item[0], len(_ORDER))) if n)


def _frozen(counts: Mapping[str, int]) -> Mapping[str, int]:
    """The tables with rows, parents first, as a read-only mapping."""
    ordered = sorted(((t, n) for t, n in counts.items() if n), key=lambda item: _ORDER.get(item[0], len(_ORDER)))
    return types.MappingProxyType(dict(ordered))


@dataclass(frozen=True)
class Deleted:
    """What a delete removed: ``counts`` is ``{table: rows deleted}`` (model names, e.g.
    ``"Metric"``; a table with no row deleted is left out). Reads as
    ``queue 3: 1 queue, 12 jobs, 504 metrics, ...``."""

    kind: str
    id: int
    counts: Mapping[str, int]

    @property
    def total(self) -> int:
        """Rows deleted, every table together."""
        return sum(self.counts.values())

    def __str__(self) -> str:
        return f"{self.kind} {self.id}: {_counted(self.counts)}"

    def __repr__(self) -> str:
        return f"Deleted({self})"


@dataclass(frozen=True)
class DeletionPlan:
    """What deleting a record would do: ``counts`` (``{table: rows}``, as :class:`Deleted`),
    ``kept`` (what it leaves, and why), ``used_by`` (the ``(queue id, name)`` of each queue
    that still uses it: the delete is refused), ``running`` (a queue's RUNNING job ids: refused
    unless forced) and ``aliases`` (a queue's job aliases that will stop resolving)."""

    kind: str
    id: int
    name: str | None
    counts: Mapping[str, int]
    kept: tuple[str, ...] = ()
    used_by: tuple[tuple[int, str | None], ...] = ()
    running: tuple[int, ...] = ()
    aliases: tuple[str, ...] = ()
    steps: tuple[Step, ...] = field(default=(), repr=False, compare=False)

    @property
    def title(self) -> str:
        """``queue 3 'baseline'``: the kind, the id, and the name where it has one."""
        return f"{self.kind} {self.id}" + (f" {self.name!r}" if self.name else "")

    def refusal(self, force: bool = False) -> Exception | None:
        """The error the delete raises (without writing anything), or None when it may go on:
        an :class:`~aiqc.exceptions.InUseError` listing the queues that still use the record,
        or a :class:`~aiqc.exceptions.ValidationError` naming a queue's RUNNING jobs (unless
        ``force``)."""
        if force and self.kind != "queue":
            return _forced(self.kind)
        if self.used_by:
            shown = ", ".join(f"queue {q}" + (f" {n!r}" if n else "") for q, n in self.used_by[:_SHOWN])
            more = f" and {len(self.used_by) - _SHOWN} more" if len(self.used_by) > _SHOWN else ""
            return InUseError(
                f"{self.kind}: expected a {self.kind} no queue uses; {self.title} is used by {shown}{more}. "
                "Delete those queues first (queue.delete(), aiqc rm queue ID); nothing was deleted.")
        if self.running and not force:
            shown = ", ".join(str(j) for j in self.running[:_SHOWN])
            more = f" and {len(self.running) - _SHOWN} more" if len(self.running) > _SHOWN else ""
            return ValidationError(
                f"force: expected a queue without {JobState.RUNNING} jobs, or force=True (aiqc rm --force) to delete "
                f"it while they run; received {self.title}, whose jobs {shown}{more} are {JobState.RUNNING}. "
                "Nothing was deleted.")
        return None

    def check(self, force: bool = False) -> None:
        """Raise :meth:`refusal`'s error, if any."""
        error = self.refusal(force)
        if error is not None:
            raise error

    def __str__(self) -> str:
        lines = [f"{self.title}: would delete {_counted(self.counts)}"]
        if self.aliases:
            lines.append(f"  aliases that stop resolving: {', '.join(repr(a) for a in self.aliases)}")
        lines += [f"  keeps {what}" for what in self.kept]
        if self.used_by:
            lines.append(f"  refused: used by {len(self.used_by)} queue(s): "
                         + ", ".join(str(q) for q, _ in self.used_by[:_SHOWN]))
        if self.running:
            lines.append(f"  {len(self.running)} job(s) {JobState.RUNNING}: "
                         + ", ".join(str(j) for j in self.running[:_SHOWN]))
        return "\n".join(lines)


Lock = Callable[[pw.ModelSelect], None]


def _forced(kind: str) -> ValidationError:
    """``force`` given for what it does not apply to."""
    return ValidationError(f"force: expected False for a {kind}; received True. force deletes a queue whose jobs are "
                           f"{JobState.RUNNING}; a {kind} that queues use cannot be forced: delete those queues "
                           "first. Nothing was deleted.")


def _no_lock(query: pw.ModelSelect) -> None:
    """:func:`plan` reads without locking anything."""


def _plan_queue(queue_id: int, lock: Lock) -> DeletionPlan:
    lock(Queue.select(Queue.id).where(Queue.id == queue_id))
    queue = Queue.get_by_id(queue_id)
    experiment = Experiment.get_by_id(queue.experiment_id)
    lock(Experiment.select(Experiment.id).where(Experiment.id == experiment.id))
    lock(Job.select(Job.id).where(Job.queue == queue_id))
    jobs = Job.select(Job.id).where(Job.queue == queue_id)
    running = tuple(j for (j,) in Job.select(Job.id).where((Job.queue == queue_id) & (Job.state == JobState.RUNNING))
                    .order_by(Job.id).tuples())
    aliases = tuple(a for (a,) in JobAlias.select(JobAlias.name).where(JobAlias.job.in_(jobs))
                    .order_by(JobAlias.name).tuples())
    others = [q for (q,) in Queue.select(Queue.id).where((Queue.experiment == experiment.id) & (Queue.id != queue_id))
              .order_by(Queue.id).tuples()]
    steps: list[Step] = [(model, model.job.in_(jobs))
                         for model in (JobAlias, Metric, HistoryEntry, IntermediateValue, Prediction, TrainedModel)]
    steps += [(Job, Job.queue == queue_id), (Queue, Queue.id == queue_id)]
    kept = [f"splitset {experiment.splitset_id} (and its dataset)"]
    if others:
        kept.append(f"experiment {experiment.id} (queue(s) {', '.join(map(str, others))} run it too)")
    else:
        steps += [(Hyperparamset, Hyperparamset.experiment == experiment.id), (Experiment, Experiment.id == experiment.id)]
    return _planned("queue", queue_id, experiment.name, steps, kept=kept, running=running, aliases=aliases)


def _splitset_steps(splitsets: pw.ModelSelect) -> list[Step]:
    """Deleting the splitsets ``splitsets`` selects (their ids): the experiments on them that no
    queue runs (none is left by aiqc; a database may hold some), their encoders, folds, and
    themselves (children first). An experiment a queue runs refuses the delete."""
    experiments = Experiment.select(Experiment.id).where(
        Experiment.splitset.in_(splitsets) & Experiment.id.not_in(Queue.select(Queue.experiment)))
    return [(Hyperparamset, Hyperparamset.experiment.in_(experiments)), (Experiment, Experiment.id.in_(experiments)),
            (Encoder, Encoder.splitset.in_(splitsets)), (Fold, Fold.splitset.in_(splitsets)),
            (Splitset, Splitset.id.in_(splitsets))]


def _queues_using(where: Any) -> tuple[tuple[int, str | None], ...]:
    """``(queue id, name)`` of the queues whose experiment matches ``where``."""
    query = Queue.select(Queue.id, Experiment.name).join(Experiment).where(where).order_by(Queue.id)
    return tuple((q, n) for q, n in query.tuples())


def _plan_splitset(splitset_id: int, lock: Lock) -> DeletionPlan:
    lock(Splitset.select(Splitset.id).where(Splitset.id == splitset_id))
    splitset = Splitset.get_by_id(splitset_id)
    lock(Label.select(Label.id).where(Label.id == splitset.label_id))
    lock(Feature.select(Feature.id).where(Feature.id == splitset.feature_id))
    used_by = _queues_using(Experiment.splitset == splitset_id)
    steps = _splitset_steps(Splitset.select(Splitset.id).where(Splitset.id == splitset_id))
    kept = [f"dataset {splitset.label.dataset_id}"]
    for model, column, record_id in ((Label, Splitset.label, splitset.label_id),
                                     (Feature, Splitset.feature, splitset.feature_id)):
        sharing = [s for (s,) in Splitset.select(Splitset.id).where((column == record_id) & (Splitset.id != splitset_id))
                   .order_by(Splitset.id).tuples()]
        if sharing:
            noun = _NOUNS[model.__name__][0]
            kept.append(f"{noun} {record_id} (splitset(s) {', '.join(map(str, sharing[:_SHOWN]))} use it too)")
        else:
            steps.append((model, model.id == record_id))
    return _planned("splitset", splitset_id, splitset.name, steps, kept=kept, used_by=used_by)


def _plan_dataset(dataset_id: int, lock: Lock) -> DeletionPlan:
    lock(Dataset.select(Dataset.id).where(Dataset.id == dataset_id))
    dataset = Dataset.get_by_id(dataset_id)
    labels = Label.select(Label.id).where(Label.dataset == dataset_id)
    features = Feature.select(Feature.id).where(Feature.dataset == dataset_id)
    lock(labels)
    lock(features)
    splitsets = Splitset.select(Splitset.id).where(Splitset.label.in_(labels) | Splitset.feature.in_(features))
    lock(splitsets)
    used_by = _queues_using(Experiment.splitset.in_(splitsets))
    steps = _splitset_steps(splitsets)
    steps += [(Label, Label.dataset == dataset_id), (Feature, Feature.dataset == dataset_id),
              (DatasetPart, DatasetPart.dataset == dataset_id), (DatasetArray, DatasetArray.dataset == dataset_id),
              (Dataset, Dataset.id == dataset_id)]
    return _planned("dataset", dataset_id, dataset.name, steps, used_by=used_by)


def _planned(kind: str, record_id: int, name: str | None, steps: list[Step], **details: Any) -> DeletionPlan:
    """The plan, with each step's rows counted (the rows are still there: nothing deleted yet)."""
    counts: dict[str, int] = {}
    for model, where in steps:
        counts[model.__name__] = counts.get(model.__name__, 0) + model.select().where(where).count()
    details = {key: tuple(value) for key, value in details.items()}
    return DeletionPlan(kind, record_id, name, _frozen(counts), steps=tuple(steps), **details)


_PLANNERS: dict[str, Callable[[int, Lock], DeletionPlan]] = {
    "queue": _plan_queue, "splitset": _plan_splitset, "dataset": _plan_dataset}
_MODELS = {"queue": Queue, "splitset": Splitset, "dataset": Dataset}
#: what can be deleted, by the name the CLI and :func:`delete` take
KINDS = tuple(_PLANNERS)


def _checked(kind: Any, record_id: Any) -> tuple[str, int]:
    if kind not in _PLANNERS:
        raise ValidationError.expected("kind", f"one of {list(KINDS)!r}", kind)
    if isinstance(record_id, bool) or not isinstance(record_id, int):
        raise ValidationError.expected("id", f"the integer id of a {kind}", record_id)
    return kind, record_id


def plan(kind: str, record_id: int) -> DeletionPlan:
    """What deleting the ``kind`` (``'queue'``, ``'splitset'`` or ``'dataset'``) with id
    ``record_id`` would delete, table by table, what it keeps, and who still uses it
    (:meth:`DeletionPlan.refusal` says whether :func:`delete` would refuse). Reads only.
    Unknown id: :class:`~aiqc.exceptions.NotFoundError`."""
    kind, record_id = _checked(kind, record_id)
    ensure_setup()
    with translated():
        return _PLANNERS[kind](record_id, _no_lock)


def delete(kind: str, record_id: int, force: bool = False) -> Deleted:
    """Delete the ``kind`` (``'queue'``, ``'splitset'`` or ``'dataset'``) with id ``record_id``
    and what depends on it, in one write transaction; returns what went (:class:`Deleted`).

    Refused before any write: with :class:`~aiqc.exceptions.InUseError` while a queue uses
    the splitset (or one of the dataset's splitsets), naming the queues; with
    :class:`~aiqc.exceptions.ValidationError` while jobs of the queue are RUNNING, naming
    them, unless ``force=True`` (their workers then find their job gone). Unknown id:
    :class:`~aiqc.exceptions.NotFoundError`. Then every per-process cache is cleared: the
    database may give a deleted id to a new record."""
    kind, record_id = _checked(kind, record_id)
    if not isinstance(force, bool):
        raise ValidationError.expected("force", "True or False", force)
    if force and kind != "queue":
        raise _forced(kind)
    database = ensure_setup()
    _MODELS[kind].get_by_id(record_id)  # an unknown id: NotFoundError before the write lock is taken
    counts: dict[str, int] = {}
    with translated(), write_transaction():
        planned = _PLANNERS[kind](record_id, database.lock_rows)
        planned.check(force)
        for model, where in planned.steps:
            removed = model.delete().where(where).execute()
            counts[model.__name__] = counts.get(model.__name__, 0) + removed
    caches.clear()
    deleted = Deleted(kind, record_id, _frozen(counts))
    logger.info("deleted %s", deleted)
    return deleted
