"""Schemes: how metrics are measured, scored and turned into segments and tags.

A scheme is data (YAML). :func:`scheme_from_yaml` and :func:`scheme_from_dict` validate it
and return a :class:`Scheme` whose rule expressions are already parsed, so a scheme that
loads is a scheme that runs. Errors name the scheme, the field path and the reason, for
example ``scheme 'mine': segments[2]: unknown field 'wen' (did you mean 'when'?)``.

The YAML format, field by field, is documented in ``docs/schemes.md``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from rfmflow.core.errors import SchemeError
from rfmflow.core.expressions import Expr, parse_expression

ScoreKey = Literal["recency", "frequency", "monetary"]
SCORE_KEYS: tuple[ScoreKey, ...] = ("recency", "frequency", "monetary")
SCORE_COLUMN = {"recency": "r_score", "frequency": "f_score", "monetary": "m_score"}
PCT_COLUMN = {"recency": "r_pct", "frequency": "f_pct", "monetary": "m_pct"}

#: Names every rule may read, with their meaning (also used for documentation).
BASE_COLUMNS: dict[str, str] = {
    "recency_days": "whole days from the last qualifying event to as-of (0 = on the as-of date)",
    "frequency": "number of qualifying events (orders) in the frequency window",
    "monetary": "net amount (purchases minus refunds) in the monetary window, or the scheme's substitute",
    "tenure_days": "whole days from the customer's first event to as-of",
    "lifecycle": "'new' when tenure_days is below lifecycle.new_within_days, else 'established'",
    "r_score": "recency score, 1 (worst) .. bins (best)",
    "f_score": "frequency score, 1 .. bins",
    "m_score": "monetary score, 1 .. bins (None in RF-only schemes)",
    "r_pct": "share of customers with a worse (older) recency, 0 <= r_pct < 1",
    "f_pct": "share of customers with a lower frequency, 0 <= f_pct < 1",
    "m_pct": "share of customers with a lower monetary value (m_pct >= 0.8 is the top 20%)",
    "rfm": "the scores as text, for example '545'",
}
#: Names of the model predictions, readable by rules when predictions are made.
PREDICTION_COLUMNS: dict[str, str] = {
    "p_alive": "probability that the customer is still active (buy-till-you-die model), 0..1",
    "expected_purchases": "expected number of purchases over the prediction horizon",
    "expected_spend": "expected value of one future purchase (Gamma-Gamma), in currency units",
    "clv": "expected discounted value of the customer's purchases over the CLV horizon",
    "churn_risk": "'low', 'medium' or 'high' from p_alive and the scheme's churn thresholds",
    "days_to_next_purchase": "expected days until the next purchase if the customer is active",
}
PREDICTION_KINDS = {"churn_risk": "text"}
RESERVED = {*BASE_COLUMNS, *PREDICTION_COLUMNS, "expected_next_purchase",
            "customer_id", "segment", "tags", "rfm_composite",
            "frequency_decayed", "monetary_decayed", "monetary_minor",
            # names the query uses internally
            "last_day", "first_day", "n_all", "n_cohort", "day", "event_type", "amount_minor",
            "order_id", "result"}  # fmt: skip
RESERVED_PATTERN = r".*_(rank|crank|best|best_c)"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecencySpec(_Model):
    events: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | Literal["any"] = [
        "purchase"
    ]


class FrequencySpec(_Model):
    events: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | Literal["any"] = [
        "purchase"
    ]
    window_days: Annotated[int, Field(gt=0)] | None = None
    count: Literal["auto", "events", "orders", "days"] = "auto"
    half_life_days: Annotated[float, Field(gt=0)] | None = None


class MonetarySpec(_Model):
    events: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | Literal["any"] = [
        "purchase",
        "refund",
    ]
    measure: str = "amount"
    window_days: Annotated[int, Field(gt=0)] | None = None
    half_life_days: Annotated[float, Field(gt=0)] | None = None

    @field_validator("measure")
    @classmethod
    def _measure(cls, value: str) -> str:
        if value in ("amount", "count") or re.fullmatch(r"field:[A-Za-z_][A-Za-z0-9_]*", value):
            return value
        raise ValueError("must be 'amount', 'count' or 'field:<column name>'")

    @property
    def field_name(self) -> str | None:
        return self.measure.split(":", 1)[1] if self.measure.startswith("field:") else None


class Metrics(_Model):
    recency: RecencySpec = RecencySpec()
    frequency: FrequencySpec = FrequencySpec()
    monetary: MonetarySpec = MonetarySpec()


class ScoreSpec(_Model):
    """Either ``quantiles: N`` (equal-share bins over customers, ties kept together) or
    ``edges: [e1, e2, ...]`` (fixed upper-inclusive bounds, ascending)."""

    quantiles: Annotated[int, Field(ge=2, le=20)] | None = None
    edges: list[Decimal] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ScoreSpec:
        if (self.quantiles is None) == (self.edges is None):
            raise ValueError("give exactly one of 'quantiles' (a bin count) or 'edges' (fixed bounds)")
        if self.edges is not None:
            if not 1 <= len(self.edges) <= 19:
                raise ValueError("'edges' needs 1 to 19 ascending bounds")
            if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
                raise ValueError(f"'edges' must be strictly ascending, got {[str(e) for e in self.edges]}")
        return self

    @property
    def bins(self) -> int:
        return self.quantiles if self.quantiles is not None else len(self.edges or []) + 1


class Scores(_Model):
    recency: ScoreSpec = ScoreSpec(quantiles=5)
    frequency: ScoreSpec = ScoreSpec(quantiles=5)
    monetary: ScoreSpec | None = ScoreSpec(quantiles=5)


class ScoreOverrides(_Model):
    recency: ScoreSpec | None = None
    frequency: ScoreSpec | None = None
    monetary: ScoreSpec | None = None


class Lifecycle(_Model):
    new_within_days: Annotated[int, Field(gt=0)]
    scores: ScoreOverrides = ScoreOverrides()


class Composite(_Model):
    recency: float = 1.0
    frequency: float = 1.0
    monetary: float = 1.0


class SegmentSpec(_Model):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    when: StrictStr | StrictBool
    description: str = ""
    action: str = ""
    top: bool = False


class TagSpec(_Model):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    when: StrictStr | StrictBool
    group: str = "RFM"
    description: str = ""


class ChurnRisk(_Model):
    """``p_alive`` below ``high_below`` is high risk; below ``medium_below`` medium; else low."""

    high_below: Annotated[float, Field(gt=0, lt=1)] = 0.3
    medium_below: Annotated[float, Field(gt=0, lt=1)] = 0.7

    @model_validator(mode="after")
    def _ordered(self) -> ChurnRisk:
        if self.high_below >= self.medium_below:
            raise ValueError(
                f"high_below ({self.high_below}) must be below medium_below ({self.medium_below})"
            )
        return self


class Predictions(_Model):
    """How predictions are made when a scheme's rules read them or when asked for."""

    model: Literal["bgnbd", "pareto-nbd", "mbgnbd"] = "mbgnbd"
    """MBG/NBD by default: unlike BG/NBD it lets customers who never repeated drop out, so
    one-time buyers get a real churn probability instead of ``p_alive = 1``."""
    time_unit: Literal["days", "weeks"] = "weeks"
    horizon_days: Annotated[int, Field(gt=0, le=3650)] = 90
    clv_horizon_days: Annotated[int, Field(gt=0, le=3650)] = 365
    discount_rate: Annotated[float, Field(ge=0, lt=1)] = 0.1
    """Annual discount rate of the CLV (0.1 = 10% a year)."""
    penalizer: Annotated[float, Field(ge=0)] = 0.0
    churn_risk: ChurnRisk = ChurnRisk()


