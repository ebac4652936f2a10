"""Every exception aiqc raises, in one hierarchy under :class:`AIQCError`.

Every error caused by a bad argument is a :class:`ValidationError`, which is also a
``ValueError``; its message names the parameter, what was expected and what was received.
Validation happens before anything is written, so a ValidationError leaves the database
exactly as it was.

    AIQCError
    ├── ValidationError (ValueError)        a bad argument; nothing was written
    ├── ChartNotApplicableError (ValueError) a chart that does not apply to this job or queue
    ├── MissingExtraError (ImportError)     an optional dependency is not installed
    ├── DatabaseError                        the database cannot be opened, read or written
    │   ├── DatabaseReadOnlyError            the file (or its folder) cannot be written
    │   ├── DatabaseFullError                the disk (or a size limit) has no room left
    │   ├── DatabaseLockedError              another connection held a lock past the busy timeout
    │   ├── DatabaseCorruptError             not a SQLite database, or a damaged one
    │   ├── DatabaseUnreachableError         the server cannot be reached, or the connection was lost
    │   ├── DatabaseGoneError                the file was deleted or replaced while open
    │   ├── SchemaTooOldError                a required column is missing that no migration adds
    │   ├── SchemaTooNewError                written by a newer aiqc
    │   └── IntegrityError                   a stored pickle does not match the sha256 recorded with it
    ├── NotFoundError (LookupError)          no record with that id
    ├── UserFunctionError                    a user function returned something unusable
    ├── NonFiniteError                       a model's loss, predictions or probabilities are NaN/inf
    ├── WorkerError                          a worker (process, Ray task) died while jobs remained
    ├── JobPruned                            raised inside fn_train when the pruner stops a job
    └── DataWarning (UserWarning)            a warning about the data: a rare category, an unseen value, a date
"""

from __future__ import annotations

__all__ = [
    "AIQCError",
    "ValidationError",
    "MissingExtraError",
    "DatabaseError",
    "DatabaseReadOnlyError",
    "DatabaseFullError",
    "DatabaseLockedError",
    "DatabaseCorruptError",
    "DatabaseUnreachableError",
    "DatabaseGoneError",
    "SchemaTooOldError",
    "SchemaTooNewError",
    "IntegrityError",
    "NotFoundError",
    "ChartNotApplicableError",
    "UserFunctionError",
    "NonFiniteError",
    "JobPruned",
    "WorkerError",
    "DataWarning",
    "VersionWarning",
    "DataReusedNotice",
    "InUseError",
]


class AIQCError(Exception):
    """Base class of every error raised by aiqc."""


class ValidationError(AIQCError, ValueError):
    """A bad argument. Raised before any write."""

    @classmethod
    def expected(cls, parameter: str, expected: str, received: object) -> "ValidationError":
        """Build the house-style message: ``parameter: expected ...; received ...``."""
        return cls(f"{parameter}: expected {expected}; received {_show(received)}.")


class MissingExtraError(AIQCError, ImportError):
    """An optional dependency is not installed; the message names the pip extra."""


class DatabaseError(AIQCError):
    """The database cannot be opened, or was written by an incompatible aiqc."""


class DatabaseReadOnlyError(DatabaseError):
    """The database file, or the folder that holds it, cannot be written by this process (or it
    was opened with ``aiqc.setup(db, read_only=True)``)."""


class DatabaseFullError(DatabaseError):
    """A write failed because the disk (or SQLite's ``max_page_count``) has no room left; the
    write was rolled back, and a job being recorded went back to the queue."""


class DatabaseLockedError(DatabaseError):
    """Another connection held a lock on the database for longer than the busy timeout."""


class DatabaseCorruptError(DatabaseError):
    """The file is not a SQLite database, or its contents are damaged."""


class DatabaseUnreachableError(DatabaseError):
    """The database server cannot be reached (refused, timed out, authentication failed) or
    the connection to it was lost; the message names host:port, never the password."""


class DatabaseGoneError(DatabaseError):
    """The database file was deleted, replaced or truncated while this process had it open:
    what this process wrote since went to a file nobody can open again."""


class SchemaTooOldError(DatabaseError):
    """The file lacks a required column that no migration of this aiqc adds."""


class SchemaTooNewError(DatabaseError):
    """The file was written by a newer aiqc (a higher schema version)."""


class IntegrityError(DatabaseError):
    """A stored pickle (a fitted encoder, the user's functions) no longer matches the sha256
    recorded with it when it was written: the database (or an exported predictor file, checked
    against its manifest) may be corrupt or tampered with, so it is not unpickled. The check catches corruption and casual edits, not a crafted database
    (whoever writes the payload can write its digest too)."""


class NotFoundError(AIQCError, LookupError):
    """A record asked for by id does not exist."""


class ChartNotApplicableError(AIQCError, ValueError):
    """A chart does not apply to this job or queue: another analysis type, nothing recorded
    for it (no history, no probabilities), or not enough finished trials yet."""


class UserFunctionError(AIQCError):
    """A user function returned something aiqc cannot use; the job is marked FAILED."""


class NonFiniteError(AIQCError):
    """A trained model's last training loss, predictions or probabilities hold NaN or an
    infinity: its metrics cannot be trusted, so the job is marked FAILED with the reason (the
    split and how many rows) instead of COMPLETE."""


class WorkerError(AIQCError):
    """A worker (a process of ``run_jobs(workers=N)``, or a Ray task of ``executor=Ray(...)``)
    exited with an error, failed or was killed while jobs were still queued or running; the
    message names it and why (exit status and the end of its stderr, or the error the task
    raised). The jobs it left running went back to the queue: ``run_jobs()`` again finishes them."""


class JobPruned(AIQCError):
    """Raised inside ``fn_train`` (by ``aiqc.record_epoch``) when the pruner stops the job;
    let it propagate: aiqc measures the model as it stands and records the job as PRUNED."""


def _show(value: object) -> str:
    """A short, unambiguous rendering of a received value for error messages."""
    if isinstance(value, type):
        return f"the class {value.__name__}"
    text = repr(value)
    if len(text) > 120:
        text = text[:117] + "..."
    if isinstance(value, (str, int, float, bool, list, tuple, dict, type(None))):
        return text
    return f"{text} (type {type(value).__name__})"


class DataWarning(AIQCError, UserWarning):
    """Warned (``warnings.warn``), not raised: something in the data deserves a look, such as a
    one-hot column with very many categories, an unseen category at ``predict``, or text that
    looks like dates. Filter with ``warnings.simplefilter('error', aiqc.exceptions.DataWarning)``."""


class VersionWarning(AIQCError, UserWarning):
    """Warned, not raised: something stored (a fitted encoder, an exported model) is loaded under
    other versions of Python or of the libraries than those it was made with; its output may
    differ. The message names each version, then and now."""


class InUseError(AIQCError, ValueError):
    """A delete refused: the record is still used by others (listed in the message); nothing was deleted."""


class DataReusedNotice(AIQCError, Warning):
    """Warned, not raised: data given to ``Pipeline.Tabular.make`` / ``aiqc run`` is already
    stored (same content hash and schema), so the stored dataset is reused instead of storing
    another copy. Not a UserWarning: nothing is wrong. Silence it with
    ``warnings.simplefilter('ignore', aiqc.exceptions.DataReusedNotice)``."""
