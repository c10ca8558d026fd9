"""The Python API for notebooks and scripts: score a file path or a data frame."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import ValidationError

from rfmflow.core.errors import InputError
from rfmflow.core.prediction_results import PredictOptions
from rfmflow.core.scheme import Predictions, Scheme
from rfmflow.engines.duckdb_engine import Progress, ScoreOptions, predict_with_duckdb, score_with_duckdb
from rfmflow.result import ClusterRun, PredictResult, ScoreResult
from rfmflow.schemes import load_scheme


def _as_date(value: date | str | None, name: str = "as_of") -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InputError(f"{name}: {value!r} is not a date (use YYYY-MM-DD)") from None


def score(
    data: Any,
    *,
    scheme: str | Path | Scheme | None = None,
    as_of: date | str | None = None,
    timezone: str = "UTC",
    event_types: Sequence[str] | None = None,
    columns: Mapping[str, str] | None = None,
    date_format: str | None = None,
    decimal_comma: bool = False,
    delimiter: str | None = None,
    header: bool = True,
    column_names: Sequence[str] | None = None,
    currency: str | None = None,
    money_decimals: int = 2,
    strict: bool = False,
    drop_after_as_of: bool = False,
    rejects_path: str | Path | None = None,
    progress: Progress | None = None,
    encoding: str = "utf-8",
    predict: bool = False,
    predictions: Mapping[str, Any] | None = None,
) -> ScoreResult:
    """Score every customer in ``data`` and return a :class:`~rfmflow.ScoreResult`.

    ``data`` is a path to a CSV/TSV/TXT (any delimiter), Parquet or JSON(-lines) file, a
    pandas or Polars DataFrame, or a pyarrow Table, holding one row per transaction or
    interaction. Columns are detected by their names (``customer_id``, ``order_date``,
    ``amount`` and common variants) or mapped with ``columns={"customer": ..., "date": ...,
    "amount": ..., "type": ..., "order": ..., "price": ..., "quantity": ..., "currency": ...}``.

    ``scheme`` is a built-in scheme name (default ``rfm11``), a YAML path or a Scheme.
    ``as_of`` defaults to the day after the last event. Call ``.to_pandas()`` or
    ``.to_polars()`` on the result for a frame.

    With ``predict=True`` (automatic when the scheme's rules read predictions) the
    buy-till-you-die and spend models are fitted and ``p_alive``, ``expected_purchases``,
    ``expected_spend``, ``clv``, ``churn_risk``, ``days_to_next_purchase`` and
    ``expected_next_purchase`` are output beside the scores; ``predictions`` overrides the
    scheme's ``predictions`` settings (``{"model": "pareto-nbd", "horizon_days": 30}``).
    """
    resolved = load_scheme(scheme)
    options = _options(
        as_of=as_of, timezone=timezone, event_types=event_types, columns=columns, date_format=date_format,
        decimal_comma=decimal_comma, delimiter=delimiter, header=header, column_names=column_names,
        currency=currency, money_decimals=money_decimals, strict=strict, drop_after_as_of=drop_after_as_of,
        rejects_path=rejects_path, encoding=encoding,
    )  # fmt: skip
    prediction = None
    if predict or predictions or resolved.uses_predictions:
        prediction = PredictOptions(settings=prediction_settings(resolved, predictions))
    return score_with_duckdb(data, resolved, options, progress=progress, predict=prediction)


def predict(
    data: Any,
    *,
    scheme: str | Path | Scheme | None = None,
    as_of: date | str | None = None,
    calibration_end: date | str | None = None,
    model: str | None = None,
    time_unit: str | None = None,
    horizon_days: int | None = None,
    clv_horizon_days: int | None = None,
    discount_rate: float | None = None,
    penalizer: float | None = None,
    churn_thresholds: tuple[float, float] | None = None,
    compare: bool = False,
    load_models: str | Path | None = None,
    save_models: str | Path | None = None,
    timezone: str = "UTC",
    event_types: Sequence[str] | None = None,
    columns: Mapping[str, str] | None = None,
    date_format: str | None = None,
    decimal_comma: bool = False,
    delimiter: str | None = None,
    header: bool = True,
    column_names: Sequence[str] | None = None,
    currency: str | None = None,
    money_decimals: int = 2,
    strict: bool = False,
    drop_after_as_of: bool = False,
    rejects_path: str | Path | None = None,
    progress: Progress | None = None,
    encoding: str = "utf-8",
) -> PredictResult:
    """Fit the purchase model (MBG/NBD by default; ``model="bgnbd"`` or ``"pareto-nbd"``) and
    the Gamma-Gamma spend model on ``data`` and predict every customer with a transaction.

    The input is read as by :func:`score`. Settings left as ``None`` come from the scheme's
    ``predictions`` block (defaults: weeks, 90-day horizon, 365-day CLV at 10% a year, churn
    risk high below p_alive 0.3, medium below 0.7). With ``calibration_end`` the models are
    fitted on the events up to that day and validated on the rest (``result.report.holdout``);
    ``compare=True`` fits all three purchase models and reports log-likelihood, BIC and holdout
    error. ``save_models``/``load_models`` write or read the fitted parameters as JSON.
    """
    resolved = load_scheme(scheme)
    options = _options(
        as_of=as_of, timezone=timezone, event_types=event_types, columns=columns, date_format=date_format,
        decimal_comma=decimal_comma, delimiter=delimiter, header=header, column_names=column_names,
        currency=currency, money_decimals=money_decimals, strict=strict, drop_after_as_of=drop_after_as_of,
        rejects_path=rejects_path, encoding=encoding,
    )  # fmt: skip
    overrides: dict[str, Any] = {
        "model": model,
        "time_unit": time_unit,
        "horizon_days": horizon_days,
        "clv_horizon_days": clv_horizon_days,
        "discount_rate": discount_rate,
        "penalizer": penalizer,
    }
    if churn_thresholds is not None:
        if len(churn_thresholds) != 2:
            raise InputError("churn_thresholds: give two numbers, high-risk below and medium-risk below")
        overrides["churn_risk"] = {"high_below": churn_thresholds[0], "medium_below": churn_thresholds[1]}
    settings = prediction_settings(resolved, {k: v for k, v in overrides.items() if v is not None})
    cal = _as_date(calibration_end, "calibration_end")
    if cal is not None and options.as_of is not None and cal >= options.as_of:
        raise InputError(
            f"calibration_end: {cal} is not before the as-of date {options.as_of}; the holdout period "
            "runs from the day after the calibration end to the as-of date"
        )
    return predict_with_duckdb(
        data,
        resolved,
        options,
        PredictOptions(
            settings=settings,
            calibration_end=cal,
            compare=compare,
            load_path=Path(load_models) if load_models else None,
            save_path=Path(save_models) if save_models else None,
        ),
        progress=progress,
    )


def cluster(
    data: Any,
    *,
    k: int | None = None,
    k_range: tuple[int, int] = (3, 8),
    predict: bool = False,
    sample_size: int = 10_000,
    random_state: int = 0,
    **kwargs: Any,
) -> ClusterRun:
    """Score ``data`` and group its customers with K-Means on log-scaled, standardised R/F/M.

    ``k`` fixes the number of clusters; by default it is chosen in ``k_range`` by the
    silhouette on a ``sample_size`` sample. The range starts at 3: on purchase data two
    clusters (one-time against repeat buyers) almost always have the best silhouette and
    say nothing a frequency score does not. With ``predict=True`` the models are fitted and
    ``p_alive`` and ``clv`` are clustered on too. Clusters are numbered by mean revenue per
    customer (0 = highest) and named by their centroid ("Recent frequent high spenders").
    Every other keyword is passed to :func:`score` (scheme, as_of, columns, ...).
    """
    import numpy as np

    from rfmflow.clustering import cluster_customers

    scored = score(data, predict=predict, **kwargs)
    table = scored.customers

    def floats(name: str) -> Any:
        column = table.column(name)
        if pa.types.is_decimal(column.type):
            column = column.cast(pa.float64())
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)

    if table.column("recency_days").null_count == table.num_rows:
        kinds = scored.scheme.metrics.recency.events
        raise InputError(
            f"no customer has a recency event ({'any' if kinds == 'any' else ', '.join(kinds)}), so there is "
            "no recency to cluster on; choose a scheme whose recency counts the events you have "
            "(--scheme telegram-scrm for interactions) or --event-type"
        )
    notes: list[str] = []
    names = ["recency_days", "frequency", "monetary"]
    if predict:
        names += ["p_alive", "clv"]
        if table.column("clv").null_count == table.num_rows:
            names.remove("clv")
            notes.append("clv is empty for every customer (no spend model), so clusters use p_alive only")
    features = {name: floats(name) for name in names}
    result = cluster_customers(
        features, k=k, k_range=k_range, sample_size=sample_size, random_state=random_state
    )
    labels = result.to_arrow_labels()
    customers = table.select(["customer_id", *names, "segment"])
    customers = customers.append_column("cluster", labels.column("cluster"))
    customers = customers.append_column("cluster_name", labels.column("cluster_name").cast(pa.string()))
    return ClusterRun(customers=customers, clusters=result, score=scored, notes=notes)


def prediction_settings(scheme: Scheme, overrides: Mapping[str, Any] | None) -> Predictions:
    """The scheme's ``predictions`` block with ``overrides`` applied, validated."""
    data = scheme.predictions.model_dump()
    for key, value in (overrides or {}).items():
        if key == "churn_risk" and isinstance(value, Mapping):
            data["churn_risk"] = {**data["churn_risk"], **value}
        else:
            data[key] = value
    try:
        return Predictions.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in err.errors(include_url=False)
        )
        raise InputError(f"prediction settings: {problems}") from None


