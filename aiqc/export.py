"""A trained job as one file you can ship: ``job.export('churn.aiqc')``, then, anywhere aiqc and
the job's deep-learning library are installed, ``aiqc.load_predictor('churn.aiqc').predict(df)``
gives what ``job.predict(df)`` gives, with no database.

The file is a zip (any name; its unzipped folder loads too) holding:

- ``manifest.json``: the format and its version; the job (id, queue, experiment, repeat,
  fold, seed, hyperparameters, aliases); library and analysis type; the label column and
  its classes; the feature columns, their dtypes, the excluded columns and each encoder's
  columns (an image or sequence job: its modality, the shape and dtype of one sample, the
  channel names and the settings its arrays were made with: resize, color mode, padding);
  the model's input shapes, in the library's layout; the versions of Python and the libraries when it was
  exported (and when the job was recorded); the job's metrics; the sha256 of every other file;
- the model in its library's own format, which loads without the user's code: Keras, the
  ``.keras`` file read by ``keras.models.load_model(safe_mode=True)``; PyTorch, a
  ``torch.export`` program (``.pt2``) with a dynamic batch dimension;
- ``encoders.pkl``: the fitted scikit-learn encoders (cloudpickle; the user's own classes
  and functions in them by value);
- ``fn_predict.pkl``: the experiment's own ``fn_predict``, when it has one (cloudpickle).

scikit-learn has no safe format, so loading unpickles ``encoders.pkl`` (and
``fn_predict.pkl``): it runs code, so load only predictors you trust. Every file's sha256 is
checked first: that catches a damaged or casually edited file, not a crafted one (whoever
writes the payload can write its digest too).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pickle
import secrets
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiqc.backends import get_backend, parse_library
from aiqc.exceptions import AIQCError, IntegrityError, ValidationError, VersionWarning
from aiqc.predictor import INPUTS, Predictor, input_kind
from aiqc.states import JobState

if TYPE_CHECKING:
    from aiqc.backends import Backend

__all__ = ["FORMAT", "FORMAT_VERSION", "export", "load_predictor"]

logger = logging.getLogger(__name__)

FORMAT = "aiqc-predictor"
#: the layout this aiqc writes; it reads this one and older ones. An image or sequence
#: predictor says so in its manifest's ``features.modality`` (absent: a table).
FORMAT_VERSION = 2  # a predictor is written as its input kind's version: a table's is still 1
MANIFEST = "manifest.json"
ENCODERS = "encoders.pkl"
FN_PREDICT = "fn_predict.pkl"
#: training rows an export predicts, from the written file and from the database, to check it
CHECK_ROWS = 8
#: what a predictor's output depends on besides the deep-learning library
BASE_DISTRIBUTIONS = ("python", "aiqc", "numpy", "pandas", "scikit-learn")
#: what a manifest must hold (its ``features`` as well: what the input they describe needs,
#: :attr:`aiqc.predictor.TableInput.manifest_keys` or :attr:`aiqc.predictor.ArrayInput.manifest_keys`)
MANIFEST_KEYS = ("library", "analysis_type", "label", "features", "model", "files", "versions")
NESTED_KEYS = {"label": ("column",), "model": ("file",)}


# --- export ----------------------------------------------------------------------------------------
def export(job: Any, path: str | os.PathLike) -> Path:
    """Write ``job`` (COMPLETE) as one self-contained file at ``path`` (a zip; any name, e.g.
    ``churn.aiqc``; an existing file there is replaced) and return its absolute path.

    The file is written next to ``path`` under a temporary name, loaded back and checked: its
    predictions on a few training rows must equal ``job.predict``'s; only then is it renamed to
    ``path``. Any failure leaves nothing behind (an earlier file at ``path`` stays as it was).
    A job that is not COMPLETE, a model that cannot be written in its library's safe format,
    or a bad ``path`` is a ValidationError raised before anything is written.
    """
    from aiqc.functions import dumps_by_value
    from aiqc.inference import predictor_for

    if job.state is not JobState.COMPLETE:
        raise ValidationError(f"job: expected a {JobState.COMPLETE} job to export; job {job.id} is {job.state}. "
                              "Nothing was written.")
    target = _target(path)
    predictor = predictor_for(job)
    backend = predictor.backend
    features_shape, label_shape = job.input_shapes()
    try:
        model = backend.export_model(predictor.model, tuple(features_shape))
    except ValueError as error:
        raise ValidationError(f"job: {error} (job {job.id}). Nothing was written.") from error
    files = {backend.export_file: model,
             ENCODERS: dumps_by_value({"features": [e.fitted for e in predictor.encoders],
                                       "label": predictor.label_encoder})}
    if predictor.fn_predict is not None:
        files[FN_PREDICT] = dumps_by_value(predictor.fn_predict)
    manifest = _manifest(job, predictor, files, (features_shape, label_shape))
    temporary = _write(target, manifest, files)
    try:
        _verify(job, temporary, target)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    logger.info("exported job %s to %s", job.id, target)
    return target


def _target(path: Any) -> Path:
    """The absolute path to write, checked: a file (not a folder) in a folder that exists."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValidationError.expected("path", "a file path to write the predictor to, e.g. 'churn.aiqc'", path)
    target = Path(path).expanduser().absolute()
    if target.is_dir():
        raise ValidationError(f"path: expected a file to write the predictor to; received {str(path)!r}, an existing "
                              "folder. Nothing was written.")
    if not target.parent.is_dir():
        raise ValidationError(f"path: expected a file in an existing folder; received {str(path)!r}, whose folder "
                              f"{str(target.parent)!r} does not exist. Nothing was written.")
    return target


