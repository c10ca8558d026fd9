"""Workflows kept in the database: versions, status changes, and the audit rows of each.

A workflow is stored by name; each change of its YAML is a new version (kept in
``workflow_versions``), and journeys keep the version they enrolled in. Status moves
``draft -> active <-> paused``, and ``stop`` from any status (active journeys end as
``stopped``; a stopped workflow can be activated again). Activating a workflow with
``entry: existing`` enrols, at once, everyone in the trigger's segment or holding its tag.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.automation.definition import Workflow, WorkflowError, workflow_from_dict, workflow_from_yaml
from rfmflow.core.errors import RfmflowError
from rfmflow.service.db.tables import audit_log, enrolments, workflow_versions, workflows


class WorkflowNotFound(RfmflowError):
    """No workflow of that name."""


class WorkflowConflict(RfmflowError):
    """The change is not possible in the workflow's current status."""


@dataclass(frozen=True)
class StoredWorkflow:
    id: int
    name: str
    version: int
    yaml: str
    status: str
    created_at: datetime
    created_by: str
    updated_at: datetime
    activated_at: datetime | None

    @property
    def workflow(self) -> Workflow:
        return workflow_from_yaml(self.yaml, source=self.name)

    def as_dict(self, counts: dict[str, int] | None = None) -> dict[str, Any]:
        wf = self.workflow
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "status": self.status,
            "description": wf.description,
            "trigger": wf.trigger.describe(),
            "entry": wf.entry,
            "channels": sorted(wf.channels()),
            "steps": [s.id for s in wf.steps],
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "updated_at": self.updated_at.isoformat(),
            "activated_at": self.activated_at.isoformat() if self.activated_at else None,
            "yaml": self.yaml,
        }
        if counts is not None:
            out["enrolments"] = counts
        return out


def _audit(
    conn: Connection, actor: str, action: str, target: str, details: dict[str, Any], at: datetime
) -> None:
    conn.execute(
        sa.insert(audit_log).values(at=at, actor=actor, action=action, target=target, details=details)
    )


def _row(row: Any) -> StoredWorkflow:
    return StoredWorkflow(
        row.id,
        row.name,
        row.version,
        row.yaml,
        row.status,
        row.created_at,
        row.created_by,
        row.updated_at,
        row.activated_at,
    )


def parse(text_or_data: str | dict[str, Any], source: str = "") -> tuple[Workflow, str]:
    """The checked workflow and its YAML text (JSON bodies are stored as YAML)."""
    if isinstance(text_or_data, str):
        return workflow_from_yaml(text_or_data, source=source), text_or_data
    import yaml

    workflow = workflow_from_dict(text_or_data, source=source)
    return workflow, yaml.safe_dump(text_or_data, sort_keys=False, allow_unicode=True)


def get(conn: Connection, name: str, *, for_update: bool = False) -> StoredWorkflow:
    query = sa.select(workflows).where(workflows.c.name == name)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).one_or_none()
    if row is None:
        raise WorkflowNotFound(f"no workflow named {name!r}")
    return _row(row)


def list_all(conn: Connection) -> list[StoredWorkflow]:
    return [_row(r) for r in conn.execute(sa.select(workflows).order_by(workflows.c.name))]


def enrolment_counts(conn: Connection, workflow_id: int) -> dict[str, int]:
    e = enrolments.c
    rows = conn.execute(
        sa.select(e.status, sa.func.count()).where(e.workflow_id == workflow_id).group_by(e.status)
    ).all()
    return {status: int(n) for status, n in rows}


def version_yaml(conn: Connection, workflow_id: int, version: int) -> str:
    v = workflow_versions.c
    text = conn.execute(
        sa.select(v.yaml).where(v.workflow_id == workflow_id, v.version == version)
    ).scalar_one_or_none()
    if text is None:
        raise WorkflowNotFound(f"workflow id {workflow_id} has no version {version}")
    return str(text)


def save(
    conn: Connection, workflow: Workflow, text: str, *, actor: str, at: datetime
) -> tuple[StoredWorkflow, str]:
    """Create the workflow, or store a new version when its YAML changed.

    Returns the stored workflow and what happened: ``created``, ``updated`` or ``unchanged``.
    """
    existing = conn.execute(sa.select(workflows).where(workflows.c.name == workflow.name)).one_or_none()
    if existing is None:
        wid = conn.execute(
            sa.insert(workflows)
            .values(
                name=workflow.name,
                version=1,
                yaml=text,
                status="draft",
                created_at=at,
                created_by=actor,
                updated_at=at,
            )
            .returning(workflows.c.id)
        ).scalar_one()
        conn.execute(
            sa.insert(workflow_versions).values(
                workflow_id=wid, version=1, yaml=text, created_at=at, created_by=actor
            )
        )
        _audit(conn, actor, "workflow.create", workflow.name, {"version": 1}, at)
        return get(conn, workflow.name), "created"
    if existing.yaml == text:
        return _row(existing), "unchanged"
    version = existing.version + 1
    conn.execute(
        sa.update(workflows)
        .where(workflows.c.id == existing.id)
        .values(version=version, yaml=text, updated_at=at)
    )
    conn.execute(
        sa.insert(workflow_versions).values(
            workflow_id=existing.id, version=version, yaml=text, created_at=at, created_by=actor
        )
    )
    _audit(conn, actor, "workflow.update", workflow.name, {"version": version}, at)
    return get(conn, workflow.name), "updated"


def set_status(conn: Connection, name: str, action: str, *, actor: str, at: datetime) -> dict[str, Any]:
    """``activate``, ``pause`` or ``stop`` the workflow; what changed."""
    stored = get(conn, name, for_update=True)
    target = {"activate": "active", "pause": "paused", "stop": "stopped"}[action]
    if action == "pause" and stored.status != "active":
        raise WorkflowConflict(f"workflow {name!r} is {stored.status}; only an active workflow can be paused")
    result: dict[str, Any] = {"name": name, "status": target, "previous": stored.status}
    if stored.status == target:
        result["changed"] = False
        return result
    values: dict[str, Any] = {"status": target, "updated_at": at}
    if action == "activate" and stored.status in ("draft", "stopped"):
        values["activated_at"] = at
    conn.execute(sa.update(workflows).where(workflows.c.id == stored.id).values(**values))
    if action == "stop":
        e = enrolments.c
        stopped = conn.execute(
            sa.update(enrolments)
            .where(e.workflow_id == stored.id, e.status == "active")
            .values(status="stopped", step=None, due_at=None, finished_at=at, waiting_for=None)
        ).rowcount
        result["journeys_stopped"] = int(stopped or 0)
    if action == "activate" and stored.status in ("draft", "stopped") and stored.workflow.entry == "existing":
        from rfmflow.automation.enrol import enrol_existing

        result["enrolled"] = enrol_existing(conn, get(conn, name), at)
    result["changed"] = True
    _audit(conn, actor, f"workflow.{action}", name, {k: v for k, v in result.items() if k != "name"}, at)
    return result


__all__ = [
    "StoredWorkflow",
    "WorkflowConflict",
    "WorkflowError",
    "WorkflowNotFound",
    "enrolment_counts",
    "get",
    "list_all",
    "parse",
    "save",
    "set_status",
    "version_yaml",
]
