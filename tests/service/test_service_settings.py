"""Settings from RFMFLOW_* variables and a .env file."""

from __future__ import annotations

from pathlib import Path

import pytest

from rfmflow.service.settings import Settings, SettingsError, load_settings, normalize_database_url


def test_defaults(tmp_path: Path) -> None:
    s = load_settings({}, cwd=tmp_path)
    assert s.data_dir == (tmp_path / "rfmflow-data").resolve()
    assert s.database_url == f"sqlite:///{(tmp_path / 'rfmflow-data' / 'rfmflow.db').resolve()}"
    assert (s.timezone, s.currency, s.money_decimals) == ("UTC", "USD", 2)
    assert (s.host, s.port, s.log_level) == ("127.0.0.1", 8000, "INFO")


def test_environment_wins_over_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# settings\n"
        "export RFMFLOW_PORT=9000\n"
        "RFMFLOW_TIMEZONE='Europe/Berlin'\n"
        'RFMFLOW_CURRENCY="eur"  \n'
        "RFMFLOW_DATA_DIR=store   # relative to the working directory\n"
        "OTHER=ignored\n"
    )
    s = load_settings({"RFMFLOW_PORT": "9100", "RFMFLOW_LOG_LEVEL": "debug"}, cwd=tmp_path)
    assert s.port == 9100 and s.timezone == "Europe/Berlin" and s.currency == "EUR"
    assert s.data_dir == (tmp_path / "store").resolve() and s.log_level == "DEBUG"
    assert s.database_url.endswith("/store/rfmflow.db")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////var/lib/x.db", "sqlite:////var/lib/x.db"),
    ],
)
def test_database_urls(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"RFMFLOW_TIMEZONE": "Mars/Olympus"}, "RFMFLOW_TIMEZONE: unknown time zone"),
        ({"RFMFLOW_CURRENCY": "dollars"}, "RFMFLOW_CURRENCY"),
        ({"RFMFLOW_PORT": "eighty"}, "RFMFLOW_PORT: 'eighty' is not a whole number"),
        ({"RFMFLOW_PORT": "70000"}, "RFMFLOW_PORT"),
        ({"RFMFLOW_MONEY_DECIMALS": "9"}, "RFMFLOW_MONEY_DECIMALS"),
        ({"RFMFLOW_LOG_LEVEL": "chatty"}, "RFMFLOW_LOG_LEVEL"),
        ({"RFMFLOW_DATABASE_URL": "mysql://u:secret@h/db"}, "is not supported"),
        ({"RFMFLOW_DATABASE_URL": "sqlite://"}, "in-memory"),
    ],
)
def test_bad_settings_name_the_variable(tmp_path: Path, env: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError, match=words) as info:
        load_settings(env, cwd=tmp_path)
    assert "secret" not in str(info.value)


def test_bad_env_file_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RFMFLOW_PORT 9000\n")
    with pytest.raises(SettingsError, match=r"\.env: line 1: expected KEY=VALUE"):
        load_settings({}, cwd=tmp_path)


def test_settings_are_validated_when_built_directly(tmp_path: Path) -> None:
    with pytest.raises(SettingsError):
        Settings(data_dir=tmp_path, timezone="Nowhere/Land")
    assert Settings(data_dir=tmp_path).with_changes(port=1234).port == 1234