class Health(_Model):
    top_segment_max_share: Annotated[float, Field(gt=0, le=1)] = 0.2
    min_history_days: Annotated[int, Field(ge=0)] = 30


class SchemeModel(_Model):
    name: Annotated[str, Field(min_length=1)]
    version: Annotated[int, Field(ge=1)] = 1
    description: str = ""
    metrics: Metrics = Metrics()
    scores: Scores = Scores()
    composite: Composite | None = None
    lifecycle: Lifecycle | None = None
    columns: dict[str, str] = {}
    segments: Annotated[list[SegmentSpec], Field(min_length=1)]
    tags: list[TagSpec] = []
    health: Health = Health()
    predictions: Predictions = Predictions()


@dataclass(frozen=True)
class Rule:
    """A named, parsed rule (a segment or a tag)."""

    name: str
    when: Expr
    description: str = ""
    action: str = ""
    top: bool = False
    group: str = ""


@dataclass(frozen=True)
class Scheme:
    """A validated scheme, ready to run. Fields mirror the YAML format."""

    name: str
    version: int
    description: str
    metrics: Metrics
    scores: Scores
    composite: Composite | None
    lifecycle: Lifecycle | None
    columns: dict[str, Expr]
    segments: tuple[Rule, ...]
    tags: tuple[Rule, ...]
    health: Health
    predictions: Predictions = field(default_factory=Predictions)
    source: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def has_monetary_score(self) -> bool:
        return self.scores.monetary is not None

    def score_spec(self, key: ScoreKey, *, new: bool = False) -> ScoreSpec | None:
        """The score spec of ``key``; with ``new``, the lifecycle override if there is one."""
        base: ScoreSpec | None = getattr(self.scores, key)
        if new and self.lifecycle is not None:
            override: ScoreSpec | None = getattr(self.lifecycle.scores, key)
            if override is not None:
                return override
        return base

    def bins(self, key: ScoreKey) -> int | None:
        spec = self.score_spec(key)
        return None if spec is None else spec.bins

    @property
    def decayed(self) -> dict[str, float]:
        """Metrics scored on their time-decayed value: name -> half-life in days."""
        out: dict[str, float] = {}
        if self.metrics.frequency.half_life_days:
            out["frequency"] = self.metrics.frequency.half_life_days
        if self.metrics.monetary.half_life_days:
            out["monetary"] = self.metrics.monetary.half_life_days
        return out

    @property
    def extra_columns(self) -> list[str]:
        """Output columns beyond the standard ones, in output order."""
        cols = [f"{m}_decayed" for m in self.decayed]
        if self.lifecycle is not None:
            cols.append("lifecycle")
        if self.composite is not None:
            cols.append("rfm_composite")
        cols.extend(self.columns)
        if self.tags:
            cols.append("tags")
        return cols

    @property
    def top_segments(self) -> list[str]:
        return [s.name for s in self.segments if s.top]

    @property
    def uses_predictions(self) -> bool:
        """Whether a rule or column reads a model prediction (so scoring must fit the models)."""
        rules = [*self.columns.values(), *(s.when for s in self.segments), *(t.when for t in self.tags)]
        return any(rule.names & PREDICTION_COLUMNS.keys() for rule in rules)

    @property
    def fields_used(self) -> list[str]:
        """Event fields beyond the standard ones that the scheme reads (``measure: field:x``)."""
        name = self.metrics.monetary.field_name
        return [name] if name else []


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif (
            part in ("function-after[_one_kind()]",)
            or str(part).startswith("function-")
            or part in ("list[str]", "literal['any']", "ScoreSpec", "str", "bool", "int", "float")
        ):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


