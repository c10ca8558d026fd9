"""Settings of the sources: write keys and webhook secrets (no database needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rfmflow.service.routes_sources import decode_body, metric_reason, path_loc
from rfmflow.service.settings import Settings, SettingsError, load_settings


def test_secrets_are_read_from_the_environment(tmp_path: Path) -> None:
    env = {
        "RFMFLOW_SEGMENT_WRITE_KEYS": " wk_first_key_1234567 , wk_second_key_7654321,",
        "RFMFLOW_STRIPE_WEBHOOK_SECRET": "whsec_new,whsec_old",
        "RFMFLOW_SHOPIFY_WEBHOOK_SECRET": "shpss_abc",
        "RFMFLOW_WOOCOMMERCE_WEBHOOK_SECRET": "a,b;c d",
    }
    settings = load_settings(env, cwd=tmp_path)
    assert settings.segment_write_keys == ("wk_first_key_1234567", "wk_second_key_7654321")
    assert settings.stripe_webhook_secrets == ("whsec_new", "whsec_old")
    assert settings.shopify_webhook_secrets == ("shpss_abc",)
    assert settings.woocommerce_webhook_secret == "a,b;c d"  # verbatim: WooCommerce secrets may hold commas
    shown = repr(settings)
    assert not any(secret in shown for secret in ("wk_first", "whsec_", "shpss_", "a,b;c d"))


def test_defaults_leave_everything_unconfigured(tmp_path: Path) -> None:
    settings = load_settings({}, cwd=tmp_path)
    assert (
        settings.segment_write_keys
        == settings.stripe_webhook_secrets
        == settings.shopify_webhook_secrets
        == ()
    )
    assert settings.woocommerce_webhook_secret == ""


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"RFMFLOW_SEGMENT_WRITE_KEYS": "short"}, "SEGMENT_WRITE_KEYS: each write key needs at least 16"),
        ({"RFMFLOW_STRIPE_WEBHOOK_SECRET": "sk_live_abcdefghijkl"}, "STRIPE_WEBHOOK_SECRET: expected"),
    ],
)
def test_bad_secrets_name_the_variable_not_the_value(tmp_path: Path, env: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError, match=words) as info:
        load_settings(env, cwd=tmp_path)
    assert next(iter(env.values())) not in str(info.value)


def test_settings_built_directly_accept_a_list_or_a_string(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, stripe_webhook_secrets="whsec_a, whsec_b")  # type: ignore[arg-type]
    assert settings.stripe_webhook_secrets == ("whsec_a", "whsec_b")
    assert Settings(data_dir=tmp_path, shopify_webhook_secrets=["s1"]).shopify_webhook_secrets == ("s1",)  # type: ignore[arg-type]


def test_field_paths() -> None:
    assert path_loc("data.object.refunds.data[0].amount") == [
        "data",
        "object",
        "refunds",
        "data",
        0,
        "amount",
    ]
    assert path_loc("X-Shopify-Topic") == ["header", "X-Shopify-Topic"]
    assert metric_reason("batch[12].properties.total") == "properties.total"
    assert metric_reason("transactions[3].amount") == "transactions.amount"


def test_gzip_members_and_limits() -> None:
    import gzip

    two_members = gzip.compress(b'{"a": ') + gzip.compress(b"1}")
    assert decode_body(two_members, "gzip", 100) == b'{"a": 1}'
    assert decode_body(b"plain", None, 100) == b"plain"
    with pytest.raises(Exception, match="over the"):
        decode_body(gzip.compress(b"x" * 101), "gzip", 100)
