"""rfmflow: RFM segmentation and lifecycle automation.

>>> import rfmflow
>>> result = rfmflow.score("transactions.csv", scheme="rfm11")  # doctest: +SKIP
>>> result.to_pandas().head()  # doctest: +SKIP
"""

from rfmflow.api import cluster, predict, score
from rfmflow.core.errors import (
    EngineError,
    ExpressionError,
    InputError,
    ModelError,
    ModelFitError,
    RejectedRowError,
    RfmflowError,
    SchemeError,
)
from rfmflow.core.scheme import Scheme, scheme_from_dict, scheme_from_yaml
from rfmflow.result import ClusterRun, PredictResult, ScoreResult
from rfmflow.schemes import builtin_names, load_scheme

__version__ = "0.1.0"

__all__ = [
    "ClusterRun",
    "EngineError",
    "ExpressionError",
    "InputError",
    "ModelError",
    "ModelFitError",
    "PredictResult",
    "RejectedRowError",
    "RfmflowError",
    "Scheme",
    "SchemeError",
    "ScoreResult",
    "builtin_names",
    "cluster",
    "load_scheme",
    "predict",
    "scheme_from_dict",
    "scheme_from_yaml",
    "score",
]