_FIELDS: dict[str, type[BaseModel]] = {
    "": SchemeModel, "metrics": Metrics, "metrics.recency": RecencySpec,
    "metrics.frequency": FrequencySpec, "metrics.monetary": MonetarySpec, "scores": Scores,
    "lifecycle": Lifecycle, "lifecycle.scores": ScoreOverrides, "composite": Composite,
    "health": Health, "segments": SegmentSpec, "tags": TagSpec,
}  # fmt: skip


def _did_you_mean(loc: tuple[int | str, ...]) -> str:
    parent = ".".join(str(p) for p in loc[:-1] if not isinstance(p, int))
    if parent.startswith("scores.") or parent.startswith("lifecycle.scores."):
        model: type[BaseModel] | None = ScoreSpec
    else:
        model = _FIELDS.get(parent)
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(model.model_fields)})"


def _format_errors(name: str, err: ValidationError) -> str:
    lines = []
    seen = set()
    for e in err.errors():
        loc = tuple(e["loc"])
        where = _loc(loc)
        if e["type"] == "extra_forbidden":
            msg = f"{where}: unknown field{_did_you_mean(loc)}"
        elif e["type"] == "missing":
            msg = f"{where}: required field is missing"
        else:
            text = str(e["msg"]).removeprefix("Value error, ")
            msg = f"{where}: {text}"
        if msg not in seen:
            seen.add(msg)
            lines.append(msg)
    return f"scheme {name!r}: " + "; ".join(lines)


