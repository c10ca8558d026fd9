"""Demo data for the service: a shop with a Telegram bot, over the two years before today.

:func:`demo_events` generates, relative to ``today`` (default: today in the business time
zone), about 2,000 customers and their events, seeded so that the same ``today`` always
gives the same events:

- purchases (with order ids; some refunded in full or in part a few days later) from
  customers of every kind: a few VIPs who buy every two or three weeks and spend a lot,
  loyal regulars, occasional buyers, frequent buyers who stopped months ago, one-time
  buyers old and recent, and customers who arrived in the last weeks;
- Telegram-bot interactions: ``/start`` and other commands, messages to the shop, clicks
  on broadcast buttons; some bot users never bought anything;
- a profile per customer (:func:`demo_profiles`): name, email at ``example.com``, time zone
  and language from eight countries, and a Telegram chat id for bot users.

Every segment of the default scheme (``rfm11``) is populated when the events are scored as
of ``today`` (a test checks it, and that the Telegram scheme's five segments are too).
:func:`load_demo` stores them through the service's ingest path (``source = "demo"``);
``rfmflow serve --demo`` and ``rfmflow import --demo`` call it on an empty database.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from rfmflow.service.events import EventIn
from rfmflow.service.ingest import ingest
from rfmflow.service.profiles import read_traits, upsert_profile
from rfmflow.service.settings import Settings

DEMO_SEED = 20240501
DEMO_CUSTOMERS = 2000
HISTORY_DAYS = 730
SOURCE = "demo"
BATCH = 5000


@dataclass(frozen=True)
class Persona:
    """A kind of customer: how many, when they came and left, how often and how much they buy."""

    name: str
    share: float
    first_ago: tuple[int, int]  # days before today of the first event
    last_ago: tuple[int, int]  # days before today of the last purchase (the end of buying)
    purchases: tuple[int, int] | None  # a fixed range of purchases, or None: from the interval
    interval: tuple[int, int] = (30, 60)  # days between purchases (when ``purchases`` is None)
    basket: float = 45.0  # typical order value
    bot: float = 0.6  # chance of using the Telegram bot
    chatty: float = 1.0  # bot activity, relative


PERSONAS = (
    Persona("vip", 0.03, (420, 729), (1, 9), None, (10, 20), basket=240.0, bot=0.9, chatty=2.0),
    Persona("loyal", 0.11, (300, 729), (1, 45), None, (21, 45), basket=70.0, bot=0.75, chatty=1.5),
    Persona("faded-regular", 0.07, (480, 729), (110, 400), None, (12, 35), basket=80.0, bot=0.6),
    Persona("occasional", 0.15, (120, 729), (15, 300), (3, 6), basket=55.0, bot=0.55),
    Persona("rising", 0.08, (35, 140), (1, 20), (2, 3), basket=50.0, bot=0.7, chatty=1.3),
    Persona("newcomer", 0.06, (1, 21), (1, 21), (1, 1), basket=40.0, bot=0.8, chatty=1.2),
    Persona("recent-once", 0.06, (22, 75), (22, 75), (1, 1), basket=40.0, bot=0.5),
    Persona("once-mid", 0.05, (76, 300), (76, 300), (1, 1), basket=38.0, bot=0.4),
    Persona("once-old", 0.07, (301, 729), (301, 729), (1, 1), basket=35.0, bot=0.35, chatty=0.6),
    Persona("twice", 0.10, (90, 729), (60, 500), (2, 2), basket=45.0, bot=0.45),
    Persona("bot-only", 0.07, (1, 729), (1, 729), (0, 0), bot=1.0, chatty=1.2),
    Persona("bot-fan", 0.08, (150, 729), (1, 60), (1, 3), basket=30.0, bot=1.0, chatty=4.0),
)
COMMANDS = ("/catalog", "/orders", "/help", "/promo", "/profile")
BUTTONS = ("Catalog", "Today's offer", "Track my order", "Leave a review", "Contact support")
CHANNELS = ("web", "web", "app", "telegram")


@dataclass(frozen=True)
class DemoLoad:
    """What :func:`load_demo` stored."""

    today: date
    customers: int
    events: int
    accepted: int
    duplicates: int
    by_type: dict[str, int]
    first_date: date
    last_date: date
    profiles: int = 0

    def describe(self) -> str:
        kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(self.by_type.items(), key=lambda kv: -kv[1]))
        return (
            f"loaded demo data: {self.accepted:,} events of {self.customers:,} customers "
            f"({kinds}) from {self.first_date} to {self.last_date}, relative to {self.today}; "
            f"{self.profiles:,} profiles"
        )


class _Maker:
    def __init__(self, today: date, zone: ZoneInfo, scale: int, rng: random.Random) -> None:
        self.today = today
        self.zone = zone
        self.quantum = Decimal(1).scaleb(-scale)
        self.rng = rng

    def moment(self, days_ago: int, *, evening: bool = False) -> datetime:
        """A local time of day on the day ``days_ago`` before today, as UTC."""
        r = self.rng
        hour = r.choice((18, 19, 20, 21, 22)) if evening else r.choices(range(8, 23), k=1)[0]
        local = datetime.combine(
            self.today - timedelta(days=days_ago), time(hour, r.randrange(60), r.randrange(60))
        )
        return local.replace(tzinfo=self.zone).astimezone(UTC)

    def amount(self, basket: float) -> Decimal:
        value = max(3.0, self.rng.lognormvariate(math.log(basket), 0.45))
        return Decimal(str(round(value, 2))).quantize(self.quantum)


def _purchase_days(p: Persona, first: int, last: int, r: random.Random) -> list[int]:
    """Days-ago of the purchases, from ``first`` (oldest) to ``last`` (most recent)."""
    if p.purchases is not None:
        n = r.randint(*p.purchases)
        if n == 0:
            return []
        if n == 1:
            return [last]
        middle = sorted((r.randint(last, first) for _ in range(n - 2)), reverse=True)
        return [first, *middle, last]
    days = [first]
    gap_mean = r.uniform(*p.interval)
    day = first
    while True:
        day -= max(1, round(r.expovariate(1 / gap_mean)))
        if day <= last:
            break
        days.append(day)
    days.append(last)
    return days


def _customer(index: int, p: Persona, m: _Maker) -> Iterator[dict[str, Any]]:
    r = m.rng
    cid = f"c{index:05d}"
    seq = 0

    def event(kind: str, days_ago: int, **fields: Any) -> dict[str, Any]:
        nonlocal seq
        seq += 1
        return {
            "event_id": f"demo-{cid}-{seq:04d}",
            "customer_id": cid,
            "type": kind,
            "occurred_at": m.moment(days_ago, evening=kind in ("message", "click")),
            **fields,
        }

    last = r.randint(*p.last_ago)
    first = max(last, r.randint(*p.first_ago))
    purchases = _purchase_days(p, first, last, r)
    uses_bot = r.random() < p.bot
    yield event("signup", first, properties={"via": "telegram" if uses_bot else r.choice(("web", "app"))})
    for n, day in enumerate(purchases, start=1):
        amount = m.amount(p.basket)
        order = f"{cid}-o{n:03d}"
        channel = "telegram" if uses_bot and r.random() < 0.3 else r.choice(CHANNELS[:3])
        yield event(
            "purchase",
            day,
            amount=amount,
            order_id=order,
            properties={"channel": channel, "items": r.randint(1, 4)},
        )
        if r.random() < 0.05 and day > 3:
            share = Decimal(1) if r.random() < 0.6 else Decimal("0.5")
            refund = (amount * share).quantize(m.quantum)
            yield event("refund", day - r.randint(1, 3), amount=refund, order_id=order)
    if not uses_bot:
        return
    # The bot: active from the first event until a while after the last purchase.
    active_until = max(1, last - r.randint(0, 20)) if p.name != "bot-only" else r.randint(1, first)
    yield event("command", first, properties={"command": "/start"})
    span = max(1, first - active_until)
    rate = p.chatty * r.uniform(0.02, 0.08)  # interactions a day
    count = min(400, max(1, round(span * rate)))
    for _ in range(count):
        day = r.randint(active_until, first)
        kind = r.choices(("message", "command", "click"), weights=(5, 2, 3))[0]
        if kind == "command":
            yield event("command", day, properties={"command": r.choice(COMMANDS)})
        elif kind == "click":
            yield event("click", day, properties={"button": r.choice(BUTTONS)})
        else:
            yield event("message", day, properties={"chars": r.randint(2, 280)})


def demo_rows(
    today: date | None = None,
    *,
    timezone: str = "UTC",
    customers: int = DEMO_CUSTOMERS,
    seed: int = DEMO_SEED,
    money_decimals: int = 2,
) -> list[dict[str, Any]]:
    """The demo events as dicts in the shape of :class:`EventIn` (``occurred_at`` in UTC),
    ordered by customer then by generation; deterministic for a given ``today`` and seed.
    Every event lies in the :data:`HISTORY_DAYS` days before ``today`` (none on ``today``)."""
    zone = ZoneInfo(timezone)
    day = today or datetime.now(zone).date()
    rng = random.Random(f"{seed}:{customers}")
    maker = _Maker(day, zone, money_decimals, rng)
    weights = [p.share for p in PERSONAS]
    rows: list[dict[str, Any]] = []
    for index in range(1, customers + 1):
        persona = rng.choices(PERSONAS, weights=weights)[0]
        rows.extend(_customer(index, persona, maker))
    return rows


def demo_events(
    today: date | None = None,
    *,
    timezone: str = "UTC",
    customers: int = DEMO_CUSTOMERS,
    seed: int = DEMO_SEED,
    money_decimals: int = 2,
) -> list[EventIn]:
    """:func:`demo_rows` as validated :class:`EventIn` objects."""
    rows = demo_rows(today, timezone=timezone, customers=customers, seed=seed, money_decimals=money_decimals)
    return [EventIn.model_validate(row) for row in rows]


def demo_table(
    today: date | None = None,
    *,
    timezone: str = "UTC",
    customers: int = DEMO_CUSTOMERS,
    seed: int = DEMO_SEED,
    money_decimals: int = 2,
) -> pa.Table:
    """:func:`demo_rows` as an Arrow table that ``rfmflow.score`` reads: ``event_id``,
    ``customer_id``, ``occurred_at`` (timestamp, UTC), ``event_type``, ``amount`` (decimal;
    refunds positive, as sent), ``order_id``."""
    rows = demo_rows(today, timezone=timezone, customers=customers, seed=seed, money_decimals=money_decimals)
    return pa.table(
        {
            "event_id": pa.array([r["event_id"] for r in rows], pa.string()),
            "customer_id": pa.array([r["customer_id"] for r in rows], pa.string()),
            "occurred_at": pa.array([r["occurred_at"] for r in rows], pa.timestamp("us", tz="UTC")),
            "event_type": pa.array([r["type"] for r in rows], pa.string()),
            "amount": pa.array([r.get("amount") for r in rows], pa.decimal128(18, money_decimals)),
            "order_id": pa.array([r.get("order_id") for r in rows], pa.string()),
        }
    )


FIRST_NAMES = (
    "Ada", "Ben", "Chloe", "Dmitri", "Elif", "Farah", "Giulia", "Hiro", "Ines", "Jonas",
    "Kasia", "Liam", "Maya", "Nikolai", "Olga", "Pedro", "Quinn", "Rosa", "Sven", "Tariq",
)  # fmt: skip
LAST_NAMES = (
    "Abe", "Berg", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ivanova", "Jensen",
    "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Petrov", "Rossi", "Silva", "Tanaka", "Weber",
)  # fmt: skip
ZONES = (
    ("Europe/Berlin", "de"), ("Europe/London", "en-GB"), ("America/New_York", "en-US"),
    ("Europe/Madrid", "es"), ("Asia/Tokyo", "ja"), ("Europe/Warsaw", "pl"), ("Asia/Dubai", "ar"),
    ("America/Sao_Paulo", "pt-BR"),
)  # fmt: skip
TELEGRAM_CHAT_BASE = 7_100_000_000
"""Demo Telegram chat ids are this plus the customer's number (private chats are positive)."""


