"""The database proxy, the base model and the few custom field types.

Models are defined once against :data:`database_proxy`; :func:`aiqc.setup` binds the
proxy to a concrete database (peewee's late binding), so tests and users can point the
same models at any file.
"""

from __future__ import annotations

import datetime as _dt
import enum
import io
import json
import pickle
from typing import TYPE_CHECKING, Any, Callable

import peewee as pw

if TYPE_CHECKING:
    from typing_extensions import Self

database_proxy = pw.DatabaseProxy()

#: opens the default database; registered by :mod:`aiqc.database`, which the ORM does not import
_default_opener: list[Callable[[], Any]] = []


def register_default_opener(opener: Callable[[], Any]) -> None:
    """Tell the ORM how to open the default database when a model is used before ``aiqc.setup()``."""
    _default_opener[:] = [opener]


def ensure_database() -> pw.Database:
    """The bound database, opening the default one on first use."""
    if database_proxy.obj is None and _default_opener:
        _default_opener[0]()
    if database_proxy.obj is None:
        from aiqc.exceptions import DatabaseError

        raise DatabaseError("database: expected an open aiqc database; call aiqc.setup() first.")
    return database_proxy.obj


def database_key() -> str:
    """What per-process caches key on: the bound database's identity (its URL without the
    password, or a SQLite file's path), so that two databases never share a cached entry."""
    database = ensure_database()
    return getattr(database, "cache_key", None) or str(database.database)


