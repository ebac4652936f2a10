"""Bundled sample data, by file name: ``datum.to_pandas('iris.tsv')``.

Tables ship as files. Image and sequence sets are generated from what packages ship (or from
code) on first use, into ``datums/`` of the user data directory (``AIQC_DATUMS`` overrides),
and reused after: nothing is downloaded."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aiqc.analysis import AnalysisType
from aiqc.exceptions import ValidationError

if TYPE_CHECKING:
    import pandas as pd

#: name -> (label column, analysis type, description)
DATUMS = {
    "iris.tsv": ("species", AnalysisType.CLASSIFICATION_MULTI, "Fisher's iris: 3 species, 4 measurements."),
    "iris_10x.tsv": ("species", AnalysisType.CLASSIFICATION_MULTI, "Iris x10 with 2% jitter: 1,500 rows, for folds."),
    "breast_cancer.csv": ("diagnosis", AnalysisType.CLASSIFICATION_BINARY,
                          "Wisconsin diagnostic breast cancer: 30 features."),
    "diabetes.csv": ("progression", AnalysisType.REGRESSION,
                     "Diabetes progression after one year: 10 baseline features."),
    "wine.parquet": ("cultivar", AnalysisType.CLASSIFICATION_MULTI, "Wine recognition: 3 cultivars, 13 chemical measures."),
}


#: name -> (modality, samples, label column, analysis type, description, "module:function" that
#: writes it into a folder and returns its path); the function takes (folder: Path) and must be
#: deterministic. ``get_path(name)`` is that path (a folder of images, a file of sequences).
GENERATED: dict[str, tuple[str, int, str, AnalysisType, str, str]] = {}
GENERATED["digits"] = ("image", 1797, "label", AnalysisType.CLASSIFICATION_MULTI,
                       "scikit-learn's handwritten digits 0-9: 8x8 grayscale PNG files in a folder per label.",
                       "aiqc.data.images:write_digits")
GENERATED["signals.parquet"] = ("sequence", 300, "label", AnalysisType.CLASSIFICATION_MULTI,
                                "Noisy sine, square and sawtooth waves: 300 sequences x 40 timesteps x 3 features "
                                "(x, y, z), a long table (sequence_id, t).",
                                "aiqc.data.sequences:write_signals")


def generated_folder() -> Path:
    """Where generated datums are written: ``AIQC_DATUMS``, else ``datums/`` in the user data directory."""
    import os

    if os.environ.get("AIQC_DATUMS"):
        return Path(os.environ["AIQC_DATUMS"])
    from platformdirs import user_data_dir

    return Path(user_data_dir("aiqc", appauthor=False)) / "datums"


def _generated(name: str) -> Path:
    """The path of a generated datum, written on first use (into a temporary folder, then
    renamed, so a second process never reads a half-written one)."""
    import importlib
    import shutil
    import tempfile

    folder = generated_folder()
    module, _, function = GENERATED[name][5].partition(":")
    writer = getattr(importlib.import_module(module), function)
    target = folder / name
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folder))
    try:
        written = Path(writer(staging))
        relative = written.relative_to(staging)
        if not target.exists():
            (staging / relative).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _folder() -> Path:
    """The data folder: inside the installed package, or ``datasets/`` of a source checkout."""
    try:
        from importlib.resources import files

        folder = Path(str(files("aiqc.datasets")))
        if folder.is_dir():
            return folder
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "datasets"


def get_path(name: str) -> str:
    """Absolute path of a bundled file, e.g. ``get_path('iris.tsv')``."""
    if name in GENERATED:
        return str(_generated(name))
    if name not in DATUMS:
        raise ValidationError.expected("name", f"one of {sorted(DATUMS) + sorted(GENERATED)!r}", name)
    return str(_folder() / name)


def to_pandas(name: str) -> "pd.DataFrame":
    """A bundled file as a DataFrame; a folder of images as its table of (file, label), one
    row per image (``Pipeline.Image.make(datum.get_path(name))`` reads the pixels)."""
    from aiqc.data.frames import read_path

    path = get_path(name)
    if name in GENERATED and GENERATED[name][0] == "image" and Path(path).is_dir():
        from aiqc.data.images import folder_table

        return folder_table(path, label_column=GENERATED[name][2])
    return read_path(path, parameter="name")


def list_datums() -> "pd.DataFrame":
    """One row per bundled dataset: name, modality (tabular, image, sequence), rows (of a table;
    images; sequences), columns (of a table), label, analysis type, description. Generated ones
    are listed without being generated."""
    import pandas as pd

    rows = []
    for name, (label, analysis_type, description) in DATUMS.items():
        df = to_pandas(name)
        rows.append(dict(name=name, modality="tabular", rows=len(df), columns=df.shape[1], label=label,
                         analysis_type=analysis_type.value, description=description))
    for name, (modality, samples, label, analysis_type, description, _) in GENERATED.items():
        rows.append(dict(name=name, modality=modality, rows=samples, columns=None, label=label,
                         analysis_type=analysis_type.value, description=description))
    return pd.DataFrame(rows, columns=["name", "modality", "rows", "columns", "label", "analysis_type", "description"])
