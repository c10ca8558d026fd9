"""The service's settings, read from ``RFMFLOW_*`` environment variables and a ``.env`` file.

Precedence: the process environment wins over ``.env`` (in the working directory, or the
file given), which wins over the defaults below. Every setting is validated when it is read,
and a bad value is a :class:`SettingsError` naming the variable and the reason.

==========================  ===========================================  ====================================
variable                    default                                      meaning
==========================  ===========================================  ====================================
``RFMFLOW_DATA_DIR``        ``./rfmflow-data``                           where the SQLite file lives
``RFMFLOW_DATABASE_URL``    ``sqlite:///<data dir>/rfmflow.db``          ``sqlite:///PATH`` or
                                                                         ``postgresql://...`` (psycopg 3)
``RFMFLOW_TIMEZONE``        ``UTC``                                      business time zone for days
``RFMFLOW_CURRENCY``        ``USD``                                      the one currency accepted
``RFMFLOW_MONEY_DECIMALS``  ``2``                                        minor units per currency unit
``RFMFLOW_HOST``            ``127.0.0.1``                                address ``serve`` listens on
``RFMFLOW_PORT``            ``8000``                                     port ``serve`` listens on
``RFMFLOW_LOG_LEVEL``       ``INFO``                                     DEBUG, INFO, WARNING or ERROR
``RFMFLOW_BROADCAST_        ``1000``                                     a broadcast to more customers must
CONFIRM_ABOVE``                                                          repeat its audience count to start
``RFMFLOW_BROADCAST_        ``0.02``                                     how far (a fraction) the audience may
CONFIRM_TOLERANCE``                                                      move from the confirmed count
``RFMFLOW_SECRET_KEY``      generated, kept in ``<data dir>/secret_key``  signs dashboard sessions and the
                                                                         links in messages (32+ characters;
                                                                         never shown)
``RFMFLOW_PREDICTIONS``     ``on``                                       fit churn/CLV models after each
                                                                         scheduled scoring run (or ``off``)
``RFMFLOW_PUBLIC_URL``      ``http://<host>:<port>``                     where customers reach this server
                                                                         (unsubscribe and tracked links)
==========================  ===========================================  ====================================

Sources (Segment-compatible endpoints and webhooks; secrets are never shown in messages or
``repr``):

=======================================  =========  ==================================================
variable                                 default    meaning
=======================================  =========  ==================================================
``RFMFLOW_SEGMENT_WRITE_KEYS``           (none)     extra write keys ``/v1/track`` & co. accept, comma
                                                    separated (16+ characters each); ingest-role API
                                                    keys are always accepted as write keys
``RFMFLOW_STRIPE_WEBHOOK_SECRET``        (none)     the endpoint's signing secret(s) ``whsec_...``,
                                                    comma separated while rolling; unset = the
                                                    Stripe webhook answers 404
``RFMFLOW_SHOPIFY_WEBHOOK_SECRET``       (none)     the app's client secret (or the store's webhook
                                                    secret), comma separated while rotating; unset =
                                                    404
``RFMFLOW_WOOCOMMERCE_WEBHOOK_SECRET``   (none)     the webhook's secret, taken verbatim (WooCommerce
                                                    secrets may contain commas); unset = 404
=======================================  =========  ==================================================

The business's Telegram bot (:mod:`rfmflow.automation.telegram_bot`; ``docs/telegram.md``):
``RFMFLOW_TELEGRAM_BOT_TOKEN``, ``RFMFLOW_TELEGRAM_MODE`` (``off``, ``webhook`` or ``polling``;
default ``off``), ``RFMFLOW_TELEGRAM_API_URL`` (default ``https://api.telegram.org/bot``),
``RFMFLOW_TELEGRAM_WEBHOOK_SECRET``, ``RFMFLOW_TELEGRAM_WEBHOOK_URL`` and
``RFMFLOW_TELEGRAM_MENUS`` (JSON, or the path of a JSON or YAML file).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rfmflow.core.errors import RfmflowError

PREFIX = "RFMFLOW_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class SettingsError(RfmflowError):
    """A setting has an invalid value; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Validated service settings (build them with :func:`load_settings` or directly in tests)."""

    data_dir: Path = field(default_factory=lambda: Path("rfmflow-data").resolve())
    database_url: str = ""
    """SQLAlchemy URL (``sqlite:///...`` or ``postgresql+psycopg://...``); empty = the SQLite
    file ``rfmflow.db`` in :attr:`data_dir`."""
    timezone: str = "UTC"
    currency: str = "USD"
    money_decimals: int = 2
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    broadcast_confirm_above: int = 1000
    """A broadcast to more customers than this needs its audience count repeated to start."""
    broadcast_confirm_tolerance: float = 0.02
    """How far (a fraction of the confirmed count) the audience may have moved at start."""
    segment_write_keys: tuple[str, ...] = field(default=(), repr=False)
    """Write keys accepted besides ingest-role API keys (``RFMFLOW_SEGMENT_WRITE_KEYS``)."""
    stripe_webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    """Stripe signing secrets; empty = the Stripe webhook is not configured."""
    shopify_webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    """Shopify signing secrets; empty = the Shopify webhook is not configured."""
    woocommerce_webhook_secret: str = field(default="", repr=False)
    """The WooCommerce webhook's secret; empty = the WooCommerce webhook is not configured."""
    secret_key: str = field(default="", repr=False)
    """Signs the dashboard's session cookies; empty = generated once and kept in the data
    directory (:mod:`rfmflow.dashboard.session`)."""
    telegram_bot_token: str = field(default="", repr=False)
    """The business's bot token (BotFather); empty = no bot."""
    telegram_mode: str = "off"
    """``off``, ``webhook`` (``POST /v1/telegram/webhook``) or ``polling`` (``getUpdates``)."""
    telegram_api_url: str = "https://api.telegram.org/bot"
    """The Bot API root the token is appended to (a local Bot API server, the tests' fake)."""
    telegram_webhook_secret: str = field(default="", repr=False)
    """``X-Telegram-Bot-Api-Secret-Token`` the webhook requires (needed in webhook mode)."""
    telegram_webhook_url: str = ""
    """When set (webhook mode), the bot calls ``setWebhook`` with it on start."""
    telegram_menus: str = ""
    predictions: bool = True
    """Fit the churn and CLV models after each scheduled scoring run (``RFMFLOW_PREDICTIONS``)."""
    """The bot's welcome, onboarding choices and menus: JSON, or a JSON/YAML file's path."""
    public_url: str = ""
    """Where customers reach this server (the unsubscribe and tracked links in messages);
    empty = ``http://<host>:<port>``."""

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", default_database_url(self.data_dir))
        object.__setattr__(self, "database_url", normalize_database_url(self.database_url))
        _check_timezone(self.timezone)
        _check_currency(self.currency)
        if not 0 <= self.money_decimals <= 6:
            raise SettingsError(f"{PREFIX}MONEY_DECIMALS: {self.money_decimals} is not between 0 and 6")
        if not 0 < self.port < 65536:
            raise SettingsError(f"{PREFIX}PORT: {self.port} is not a port number (1..65535)")
        if self.log_level.upper() not in LOG_LEVELS:
            raise SettingsError(
                f"{PREFIX}LOG_LEVEL: {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}"
            )
        object.__setattr__(self, "log_level", self.log_level.upper())
        if self.broadcast_confirm_above < 0:
            raise SettingsError(
                f"{PREFIX}BROADCAST_CONFIRM_ABOVE: {self.broadcast_confirm_above} is negative"
            )
        if not 0 <= self.broadcast_confirm_tolerance < 1:
            raise SettingsError(
                f"{PREFIX}BROADCAST_CONFIRM_TOLERANCE: {self.broadcast_confirm_tolerance} "
                "is not a fraction in [0, 1)"
            )
        _check_source_secrets(self)
        _check_telegram(self)
        _check_public_url(self)
        if self.secret_key and len(self.secret_key) < MIN_SECRET_KEY_LENGTH:
            raise SettingsError(
                f"{PREFIX}SECRET_KEY: use at least {MIN_SECRET_KEY_LENGTH} random characters "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def with_changes(self, **changes: object) -> Settings:
        """A copy with some fields replaced (validated again)."""
        return replace(self, **changes)  # type: ignore[arg-type]


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{Path(data_dir).resolve() / 'rfmflow.db'}"


def normalize_database_url(url: str) -> str:
    """Map ``postgresql://`` and ``postgres://`` to the psycopg 3 driver; accept SQLite files."""
    url = url.strip()
    for plain in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    if url.startswith(("postgresql+psycopg://", "sqlite:///", "sqlite+pysqlite:///")):
        return url
    if url in ("sqlite://", "sqlite:///:memory:"):
        raise SettingsError(
            f"{PREFIX}DATABASE_URL: an in-memory SQLite database would be lost; give a file (sqlite:///PATH)"
        )
    shown = re.sub(r"//[^@/]*@", "//***@", url)  # never echo a password
    raise SettingsError(
        f"{PREFIX}DATABASE_URL: {shown!r} is not supported; use sqlite:///PATH or postgresql://USER@HOST/DB"
    )


def _check_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise SettingsError(
            f"{PREFIX}TIMEZONE: unknown time zone {name!r} (use an IANA name such as Europe/Berlin)"
        ) from err


MIN_WRITE_KEY_LENGTH = 16
MIN_SECRET_KEY_LENGTH = 32


def _check_source_secrets(settings: Settings) -> None:
    """Write keys and webhook secrets: present, unpadded, plausible. Values are never echoed."""
    for name in ("segment_write_keys", "stripe_webhook_secrets", "shopify_webhook_secrets"):
        value = getattr(settings, name)
        object.__setattr__(settings, name, _secret_list(value) if isinstance(value, str) else tuple(value))
    for key in settings.segment_write_keys:
        if len(key) < MIN_WRITE_KEY_LENGTH or any(ch.isspace() or ord(ch) < 32 or ch == "," for ch in key):
            raise SettingsError(
                f"{PREFIX}SEGMENT_WRITE_KEYS: each write key needs at least {MIN_WRITE_KEY_LENGTH} "
                "characters and no spaces or commas (Segment's are 32)"
            )
    for secret in settings.stripe_webhook_secrets:
        if not secret.startswith("whsec_") or len(secret) <= len("whsec_") or secret != secret.strip():
            raise SettingsError(
                f"{PREFIX}STRIPE_WEBHOOK_SECRET: expected the webhook endpoint's signing secret, which "
                "starts with whsec_ (Dashboard > Developers > Webhooks > the endpoint > Signing "
                "secret), not an API key"
            )
    for secret in settings.shopify_webhook_secrets:
        if not secret or secret != secret.strip():
            raise SettingsError(f"{PREFIX}SHOPIFY_WEBHOOK_SECRET: a secret is empty or padded with spaces")


TELEGRAM_MODES = ("off", "webhook", "polling")


def _check_telegram(settings: Settings) -> None:
    """The bot's settings: a known mode, a token and (for a webhook) a secret Telegram accepts."""
    mode = settings.telegram_mode.strip().lower()
    object.__setattr__(settings, "telegram_mode", mode)
    if mode not in TELEGRAM_MODES:
        raise SettingsError(f"{PREFIX}TELEGRAM_MODE: {mode!r} is not one of {', '.join(TELEGRAM_MODES)}")
    if mode == "off":
        return
    if not re.fullmatch(r"[0-9]+:[A-Za-z0-9_-]+", settings.telegram_bot_token):
        raise SettingsError(
            f"{PREFIX}TELEGRAM_BOT_TOKEN: needed when {PREFIX}TELEGRAM_MODE is {mode}; expected BotFather's "
            "token, <bot id>:<secret>"
        )
    if not settings.telegram_api_url.startswith(("http://", "https://")):
        raise SettingsError(
            f"{PREFIX}TELEGRAM_API_URL: expected an http(s) URL such as https://api.telegram.org/bot"
        )
    secret = settings.telegram_webhook_secret
    if mode == "webhook" and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
        raise SettingsError(
            f"{PREFIX}TELEGRAM_WEBHOOK_SECRET: needed in webhook mode: 1 to 256 characters of "
            "A-Z a-z 0-9 _ - (Telegram sends it in X-Telegram-Bot-Api-Secret-Token)"
        )


def _check_public_url(settings: Settings) -> None:
    """``public_url``: an http(s) URL without a trailing slash (default: the listening address)."""
    url = settings.public_url.strip().rstrip("/") or f"http://{settings.host}:{settings.port}"
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
        raise SettingsError(
            f"{PREFIX}PUBLIC_URL: {url!r} is not an http(s) URL such as https://shop.example/rfmflow"
        )
    object.__setattr__(settings, "public_url", url)


def _secret_list(text: str | None) -> tuple[str, ...]:
    """A comma-separated list of secrets; blanks around the commas are dropped."""
    if text is None:
        return ()
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _check_currency(code: str) -> None:
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise SettingsError(f"{PREFIX}CURRENCY: {code!r} is not a three-letter upper-case ISO 4217 code")


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``.env`` file: ``KEY=VALUE`` lines, ``#`` comments, optional ``export`` and quotes."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return values
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise SettingsError(f"{path}: line {number}: expected KEY=VALUE, got {raw.strip()!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = re.sub(r"\s+#.*$", "", value)  # an unquoted trailing comment
        values[key] = value
    return values


def _fraction(name: str, text: str | None, default: float = 0.02) -> float:
    if text is None:
        return default
    try:
        return float(text.strip())
    except ValueError:
        raise SettingsError(f"{PREFIX}{name}: {text!r} is not a number such as 0.02") from None


def _on_off(name: str, text: str | None, default: bool = True) -> bool:
    if text is None:
        return default
    value = text.strip().lower()
    if value not in ("on", "off", "true", "false", "1", "0"):
        raise SettingsError(f"{PREFIX}{name}: {text!r} is not on or off")
    return value in ("on", "true", "1")


def _int(name: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise SettingsError(f"{PREFIX}{name}: {text!r} is not a whole number") from None


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    env_file: Path | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Settings from ``environ`` (default ``os.environ``) over ``env_file`` (default ``./.env``)."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    file_values = read_env_file(env_file if env_file is not None else base / ".env")
    env = dict(os.environ if environ is None else environ)
    merged = {k: v for k, v in file_values.items() if k.startswith(PREFIX)}
    merged.update({k: v for k, v in env.items() if k.startswith(PREFIX)})

    def get(name: str) -> str | None:
        value = merged.get(PREFIX + name)
        return value if value not in (None, "") else None

    data_dir = Path(get("DATA_DIR") or "rfmflow-data")
    if not data_dir.is_absolute():
        data_dir = base / data_dir
    data_dir = data_dir.resolve()
    money = get("MONEY_DECIMALS")
    port = get("PORT")
    return Settings(
        data_dir=data_dir,
        database_url=get("DATABASE_URL") or "",
        timezone=get("TIMEZONE") or "UTC",
        currency=(get("CURRENCY") or "USD").upper(),
        money_decimals=_int("MONEY_DECIMALS", money) if money is not None else 2,
        host=get("HOST") or "127.0.0.1",
        port=_int("PORT", port) if port is not None else 8000,
        log_level=get("LOG_LEVEL") or "INFO",
        broadcast_confirm_above=_int("BROADCAST_CONFIRM_ABOVE", get("BROADCAST_CONFIRM_ABOVE") or "1000"),
        broadcast_confirm_tolerance=_fraction(
            "BROADCAST_CONFIRM_TOLERANCE", get("BROADCAST_CONFIRM_TOLERANCE")
        ),
        segment_write_keys=_secret_list(get("SEGMENT_WRITE_KEYS")),
        stripe_webhook_secrets=_secret_list(get("STRIPE_WEBHOOK_SECRET")),
        shopify_webhook_secrets=_secret_list(get("SHOPIFY_WEBHOOK_SECRET")),
        woocommerce_webhook_secret=get("WOOCOMMERCE_WEBHOOK_SECRET") or "",
        secret_key=get("SECRET_KEY") or "",
        telegram_bot_token=get("TELEGRAM_BOT_TOKEN") or "",
        telegram_mode=get("TELEGRAM_MODE") or "off",
        telegram_api_url=get("TELEGRAM_API_URL") or "https://api.telegram.org/bot",
        telegram_webhook_secret=get("TELEGRAM_WEBHOOK_SECRET") or "",
        telegram_webhook_url=get("TELEGRAM_WEBHOOK_URL") or "",
        telegram_menus=get("TELEGRAM_MENUS") or "",
        public_url=get("PUBLIC_URL") or "",
        predictions=_on_off("PREDICTIONS", get("PREDICTIONS")),
    )
