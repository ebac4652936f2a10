"""Names people give records: tags on queues and splitsets, aliases of jobs. Checked here,
before anything is written."""

from __future__ import annotations

import re
from typing import Any

from aiqc.exceptions import ValidationError

#: the longest tag or alias accepted
MAX_LENGTH = 100
#: an alias: a letter or digit, then letters, digits, '.', '_' or '-' (it appears in URLs and shells)
ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def check_tag(tag: Any, parameter: str = "tag") -> str:
    """One tag: a non-empty string of at most :data:`MAX_LENGTH` characters, without leading or
    trailing space and without a comma (``aiqc list --tag a,b`` splits on it)."""
    if not isinstance(tag, str):
        raise ValidationError.expected(parameter, "a tag: a non-empty string", tag)
    if not tag or tag != tag.strip() or len(tag) > MAX_LENGTH or "," in tag or "\n" in tag:
        raise ValidationError.expected(
            parameter, f"a tag: a non-empty string of at most {MAX_LENGTH} characters, without a comma, a line break "
            "or leading or trailing spaces", tag)
    return tag


def check_tags(tags: Any, parameter: str = "tags") -> list[str]:
    """Tags as given (a list, a tuple or a set of strings, or one string), checked; duplicates
    dropped, first-seen order kept. None is no tags."""
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, (list, tuple, set, frozenset)):
        raise ValidationError.expected(parameter, "None, a string or a list of strings", tags)
    checked: list[str] = []
    for tag in (sorted(tags) if isinstance(tags, (set, frozenset)) else tags):
        check_tag(tag, f"{parameter}[{len(checked)}]" if not isinstance(tag, str) else parameter)
        if tag not in checked:
            checked.append(tag)
    return checked


def check_text(value: Any, parameter: str) -> str | None:
    """A name or description: None or a string."""
    if value is not None and not isinstance(value, str):
        raise ValidationError.expected(parameter, "None or a string", value)
    return value


def check_alias(name: Any, parameter: str = "alias") -> str:
    """An alias: a letter or digit, then letters, digits, '.', '_' or '-'; at most
    :data:`MAX_LENGTH` characters; not all digits (that would read as a job id)."""
    if not isinstance(name, str) or not ALIAS.match(name) or len(name) > MAX_LENGTH or name.isdigit():
        raise ValidationError.expected(
            parameter, f"an alias such as 'churn-prod': a letter or digit, then letters, digits, '.', '_' or '-', "
            f"at most {MAX_LENGTH} characters, not only digits", name)
    return name
