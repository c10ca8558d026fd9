"""What a prediction run reports besides the per-customer rows: fitted models, holdout
validation, model comparison and the grids behind the charts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from rfmflow.core.scheme import Predictions

#: Model keys (CLI ``--model``) and their names in the literature.
MODEL_NAMES = {"bgnbd": "BG/NBD", "pareto-nbd": "Pareto/NBD", "mbgnbd": "MBG/NBD"}
DAYS_PER_UNIT = {"days": 1, "weeks": 7}
#: Prediction columns of the per-customer output, in order.
PREDICTION_OUTPUT = (
    "p_alive",
    "expected_purchases",
    "expected_spend",
    "clv",
    "churn_risk",
    "days_to_next_purchase",
    "expected_next_purchase",
)


@dataclass(frozen=True)
class FittedModel:
    """A fitted model's parameters (literature names and order), standard errors and fit."""

    key: str  # bgnbd, pareto-nbd, mbgnbd, gamma-gamma
    name: str  # BG/NBD ...
    params: dict[str, float]
    standard_errors: dict[str, float]
    log_likelihood: float
    customers: int
    bic: float
    time_unit: str | None  # None for the spend model, which has no time


@dataclass(frozen=True)
class HoldoutRow:
    """Customers with one calibration frequency: mean actual vs predicted holdout purchases."""

    frequency: str  # "0", "1", ..., "7+"
    customers: int
    actual: float
    predicted: float


@dataclass(frozen=True)
class Holdout:
    """Validation on the period after the calibration end."""

    calibration_end: date
    as_of: date
    duration: float  # in the model's time unit
    customers: int
    actual_total: int
    predicted_total: float
    mae: float  # mean absolute error per customer
    rmse: float
    by_frequency: list[HoldoutRow]


@dataclass(frozen=True)
class Comparison:
    """One candidate model in a comparison (lower BIC and holdout error are better)."""

    key: str
    name: str
    log_likelihood: float
    parameters: int
    bic: float
    holdout_mae: float | None
    holdout_rmse: float | None
    error: str | None = None  # why the model could not be fitted


@dataclass(frozen=True)
class Grid:
    """Values of a prediction over a grid of frequency (rows) and recency (columns) for the
    oldest customer's age ``T``, as in the literature's probability-alive matrix."""

    title: str
    frequencies: list[int]
    recencies: list[float]  # t_x in the time unit
    values: list[list[float]]  # [frequency][recency]
    age: float


@dataclass(frozen=True)
class PredictionReport:
    """Everything a person needs to trust the predictions."""

    purchase_model: FittedModel
    spend_model: FittedModel | None
    time_unit: str
    horizon_days: int
    clv_horizon_days: int
    discount_rate: float
    churn_thresholds: tuple[float, float]  # high below, medium below
    churn_counts: dict[str, int]  # low / medium / high
    customers_predicted: int
    customers_without_transactions: int
    calibration_end: date | None = None
    holdout: Holdout | None = None
    comparison: list[Comparison] = field(default_factory=list)
    spend_frequency_correlation: float | None = None
    grids: list[Grid] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    loaded_from: str | None = None  # parameters loaded from a file instead of fitted


def churn_risk(p_alive: float | None, high_below: float, medium_below: float) -> str | None:
    """``high`` below ``high_below``, ``medium`` below ``medium_below``, else ``low``."""
    if p_alive is None:
        return None
    if p_alive < high_below:
        return "high"
    return "medium" if p_alive < medium_below else "low"


@dataclass(frozen=True)
class PredictOptions:
    """What to predict and how; the scheme's ``predictions`` block gives the defaults."""

    settings: Predictions
    calibration_end: date | None = None
    compare: bool = False
    load_path: Path | None = None
    save_path: Path | None = None