def scheme_from_dict(data: Any, *, source: str = "") -> Scheme:
    """Validate a scheme given as a dict (as read from YAML)."""
    if not isinstance(data, dict):
        raise SchemeError(
            f"{source or 'scheme'}: expected a mapping with 'name' and 'segments', got {type(data).__name__}"
        )
    name = str(data.get("name") or source or "?")
    try:
        model = SchemeModel.model_validate(data)
    except ValidationError as err:
        raise SchemeError(_format_errors(name, err)) from None
    return _compile(model, data)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a plain value", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def scheme_from_yaml(text: str, *, source: str = "") -> Scheme:
    """Parse and validate a scheme from YAML text. ``source`` names it in errors."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise SchemeError(f"{source or 'scheme'}:{where}: invalid YAML: {problem}") from None
    if data is None:
        raise SchemeError(f"{source or 'scheme'}: the file is empty")
    return scheme_from_dict(data, source=source)


def _compile(model: SchemeModel, raw: dict[str, Any]) -> Scheme:
    prefix = f"scheme {model.name!r}: "
    bins = {k: (getattr(model.scores, k).bins if getattr(model.scores, k) else None) for k in SCORE_KEYS}
    if model.lifecycle is not None:
        for key in SCORE_KEYS:
            override = getattr(model.lifecycle.scores, key)
            if override is not None and override.bins != bins[key]:
                raise SchemeError(
                    f"{prefix}lifecycle.scores.{key}: has {override.bins} bins but scores.{key} has "
                    f"{bins[key]}; new and established customers must share the score scale"
                )
    names = set(BASE_COLUMNS) | set(PREDICTION_COLUMNS)
    if model.lifecycle is None:
        names.discard("lifecycle")
    kinds = {"rfm": "text", "lifecycle": "text", "segment": "text", **PREDICTION_KINDS}
    if model.metrics.frequency.half_life_days:
        names.add("frequency_decayed")
    if model.metrics.monetary.half_life_days:
        names.add("monetary_decayed")
    if model.composite is not None:
        names.add("rfm_composite")
    columns: dict[str, Expr] = {}
    for col, text in model.columns.items():
        if (
            not re.fullmatch(r"[a-z_][a-z0-9_]*", col)
            or col in RESERVED
            or re.fullmatch(RESERVED_PATTERN, col)
        ):
            raise SchemeError(
                f"{prefix}columns.{col}: a column name must be lower_snake_case and not one of the "
                f"standard or internal columns ({', '.join(sorted(RESERVED))}, *_rank, *_crank)"
            )
        columns[col] = parse_expression(
            text, allowed=sorted(names), where=f"{prefix}columns.{col}", kinds=kinds, condition=False
        )
        names.add(col)
        kinds[col] = columns[col].kind
    segments: list[Rule] = []
    for i, seg in enumerate(model.segments):
        if seg.name in {s.name for s in segments}:
            raise SchemeError(f"{prefix}segments[{i}].name: segment {seg.name!r} is defined twice")
        expr = parse_expression(
            seg.when, allowed=sorted(names), where=f"{prefix}segments[{i}] ({seg.name}).when", kinds=kinds
        )
        segments.append(Rule(seg.name, expr, seg.description, seg.action, seg.top))
    tags: list[Rule] = []
    for i, tag in enumerate(model.tags):
        if tag.name in {t.name for t in tags}:
            raise SchemeError(f"{prefix}tags[{i}].name: tag {tag.name!r} is defined twice")
        if ";" in tag.name:
            raise SchemeError(f"{prefix}tags[{i}].name: a tag name cannot contain ';'")
        expr = parse_expression(
            tag.when,
            allowed=sorted(names | {"segment"}),
            where=f"{prefix}tags[{i}] ({tag.name}).when",
            kinds=kinds,
        )
        tags.append(Rule(tag.name, expr, tag.description, group=tag.group))
    return Scheme(
        name=model.name,
        version=model.version,
        description=model.description,
        metrics=model.metrics,
        scores=model.scores,
        composite=model.composite,
        lifecycle=model.lifecycle,
        columns=columns,
        segments=tuple(segments),
        tags=tuple(tags),
        health=model.health,
        predictions=model.predictions,
        source=raw,
    )