def _distributions(backend: "Backend") -> list[str]:
    """What an exported predictor of ``backend``'s library depends on: Python, aiqc, numpy,
    pandas, scikit-learn and the distributions that provide the library's modules."""
    import re
    from importlib import metadata

    provided = metadata.packages_distributions()
    libraries = [re.sub(r"[-_.]+", "-", d).lower() for m in backend.modules for d in provided.get(m, [m])]
    return list(dict.fromkeys((*BASE_DISTRIBUTIONS, *libraries)))


def _manifest(job: Any, predictor: Predictor, files: dict[str, bytes],
              shapes: tuple[Any, Any]) -> dict[str, Any]:
    """What the file says about itself and its job (see the module's docstring)."""
    import datetime as dt

    from aiqc.versions import DISTRIBUTIONS, installed, runtime

    compared = _distributions(predictor.backend)
    experiment = job.queue.experiment
    label_encoder = predictor.label_encoder
    return _plain({
        "format": FORMAT,
        "format_version": predictor.input.format_version,  # an older aiqc refuses what it cannot read
        "aiqc_version": installed("aiqc"),
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "job": {"id": job.id, "queue_id": job.queue_id, "experiment_id": experiment.id, "repeat": job.repeat_index,
                "fold": job.fold_index, "seed": job.seed, "hyperparameters": job.hyperparameters,
                "aliases": job.aliases},
        "library": predictor.library.value,
        "analysis_type": predictor.analysis_type.value,
        "label": {"column": predictor.label_column, "classes": predictor.class_names,
                  "encoder": None if label_encoder is None else _class_path(label_encoder)},
        "features": predictor.input.to_manifest(),
        "input_shapes": {"features": list(shapes[0]), "label": list(shapes[1])},
        "model": {"file": predictor.backend.export_file, "format": predictor.backend.export_format},
        "fn_predict": FN_PREDICT if FN_PREDICT in files else None,
        "versions": {"exported": runtime(tuple(dict.fromkeys((*DISTRIBUTIONS, *compared[1:])))),
                     "recorded": job.versions, "compared": compared},
        "metrics": job.metrics(),
        "files": {name: hashlib.sha256(blob).hexdigest() for name, blob in files.items()},
    })


def _class_path(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _plain(value: Any) -> Any:
    """``value`` as strict JSON can hold it: NaN and infinities as None, numpy scalars as numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write(target: Path, manifest: dict[str, Any], files: dict[str, bytes]) -> Path:
    """The zip, written under a temporary name in ``target``'s folder (so that renaming it to
    ``target`` is atomic) and flushed to disk; removed again if writing fails."""
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(temporary, "xb") as handle:
            with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(MANIFEST, json.dumps(manifest, indent=2, allow_nan=False))
                for name, blob in files.items():
                    archive.writestr(name, blob)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _verify(job: Any, written: Path, target: Path) -> None:
    """Load ``written`` back as a user would and check that its predictions on the first
    :data:`CHECK_ROWS` training rows (or images, or sequences) of the job's scope equal
    ``job.predict``'s."""
    import pandas as pd

    from aiqc.inference import predictor_for

    splitset = job.queue.experiment.splitset
    rows = splitset.indices("train", job.fold_index)[:CHECK_ROWS]
    sample = predictor_for(job).input.training_samples(splitset.feature.dataset, rows)
    expected = job.predict(sample)
    try:
        loaded = load_predictor(written)
    except Exception as error:  # noqa: BLE001 - whatever fails, the file cannot be shipped
        raise ValidationError(
            f"job: expected a job whose model and encoders load back from the exported file alone; loading job "
            f"{job.id}'s failed ({type(error).__name__}: {error}). Nothing was written to {str(target)!r}."
        ) from error
    got = loaded.predict(sample)
    try:
        pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-5, atol=1e-6)
    except AssertionError as error:
        raise AIQCError(
            f"export: the exported predictor of job {job.id}, loaded back, predicts {CHECK_ROWS} training rows "
            f"differently from job.predict ({str(error).strip().splitlines()[0]}); nothing was written to "
            f"{str(target)!r}."
        ) from error


