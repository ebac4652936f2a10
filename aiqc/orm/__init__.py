"""peewee models. Bound to a database by :func:`aiqc.setup` through :data:`database_proxy`."""

from aiqc.orm.base import BaseModel, database_proxy
from aiqc.orm.dataset import Dataset, DatasetArray, DatasetPart
from aiqc.orm.encoder import Encoder
from aiqc.orm.feature import Feature
from aiqc.orm.label import Label
from aiqc.orm.meta import SCHEMA_VERSION, SchemaInfo
from aiqc.orm.splitset import Fold, Splitset
from aiqc.orm.experiment import Experiment, Hyperparamset
from aiqc.orm.job import Job, JobAlias, Queue
from aiqc.states import JobState
from aiqc.orm.result import HistoryEntry, IntermediateValue, Metric, Prediction, TrainedModel

#: every table, in creation order (parents before children)
MODELS = [SchemaInfo, Dataset, DatasetPart, DatasetArray, Label, Feature, Splitset, Fold, Encoder,
          Experiment, Hyperparamset, Queue, Job, JobAlias, Metric, HistoryEntry, IntermediateValue, Prediction, TrainedModel]

__all__ = ["BaseModel", "database_proxy", "MODELS", "SCHEMA_VERSION", "SchemaInfo", "Dataset", "DatasetPart", "DatasetArray",
           "Label", "Feature", "Splitset", "Fold", "Encoder",
           "Experiment", "Hyperparamset", "Queue", "Job", "JobAlias", "JobState", "Metric", "HistoryEntry", "IntermediateValue", "Prediction", "TrainedModel"]
