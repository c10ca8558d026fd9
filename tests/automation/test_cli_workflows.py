"""``rfmflow workflows``: validate, apply, list, show, activate/pause/stop, templates and results
against the service database (SQLite), in process with CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rfmflow.cli.main import main

FLOW = """\
name: vip-hello
description: Say hello to new Champions.
trigger: {entered_segment: Champions}
steps:
  - id: hello
    send: {channel: email, subject: "Hello {{ first_name }}", text: "Welcome to VIP."}
"""


@pytest.fixture
def rfm(tmp_path: Path) -> Any:
    env = tmp_path / "cli.env"
    env.write_text(f"RFMFLOW_DATABASE_URL=sqlite:///{tmp_path / 'cli.db'}\nRFMFLOW_DATA_DIR={tmp_path}\n")
    runner = CliRunner()

    def run(*args: str, env_file: bool = True) -> Any:
        extra = ["--env-file", str(env)] if env_file else []
        return runner.invoke(main, ["workflows", *args, *extra])

    return run


def test_workflow_commands(rfm: Any, tmp_path: Path) -> None:
    good = tmp_path / "vip.yaml"
    good.write_text(FLOW)
    bad = tmp_path / "bad.yaml"
    bad.write_text(FLOW.replace("channel: email", "channel: sms"))

    checked = rfm("validate", str(good), env_file=False)
    assert checked.exit_code == 0 and "is valid" in checked.stdout and "email" in checked.stdout
    refused = rfm("validate", str(bad), env_file=False)
    assert refused.exit_code == 1
    assert "steps[0] (hello).send.channel: unknown channel 'sms'" in refused.output
    assert rfm("validate", str(tmp_path / "missing.yaml"), env_file=False).exit_code == 2

    assert rfm("list").stdout == ""  # nothing yet (the note goes to stderr)
    created = rfm("apply", str(good))
    assert created.exit_code == 0 and created.stdout.startswith(
        "created: workflow 'vip-hello' version 1 (draft)"
    )
    assert rfm("apply", str(good)).stdout.startswith("unchanged")
    good.write_text(FLOW.replace("Welcome to VIP.", "Welcome to the VIP club."))
    assert rfm("apply", str(good)).stdout.startswith("updated: workflow 'vip-hello' version 2")
    assert rfm("apply", str(bad)).exit_code == 1

    listed = json.loads(rfm("list", "--json").stdout)
    assert [(w["name"], w["version"], w["status"]) for w in listed] == [("vip-hello", 2, "draft")]
    shown = rfm("show", "vip-hello")
    assert shown.exit_code == 0 and "entered segment Champions" in shown.stdout
    assert "Welcome to the VIP club." in shown.stdout
    missing = rfm("show", "nope")
    assert missing.exit_code == 1 and "no workflow named 'nope'" in missing.output

    paused = rfm("pause", "vip-hello")
    assert paused.exit_code == 1 and "only an active workflow can be paused" in paused.output
    assert "is active" in rfm("activate", "vip-hello").stdout
    assert "(no change)" in rfm("activate", "vip-hello").stdout
    assert "is paused" in rfm("pause", "vip-hello").stdout
    stopped = rfm("stop", "vip-hello")
    assert stopped.exit_code == 0 and "is stopped; 0 journeys stopped" in stopped.stdout

    templates = rfm("templates", env_file=False)
    assert templates.exit_code == 0 and "we-miss-you" in templates.stdout
    template = rfm("templates", "show", "we-miss-you", env_file=False)
    assert template.exit_code == 0 and "name: we-miss-you" in template.stdout
    unknown = rfm("templates", "show", "nope", env_file=False)
    assert unknown.exit_code == 1 and "no built-in workflow 'nope'" in unknown.output

    results = rfm("results", "vip-hello")
    assert results.exit_code == 0, results.output
    assert "goal purchase within 14 days" in results.stdout and results.stdout.count("total") == 1
    as_json = json.loads(rfm("results", "vip-hello", "--window", "7d", "--json").stdout)
    assert as_json["window_days"] == 7 and as_json["totals"]["enrolled"] == 0
    window = rfm("results", "vip-hello", "--window", "7x")
    assert window.exit_code == 2 and "--window" in window.output
    assert rfm("results", "nope").exit_code == 1

    audit = json.loads(rfm("show", "vip-hello", "--json").stdout)
    assert audit["status"] == "stopped" and audit["version"] == 2