# --- loading ----------------------------------------------------------------------------------------
class _Files:
    """The files of an exported predictor: the members of its zip, or of its unzipped folder."""

    def __init__(self, path: Path, shown: str) -> None:
        self.path, self.shown = path, shown
        self.archive: zipfile.ZipFile | None = None
        if path.is_dir():
            return
        try:
            self.archive = zipfile.ZipFile(path)
        except (PermissionError, IsADirectoryError) as error:
            raise ValidationError(f"path: expected a readable exported predictor; received {shown}, which cannot "
                                  f"be read ({error}).") from error
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as error:
            with open(path, "rb") as handle:
                head = handle.read(4)
            if head[:2] == b"PK":  # a zip's signature: one that lost its end (truncated) or was damaged
                raise IntegrityError(f"path: {shown} is a damaged zip file (truncated or corrupt: {error}). Export "
                                     "the job again, or copy the file again.") from error
            raise ValidationError(f"path: expected an exported predictor (a zip file written by job.export, or its "
                                  f"unzipped folder); received {shown}, which is not a zip file.") from error

    def read(self, name: str) -> bytes:
        """One file's bytes; an IntegrityError when it is missing or damaged."""
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            raise IntegrityError(f"{self.shown}: its manifest names the file {name!r}, which is not a plain file "
                                 "name: the file is damaged or was altered.")
        try:
            if self.archive is None:
                return (self.path / name).read_bytes()
            return self.archive.read(name)
        except (KeyError, FileNotFoundError) as error:
            raise IntegrityError(f"{self.shown}: expected the file {name!r} its manifest lists; it is missing: the "
                                 "predictor is incomplete. Export the job again.") from error
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
            raise IntegrityError(f"{self.shown}: its file {name!r} is damaged ({error}). Export the job again, or "
                                 "copy the file again.") from error

    def close(self) -> None:
        """Close the zip (a folder holds nothing open)."""
        if self.archive is not None:
            self.archive.close()


