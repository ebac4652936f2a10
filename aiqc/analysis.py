"""Analysis types: what a model predicts, and so which loss, outputs and metrics apply."""

from __future__ import annotations

import enum

from aiqc.exceptions import ValidationError


class AnalysisType(str, enum.Enum):
    """The ``analysis_type`` of an experiment; compares equal to its string value."""

    CLASSIFICATION_MULTI = "classification_multi"
    CLASSIFICATION_BINARY = "classification_binary"
    REGRESSION = "regression"

    @property
    def is_classification(self) -> bool:
        return self is not AnalysisType.REGRESSION

    @classmethod
    def parse(cls, value: object, parameter: str = "analysis_type") -> AnalysisType:
        """``value`` as an AnalysisType; a :class:`ValidationError` naming ``parameter`` otherwise."""
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(repr(a.value) for a in cls)
            raise ValidationError.expected(parameter, f"one of {names}", value) from None
