"""Automation: workflows and broadcasts that act on segments, tags and events.

:mod:`rfmflow.automation.definition` reads and checks workflow definitions;
:func:`builtin_workflows` lists the templates shipped with rfmflow (from both guides).
"""

from __future__ import annotations

from importlib import resources

from rfmflow.automation.definition import Workflow, WorkflowError, workflow_from_yaml


def builtin_workflows() -> dict[str, Workflow]:
    """The built-in workflow templates by name (``src/rfmflow/automation/templates``)."""
    folder = resources.files("rfmflow.automation") / "templates"
    found = {}
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".yaml"):
            workflow = workflow_from_yaml(item.read_text(encoding="utf-8"), source=item.name)
            found[workflow.name] = workflow
    return found


def builtin_workflow_text(name: str) -> str:
    """The YAML of a built-in template, to copy and change."""
    path = resources.files("rfmflow.automation") / "templates" / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(builtin_workflows()))
        raise WorkflowError(f"no built-in workflow {name!r} (built in: {known})")
    return path.read_text(encoding="utf-8")


__all__ = ["Workflow", "WorkflowError", "builtin_workflow_text", "builtin_workflows", "workflow_from_yaml"]