def load_predictor(path: str | os.PathLike) -> "Predictor":
    """The :class:`~aiqc.predictor.Predictor` exported to ``path`` by ``job.export`` (the zip, or
    its unzipped folder); ``.predict(df)`` gives what ``job.predict(df)`` gave. Opens no database.

    Checks, before anything is unpickled: a zip or folder of aiqc's layout (else a
    ValidationError naming ``path``), an intact zip (a truncated or damaged one is an
    :class:`~aiqc.exceptions.IntegrityError`), a format version this aiqc reads, and the
    sha256 of every file against the manifest (IntegrityError). A :class:`VersionWarning`
    names each of Python (major.minor), aiqc, numpy, pandas, scikit-learn and the
    deep-learning library whose version differs from the one it was exported under.

    Loading unpickles the fitted encoders (and the experiment's ``fn_predict``, if it had one):
    that runs code, so load only predictors you trust.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValidationError.expected("path", "the path of an exported predictor (a file written by job.export, "
                                       "or its unzipped folder)", path)
    source = Path(path).expanduser()
    shown = repr(str(path))
    if source.is_dir() and not (source / MANIFEST).is_file():
        raise ValidationError(f"path: expected an exported predictor (a file written by job.export, or its unzipped "
                              f"folder); received {shown}, a folder without a {MANIFEST}.")
    if not source.exists():
        raise ValidationError(f"path: expected an exported predictor (a file written by job.export, or its unzipped "
                              f"folder); received {shown}, which does not exist.")
    files = _Files(source, shown)
    try:
        manifest = _read_manifest(files)
        blobs = {name: _checked(files, name, digest) for name, digest in manifest["files"].items()}
    finally:
        files.close()
    _warn_versions(manifest, shown)
    return _predictor(manifest, blobs, shown)


def _read_manifest(files: _Files) -> dict[str, Any]:
    """The manifest, checked: aiqc's format, a version this aiqc reads, the keys it needs, and a
    digest listed for every file that will be loaded."""
    from aiqc.versions import installed

    shown = files.shown
    try:
        manifest = json.loads(files.read(MANIFEST))
    except IntegrityError as error:
        if files.archive is not None and MANIFEST not in files.archive.namelist():
            raise ValidationError(f"path: expected an exported predictor (a zip file written by job.export); received "
                                  f"{shown}, a zip without a {MANIFEST}.") from error
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IntegrityError(f"{shown}: its {MANIFEST} is not valid JSON ({error}): the file is damaged.") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValidationError(f"path: expected an exported predictor (its {MANIFEST} of format {FORMAT!r}); received "
                              f"{shown}, whose {MANIFEST} is not.")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise IntegrityError(f"{shown}: its {MANIFEST} holds no valid format_version (received {version!r}): the "
                             "file is damaged or was altered.")
    if version > FORMAT_VERSION:
        raise ValidationError(
            f"path: expected an exported predictor of format version {FORMAT_VERSION} or older, which aiqc "
            f"{installed('aiqc')} reads; received {shown}, of format version {version}, written by aiqc "
            f"{manifest.get('aiqc_version', '?')}. Upgrade aiqc to load it."
        )
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    kind = input_kind(manifest.get("features"))
    if kind is None:
        raise ValidationError(
            f"path: expected an exported predictor of a kind this aiqc reads ({', '.join(INPUTS)}); received "
            f"{shown}, whose features are of modality {manifest['features'].get('modality')!r}, written by aiqc "
            f"{manifest.get('aiqc_version', '?')}. Upgrade aiqc to load it.")
    nested = {**NESTED_KEYS, "features": kind.manifest_keys}
    missing += [f"{k}.{n}" for k, names in nested.items() if k in manifest
                for n in names if not isinstance(manifest[k], dict) or n not in manifest[k]]
    if missing:
        raise IntegrityError(f"{shown}: its {MANIFEST} lacks {missing!r}: the file is damaged or was altered.")
    listed = manifest["files"]
    needed = [manifest["model"]["file"], ENCODERS] + ([FN_PREDICT] if manifest.get("fn_predict") else [])
    unlisted = [n for n in needed if not isinstance(listed, dict) or n not in listed]
    if unlisted:
        raise IntegrityError(f"{shown}: its {MANIFEST} lists no sha256 for {unlisted!r}: the file is damaged or was "
                             "altered, so nothing in it is loaded.")
    return manifest


def _checked(files: _Files, name: str, digest: Any) -> bytes:
    """One file's bytes, after their sha256 is compared with the manifest's."""
    blob = files.read(name)
    if hashlib.sha256(blob).hexdigest() != digest:
        raise IntegrityError(
            f"{files.shown}: its file {name!r} does not match the sha256 recorded in its {MANIFEST}: the predictor is "
            "corrupt or was altered, so nothing in it was unpickled or loaded. Export the job again."
        )
    return blob


def _warn_versions(manifest: dict[str, Any], shown: str) -> None:
    """A VersionWarning naming each compared version that differs from the running one."""
    from aiqc.versions import describe, mismatches

    versions = manifest.get("versions") or {}
    exported = versions.get("exported") or {}
    found = mismatches(exported, tuple(versions.get("compared") or exported))
    if found:
        warnings.warn(f"predictor {shown} was exported under {describe(found)}: its model or encoders may behave "
                      "differently, or not load, under other versions. Export the job again under these versions "
                      "to be sure.", VersionWarning, stacklevel=3)


def _predictor(manifest: dict[str, Any], blobs: dict[str, bytes], shown: str) -> Predictor:
    """The predictor, from a checked manifest and verified files: unpickles, then loads the model."""
    library = parse_library(manifest["library"], parameter=f"{shown}: manifest 'library'")
    backend = get_backend(library)
    backend.check_installed()
    features, label = manifest["features"], manifest["label"]
    fitted = pickle.loads(blobs[ENCODERS])  # noqa: S301 - verified above; documented: only trusted files
    described = features.get("encoders") or []
    if not isinstance(fitted, dict) or len(fitted.get("features") or []) != len(described):
        raise IntegrityError(f"{shown}: its {ENCODERS} does not hold the {len(described)} feature encoders its "
                             f"{MANIFEST} describes: the file is damaged or was altered.")
    reads = input_kind(features).from_manifest(features, label["column"], fitted["features"])
    fn_predict = pickle.loads(blobs[FN_PREDICT]) if manifest.get("fn_predict") else None  # noqa: S301 - as above
    model = backend.load_exported(blobs[manifest["model"]["file"]])
    return Predictor(
        library=library, analysis_type=manifest["analysis_type"], input=reads, label_column=label["column"],
        label_encoder=fitted.get("label"), class_names=label.get("classes") or [], model=model,
        fn_predict=fn_predict, job_id=(manifest.get("job") or {}).get("id"), manifest=manifest,
    )