def demo_profiles(rows: list[dict[str, Any]], *, seed: int = DEMO_SEED) -> list[dict[str, Any]]:
    """A profile's traits for each demo customer: name, email, time zone, language, and the
    Telegram chat id of those who use the bot (who sent a command); deterministic."""
    bot_users = {r["customer_id"] for r in rows if r["type"] == "command"}
    out = []
    for cid in sorted({r["customer_id"] for r in rows}):
        r = random.Random(f"{seed}:profile:{cid}")
        first, last = r.choice(FIRST_NAMES), r.choice(LAST_NAMES)
        zone, language = r.choice(ZONES)
        traits: dict[str, Any] = {
            "firstName": first,
            "lastName": last,
            "email": f"{first}.{last}.{cid}@example.com".lower(),
            "timezone": zone,
            "language": language,
        }
        if cid in bot_users:
            traits["telegram_chat_id"] = TELEGRAM_CHAT_BASE + int(cid.removeprefix("c"))
        out.append({"customer_id": cid, "traits": traits})
    return out


def has_events(engine: Engine) -> bool:
    """Whether the service's database holds any event."""
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT 1 FROM events LIMIT 1")).first() is not None


def load_demo(
    engine: Engine,
    settings: Settings,
    *,
    today: date | None = None,
    customers: int = DEMO_CUSTOMERS,
    progress: Callable[[int, int], None] | None = None,
) -> DemoLoad:
    """Generate the demo events relative to ``today`` (default: today in the business time
    zone) and store them through :func:`rfmflow.service.ingest.ingest`, in transactions of
    :data:`BATCH` events. Loading twice stores nothing twice (the ids are fixed)."""
    day = today or datetime.now(settings.zone).date()
    events = demo_events(
        day, timezone=settings.timezone, customers=customers, money_decimals=settings.money_decimals
    )
    accepted = duplicates = 0
    by_type: dict[str, int] = {}
    stamp = datetime.now(UTC)
    with engine.begin() as conn:
        profiles = demo_profiles([{"customer_id": e.customer_id, "type": e.type} for e in events])
        for profile in profiles:
            upsert_profile(
                conn, profile["customer_id"], read_traits(profile["traits"]), at=stamp, source=SOURCE
            )
    for start in range(0, len(events), BATCH):
        chunk = events[start : start + BATCH]
        for result in ingest(engine, chunk, settings, source=SOURCE):
            if result.status == "accepted":
                accepted += 1
            elif result.status == "duplicate":
                duplicates += 1
            else:  # pragma: no cover - the generator makes valid events only
                raise RuntimeError(f"demo event {result.event_id} was {result.status}: {result.errors}")
        for e in chunk:
            by_type[e.type] = by_type.get(e.type, 0) + 1
        if progress is not None:
            progress(min(start + BATCH, len(events)), len(events))
    zone = settings.zone
    return DemoLoad(
        today=day,
        customers=len({e.customer_id for e in events}),
        events=len(events),
        accepted=accepted,
        duplicates=duplicates,
        by_type=by_type,
        first_date=min(e.occurred_at for e in events).astimezone(zone).date(),
        last_date=max(e.occurred_at for e in events).astimezone(zone).date(),
        profiles=len(profiles),
    )