def utcnow() -> _dt.datetime:
    """The current time in UTC, as a naive datetime (how the database stores times)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


def insert_rows(model: Any, fields: list[Any], rows: list[tuple]) -> None:
    """``rows`` (database values, in ``fields`` order) inserted with one prepared statement
    (``executemany``) in the caller's transaction: peewee writes the SQL once, not per row
    (most of an ``insert_many``'s time, at 42 metric rows as at 100,000 jobs), with the
    model's defaults for the other columns (``created_at``: one time per call) appended to
    each row. The driver's errors leave as peewee's (``IntegrityError``, ...), as from any
    peewee query."""
    if not rows:
        return
    # INSERT INTO "t" ("a", ..., "created_at") VALUES (?, ...): the given fields first, then the defaults
    sql, template = model.insert_many([(None,) * len(fields)], fields=fields).sql()
    defaults = tuple(template[len(fields):])
    with pw.__exception_wrapper__:
        model._meta.database.cursor().executemany(sql, [row + defaults for row in rows] if defaults else rows)


class JSONField(pw.TextField):
    """A JSON document stored as text (readable from plain SQL)."""

    def db_value(self, value: Any) -> str | None:
        """The value as JSON text (None stays NULL)."""
        return None if value is None else json.dumps(value)

    def python_value(self, value: str | None) -> Any:
        """The stored JSON text, parsed (NULL: None)."""
        return None if value is None else json.loads(value)


class TagsField(JSONField):
    """A list of tags as a JSON array; none is NULL (and reads back as [])."""

    def db_value(self, value: Any) -> str | None:
        """The tags as JSON text ([] and None: NULL)."""
        return super().db_value(list(value)) if value else None

    def python_value(self, value: str | None) -> list[str]:
        """The stored tags (NULL: [])."""
        return super().python_value(value) or []


class ArrayField(pw.BlobField):
    """A numpy array stored in ``.npy`` format (dtype and shape travel with the bytes)."""

    def db_value(self, value: Any) -> Any:
        """The array as ``.npy`` bytes (None stays NULL)."""
        if value is None:
            return None
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(value), allow_pickle=False)
        return super().db_value(buffer.getvalue())

    def python_value(self, value: Any) -> Any:
        """The stored ``.npy`` bytes as a numpy array (NULL: None)."""
        if value is None:
            return None
        import numpy as np

        return np.load(io.BytesIO(bytes(value)), allow_pickle=False)


#: a checked blob: ``DIGEST_PREFIX + sha256 hex digest of the payload + b"\n" + payload``
DIGEST_PREFIX = b"aiqc-sha256:"
_HEADER_LENGTH = len(DIGEST_PREFIX) + 64 + 1


def with_digest(payload: bytes) -> bytes:
    """``payload`` (pickle bytes) with a header recording its sha256, verified by :func:`load_checked`;
    a blob that already has the header is returned as it is."""
    import hashlib

    payload = bytes(payload)
    if payload.startswith(DIGEST_PREFIX):
        return payload
    return DIGEST_PREFIX + hashlib.sha256(payload).hexdigest().encode("ascii") + b"\n" + payload


def checked_payload(blob: bytes, where: str) -> bytes:
    """The pickle bytes of a stored blob, its sha256 verified against the recorded one (an
    :class:`aiqc.exceptions.IntegrityError` naming ``where`` when it differs). Blobs written
    before digests were recorded (a bare pickle, no header) are returned unverified."""
    import hashlib

    blob = bytes(blob)
    if blob.startswith(DIGEST_PREFIX):
        digest, newline, payload = blob[len(DIGEST_PREFIX):_HEADER_LENGTH - 1], blob[_HEADER_LENGTH - 1:_HEADER_LENGTH], \
            blob[_HEADER_LENGTH:]
        if newline == b"\n" and hashlib.sha256(payload).hexdigest().encode("ascii") == digest:
            return payload
    elif blob[:1] == b"\x80":  # a pickle (protocol 2+) stored before digests were recorded: unverified
        return blob
    from aiqc.exceptions import IntegrityError

    raise IntegrityError(f"{where}: expected a stored pickle matching the sha256 recorded with it; it does not "
                         "match, so it was not unpickled (the database may be corrupt or tampered with).")


def load_checked(blob: bytes, where: str) -> Any:
    """Unpickle a stored blob after :func:`checked_payload` verified it. Unpickling runs code:
    only for databases you trust."""
    return pickle.loads(checked_payload(blob, where))


class StoredPickle:
    """The bytes of a :class:`PickleField` as read from the database, not unpickled yet."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __repr__(self) -> str:
        return f"<StoredPickle {len(self.blob)} bytes>"


class _PickleAccessor(pw.FieldAccessor):
    """Unpickles (verified) on first attribute access, not when the row is read."""

    def __get__(self, instance: Any, instance_type: Any = None) -> Any:
        if instance is None:
            return self.field
        value = instance.__data__.get(self.name)
        if isinstance(value, StoredPickle):
            where = f"{type(instance).__name__.lower()} {instance.id} field {self.name!r}"
            value = load_checked(value.blob, where)
            instance.__data__[self.name] = value  # not marked dirty: it is what is stored
        return value


class PickleField(pw.BlobField):
    """A pickled Python object (fitted scikit-learn transformers).

    Pickled with cloudpickle, the classes and functions of the user's own modules (not
    installed packages, not the standard library) by value, as :func:`aiqc.functions.dumps`
    does for user functions: a process that cannot import those modules (another working
    directory, a worker) still loads the object. Stored with its sha256 (:func:`with_digest`)
    and verified before unpickling. Reading a row does not unpickle: the object is unpickled
    when the attribute is first used. Only use those of databases you trust: unpickling runs
    code, as with any pickled model.
    """

    accessor_class = _PickleAccessor

    def db_value(self, value: Any) -> Any:
        """The object, pickled with the user's own modules by value and with its sha256 (None
        stays NULL; bytes read and not unpickled are written back as they were)."""
        if value is None:
            return None
        if isinstance(value, StoredPickle):
            return super().db_value(value.blob)
        from aiqc.functions import dumps_by_value

        return super().db_value(with_digest(dumps_by_value(value)))

    @staticmethod
    def user_objects(value: Any) -> list[Any]:
        """The classes and functions of the user's own modules that ``value`` refers to
        (see :func:`aiqc.functions.user_objects`)."""
        from aiqc.functions import user_objects

        return user_objects(value)

    def python_value(self, value: Any) -> Any:
        """The stored bytes, not unpickled yet (:class:`StoredPickle`; NULL: None)."""
        return None if value is None else StoredPickle(bytes(value))


class PickledBlobField(pw.BlobField):
    """Pickle bytes made by the caller (the user's functions), stored with their sha256
    (:func:`with_digest`); read back as stored: load them with :func:`load_checked`."""

    def db_value(self, value: Any) -> Any:
        """The bytes with their sha256 header (None stays NULL)."""
        return None if value is None else super().db_value(with_digest(value))


class EnumField(pw.CharField):
    """An enum member stored as its value (text, readable from plain SQL)."""

    def __init__(self, enum_class: type[enum.Enum], **kwargs: Any) -> None:
        self.enum_class = enum_class
        kwargs.setdefault("max_length", max(len(str(m.value)) for m in enum_class))
        super().__init__(**kwargs)

    def db_value(self, value: Any) -> Any:
        """The enum member's value (a member or its value may be given; None stays NULL)."""
        return None if value is None else self.enum_class(value).value

    def python_value(self, value: Any) -> Any:
        """The enum member of the stored value (NULL: None)."""
        return None if value is None else self.enum_class(value)


#: "not given" for :meth:`Annotated.describe` (None clears a name)
UNSET: Any = type("Unset", (), {"__repr__": lambda self: "UNSET"})()


class Annotated:
    """What people write on a record to find it again months later: a name, a description and
    tags. Mixed into a model whose own row holds ``name``, ``description`` and ``tags`` (a
    :class:`~aiqc.orm.splitset.Splitset`), or that forwards them to another row (a queue's are
    its experiment's): :meth:`_annotated` says which row."""

    def _annotated(self) -> Any:
        return self

    def set_tags(self, tags: Any) -> list[str]:
        """Replace the tags with ``tags`` (a list of strings, one string, or None for none);
        returns them."""
        from aiqc.tags import check_tags

        return self._write_tags(check_tags(tags))

    def add_tags(self, *tags: str) -> list[str]:
        """Add tags (those already there are kept once); returns every tag."""
        from aiqc.tags import check_tags

        added = check_tags(list(tags))
        return self._write_tags(list(self._annotated().tags) + [t for t in added if t not in list(self._annotated().tags)])

    def remove_tags(self, *tags: str) -> list[str]:
        """Remove tags (one not there is no error); returns the tags left."""
        from aiqc.tags import check_tags

        removed = check_tags(list(tags))
        return self._write_tags([t for t in list(self._annotated().tags) if t not in removed])

    def describe(self, name: Any = UNSET, description: Any = UNSET) -> Any:
        """Set the name and/or the description (None clears one; one not given is kept);
        returns ``self``."""
        from aiqc.tags import check_text

        row = self._annotated()
        changes = {k: check_text(v, k) for k, v in (("name", name), ("description", description)) if v is not UNSET}
        if changes:
            type(row).update(**changes).where(type(row)._meta.primary_key == row.id).execute()
            for key, value in changes.items():
                setattr(row, key, value)
        return self

    def _write_tags(self, tags: list[str]) -> list[str]:
        row = self._annotated()
        type(row).update(tags=tags).where(type(row)._meta.primary_key == row.id).execute()
        row.tags = list(tags)
        return list(tags)


class query_on_class:  # noqa: N801 - used as a decorator, like classmethod
    """A method name that peewee uses on the class and aiqc on a record: on the class it is
    peewee's own (``Queue.delete()`` builds a ``DELETE`` query, as peewee's
    ``delete_instance`` and ``delete_by_id`` and aiqc's ``JobAlias.delete().where(...)``
    expect); on a record it is the decorated method (``queue.delete()`` deletes the queue
    with what depends on it)."""

    def __init__(self, method: Callable[..., Any]) -> None:
        self.method = method
        self.__doc__ = method.__doc__
        self.__name__ = method.__name__
        self.owner: type | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        self.owner = owner

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is not None:
            return self.method.__get__(instance, owner)
        owner = owner if owner is not None else self.owner
        for base in (self.owner or owner).__mro__[1:]:  # peewee's attribute, as if this one were not there
            if self.__name__ in vars(base):
                return vars(base)[self.__name__].__get__(None, owner)
        raise AttributeError(f"type object {owner.__name__!r} has no class attribute {self.__name__!r}")


class BaseModel(pw.Model):
    """Every aiqc table: an integer id and a creation time."""

    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        database = database_proxy
        legacy_table_names = False

    @classmethod
    def get_by_id(cls, pk: int) -> Self:  # noqa: D401 - same contract as peewee, better error
        """Return the record with this id, or raise :class:`aiqc.exceptions.NotFoundError`."""
        from aiqc.exceptions import NotFoundError

        record = cls.get_or_none(cls._meta.primary_key == pk)
        if record is None:
            raise NotFoundError(f"{cls.__name__} id={pk!r} does not exist.")
        return record

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.id}>"
