"""aiqc: keep every deep-learning experiment on tabular data in one database.

    import aiqc
    aiqc.setup()
    splitset = aiqc.Pipeline.Tabular.make(df_or_path=..., label_column=..., ...)

``import aiqc`` is cheap: pandas, scikit-learn, TensorFlow and torch load only when a
feature that needs them is used.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from aiqc import exceptions
from aiqc.database import destroy_db, setup

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

# Public names resolved on first access (PEP 562), so the import stays fast.
_LAZY = {
    "Pipeline": "aiqc.pipeline",
    "Dataset": "aiqc.orm",
    "Label": "aiqc.orm",
    "Feature": "aiqc.orm",
    "Splitset": "aiqc.orm",
    "Fold": "aiqc.orm",
    "Encoder": "aiqc.orm",
    "Experiment": "aiqc.orm",
    "Queue": "aiqc.orm",
    "Job": "aiqc.orm",
    "JobState": "aiqc.states",
    "datum": None,
    "plots": None,
    "executors": None,
}
_ALIASES = {"torch_fit": ("aiqc.backends.pytorch", "fit"), "record_epoch": ("aiqc.backends.pytorch", "record_epoch"),
            "list_queues": ("aiqc.results", "list_queues"), "list_experiments": ("aiqc.results", "list_experiments"),
            "list_datasets": ("aiqc.results", "list_datasets"), "list_splitsets": ("aiqc.results", "list_splitsets"),
            "compare_queues": ("aiqc.compare", "compare_queues"), "write_report": ("aiqc.report", "write_report"),
            "load_predictor": ("aiqc.export", "load_predictor")}

__all__ = ["setup", "destroy_db", "exceptions", "datum", "Pipeline", "Dataset", "Label", "Feature",
           "Splitset", "Fold", "Encoder", "Experiment", "Queue", "Job", "JobState", "torch_fit", "record_epoch",
           "list_queues", "list_experiments", "list_datasets", "list_splitsets", "compare_queues", "write_report",
           "load_predictor", "plots", "executors", "__version__"]

if TYPE_CHECKING:
    from aiqc import datum, executors
    from aiqc.backends.pytorch import fit as torch_fit, record_epoch
    from aiqc.compare import compare_queues
    from aiqc.export import load_predictor
    from aiqc.orm import Dataset, Encoder, Experiment, Feature, Fold, Job, JobState, Label, Queue, Splitset
    from aiqc.pipeline import Pipeline
    from aiqc.report import write_report
    from aiqc.results import list_datasets, list_experiments, list_queues, list_splitsets


def __getattr__(name: str) -> Any:
    if name in _ALIASES:
        module, attribute = _ALIASES[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    if name not in _LAZY:
        raise AttributeError(f"module 'aiqc' has no attribute {name!r}")
    module = _LAZY[name]
    value = importlib.import_module(f"aiqc.{name}") if module is None else getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
