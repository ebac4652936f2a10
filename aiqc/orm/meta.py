"""Key/value facts about the database itself, such as the schema version."""

from __future__ import annotations

import peewee as pw

from aiqc.orm.base import BaseModel

SCHEMA_VERSION = 1


class SchemaInfo(BaseModel):
    """One row per fact: ``schema_version`` is written when the tables are created."""

    key = pw.TextField(unique=True)
    value = pw.TextField()
