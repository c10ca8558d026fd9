"""API keys: creation shows the key once, only a hash is stored, revocation, audit log, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from click.testing import CliRunner
from service_helpers import Database
from sqlalchemy.engine import Engine

from rfmflow.service.auth import audit_entries, authenticate, create_key, hash_secret, list_keys, revoke_key
from rfmflow.service.cli import service_cli
from rfmflow.service.db.tables import api_keys


def test_only_a_hash_is_stored(engine: Engine) -> None:
    key, text = create_key(engine, role="analyst", name="dashboards", actor="test")
    assert text.startswith(f"rfm_{key.prefix}_")
    secret = text.split("_", 2)[2]
    with engine.connect() as conn:
        stored = conn.execute(sa.select(api_keys)).one()
        assert stored.secret_hash == hash_secret(secret) and secret not in repr(tuple(stored))
        assert authenticate(conn, text) == key
        assert authenticate(conn, text[:-1] + ("A" if text[-1] != "A" else "B")) is None
        assert authenticate(conn, f"rfm_{key.prefix}") is None


def test_revocation_and_audit(engine: Engine) -> None:
    key, text = create_key(engine, role="ingest", name="shop", actor="cli:alice")
    revoked = revoke_key(engine, key.id, actor="cli:bob")
    assert revoked.revoked_at is not None and not revoked.allows("events:write")
    assert revoke_key(engine, key.id, actor="cli:bob").revoked_at == revoked.revoked_at  # idempotent
    with engine.connect() as conn:
        assert authenticate(conn, text) is None
    log = audit_entries(engine)
    assert [(e["action"], e["actor"], e["target"]) for e in log] == [
        ("key.revoke", "cli:bob", f"key:{key.id}"),
        ("key.create", "cli:alice", f"key:{key.id}"),
    ]
    assert log[1]["details"] == {"name": "shop", "role": "ingest", "prefix": key.prefix}


def test_roles_permissions(engine: Engine) -> None:
    made = {
        role: create_key(engine, role=role, name=role, actor="t")[0]
        for role in ("admin", "analyst", "agent", "ingest")
    }
    assert made["admin"].allows("events:write") and made["admin"].allows("admin")
    assert made["ingest"].allows("events:write") and not made["ingest"].allows("customers:read")
    assert made["agent"].allows("customers:read") and not made["agent"].allows("data:export")
    assert made["analyst"].allows("data:export") and not made["analyst"].allows("events:write")


def test_keys_commands(engine: Engine, database: Database, tmp_path: Path) -> None:
    env = tmp_path / "keys.env"
    env.write_text(f"RFMFLOW_DATABASE_URL={database.url}\n")
    runner = CliRunner()
    created = runner.invoke(
        service_cli, ["keys", "create", "--role", "ingest", "--name", "web shop", "--env-file", str(env)]
    )
    assert created.exit_code == 0, created.output
    text = created.stdout.strip()
    assert text.startswith("rfm_") and "shown only this once" in created.stderr
    listed = runner.invoke(service_cli, ["keys", "list", "--env-file", str(env)])
    assert listed.exit_code == 0 and "web shop" in listed.stdout and "ingest" in listed.stdout
    assert text.split("_", 2)[2] not in listed.stdout  # the secret is never shown again
    (key,) = list_keys(engine)
    as_json = runner.invoke(service_cli, ["keys", "list", "--json", "--env-file", str(env)])
    assert json.loads(as_json.stdout)[0]["prefix"] == key.prefix
    revoked = runner.invoke(service_cli, ["keys", "revoke", str(key.id), "--env-file", str(env)])
    assert revoked.exit_code == 0 and "revoked key" in revoked.stderr
    assert "revoked" in runner.invoke(service_cli, ["keys", "list", "--env-file", str(env)]).stdout
    unknown = runner.invoke(service_cli, ["keys", "revoke", "999", "--env-file", str(env)])
    assert unknown.exit_code == 1 and "no API key with id 999" in unknown.stderr
    bad_role = runner.invoke(
        service_cli, ["keys", "create", "--role", "root", "--name", "x", "--env-file", str(env)]
    )
    assert bad_role.exit_code == 2
    actions = [e["action"] for e in audit_entries(engine)]
    assert actions == ["key.revoke", "key.create"]


def test_keys_commands_work_before_the_first_start(tmp_path: Path) -> None:
    env = tmp_path / "fresh.env"
    env.write_text(f"RFMFLOW_DATA_DIR={tmp_path / 'data'}\n")
    runner = CliRunner()
    listed = runner.invoke(service_cli, ["keys", "list", "--env-file", str(env)])
    assert listed.exit_code == 0 and "no API keys" in listed.stderr
    created = runner.invoke(
        service_cli, ["keys", "create", "--role", "admin", "--name", "me", "--env-file", str(env)]
    )
    assert created.exit_code == 0 and created.stdout.startswith("rfm_")
    assert (tmp_path / "data" / "rfmflow.db").exists()
