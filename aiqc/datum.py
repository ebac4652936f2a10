"""Bundled sample data, by file name: ``datum.to_pandas('iris.tsv')``."""

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
    if name not in DATUMS:
        raise ValidationError.expected("name", f"one of {sorted(DATUMS)!r}", name)
    return str(_folder() / name)


def to_pandas(name: str) -> "pd.DataFrame":
    """A bundled file as a DataFrame."""
    from aiqc.data.frames import read_path

    return read_path(get_path(name), parameter="name")


def list_datums() -> "pd.DataFrame":
    """One row per bundled file: name, rows, columns, label, analysis type, description."""
    import pandas as pd

    rows = []
    for name, (label, analysis_type, description) in DATUMS.items():
        df = to_pandas(name)
        rows.append(dict(name=name, rows=len(df), columns=df.shape[1], label=label,
                         analysis_type=analysis_type.value, description=description))
    return pd.DataFrame(rows)