def _options(
    *,
    as_of: date | str | None,
    timezone: str,
    event_types: Sequence[str] | None,
    columns: Mapping[str, str] | None,
    date_format: str | None,
    decimal_comma: bool,
    delimiter: str | None,
    header: bool,
    column_names: Sequence[str] | None,
    currency: str | None,
    money_decimals: int,
    strict: bool,
    drop_after_as_of: bool,
    rejects_path: str | Path | None,
    encoding: str,
) -> ScoreOptions:
    if (
        delimiter is not None
        and len(delimiter) != 1
        and delimiter not in ("tab", "\\t", "whitespace", "space")
    ):
        raise InputError(f"delimiter: {delimiter!r} must be one character, 'tab' or 'whitespace'")
    if not 0 <= money_decimals <= 6:
        raise InputError("money_decimals: must be between 0 and 6")
    return ScoreOptions(
        as_of=_as_date(as_of),
        timezone=check_timezone(timezone),
        event_types=tuple(event_types) if event_types else None,
        columns=dict(columns or {}),
        delimiter=delimiter,
        header=header,
        column_names=tuple(column_names) if column_names else None,
        date_format=date_format,
        decimal_comma=decimal_comma,
        currency=currency,
        money_scale=money_decimals,
        strict=strict,
        drop_future=drop_after_as_of,
        rejects_path=Path(rejects_path) if rejects_path else None,
        encoding=encoding,
    )


def check_timezone(name: str) -> str:
    """Return ``name`` if it is an IANA time zone DuckDB knows; else raise :class:`InputError`."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

    try:
        ZoneInfo(name)
        if name not in available_timezones() or name in ("localtime", "posixrules", "Factory"):
            raise ValueError(name)  # not a zone DuckDB knows
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(
            f"timezone: unknown time zone {name!r} (use an IANA name such as Europe/Berlin)"
        ) from None
    return name
