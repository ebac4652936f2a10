"""The versions of Python and of the libraries a result depends on, recorded with every job,
encoder and exported model, and compared when they are loaded again."""

from __future__ import annotations

import platform
from functools import lru_cache
from importlib import metadata

#: the distributions whose versions are recorded (those installed)
DISTRIBUTIONS = ("aiqc", "numpy", "pandas", "scikit-learn", "keras", "tensorflow", "tensorflow-cpu", "torch")


@lru_cache(maxsize=None)
def installed(distribution: str) -> str | None:
    """The installed version of a distribution (``'scikit-learn'``), or None; imports nothing."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def runtime(distributions: tuple[str, ...] = DISTRIBUTIONS) -> dict[str, str]:
    """``{"python": "3.11.9", "numpy": "2.1.0", ...}``: Python's version and each installed
    distribution's (those not installed are left out)."""
    versions = {"python": platform.python_version()}
    for name in distributions:
        version = installed(name)
        if version is not None:
            versions[name] = version
    return versions


def mismatches(recorded: dict[str, str] | None, names: tuple[str, ...] | None = None) -> dict[str, tuple[str, str]]:
    """``{name: (recorded, installed now)}`` for each of ``names`` (default: every recorded one)
    whose version differs from the running one; a distribution recorded but no longer installed
    shows as ``'not installed'``. Python compares on major.minor (a patch release pickles alike)."""
    if not recorded:
        return {}
    now = runtime(tuple(n for n in recorded if n != "python"))
    out = {}
    for name in names or tuple(recorded):
        if name not in recorded:
            continue
        then, current = recorded[name], now.get(name, "not installed")
        if name == "python":
            same = then.split(".")[:2] == current.split(".")[:2]
        else:
            same = then == current
        if not same:
            out[name] = (then, current)
    return out


def describe(found: dict[str, tuple[str, str]]) -> str:
    """``'scikit-learn 1.5.0 (now 1.6.1), python 3.10.4 (now 3.11.9)'``."""
    return ", ".join(f"{name} {then} (now {now})" for name, (then, now) in found.items())
