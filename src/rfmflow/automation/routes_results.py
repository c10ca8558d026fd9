"""Results over HTTP (role: admin or analyst: ``data:read``).

==============================================  ==================================================
endpoint                                        what
==============================================  ==================================================
``GET /v1/workflows/{name}/results``            enrolled, sent, delivered, failed, blocked,
                                                clicked, replied, converted, revenue: in total,
                                                per step and per segment; holdout lift
``GET /v1/broadcasts/{id}/results``             the same for a broadcast's messages
==============================================  ==================================================

``window`` (a duration: ``12h``, ``7d``, ``2w``) is the attribution window; a workflow's default
is its goal's ``within`` (14 days without a goal), a broadcast's 7 days. See
:mod:`rfmflow.automation.results` for what each number counts.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query

from rfmflow.automation.results import BROADCAST_WINDOW, ResultsError, broadcast_results, workflow_results
from rfmflow.service.app import ServiceDep, require
from rfmflow.service.auth import ApiKey

DataReader = Annotated[ApiKey, Depends(require("data:read"))]
Window = Annotated[
    str | None, Query(description="attribution window: a duration such as 12h, 7d or 2w (at most 365d)")
]
_DURATION = re.compile(r"^\s*(\d+)\s*(h|d|w)\s*$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
MAX_WINDOW = timedelta(days=365)


def parse_window(text: str | None) -> timedelta | None:
    """``12h``, ``7d``, ``2w`` as a duration (422 naming ``window`` otherwise)."""
    if text is None:
        return None
    match = _DURATION.match(text)
    window = int(match.group(1)) * _UNITS[match.group(2)] if match else None
    if window is None or not timedelta(0) < window <= MAX_WINDOW:
        raise HTTPException(
            422,
            [
                {
                    "loc": ["query", "window"],
                    "msg": f"expected a duration from 1h to 365d such as 12h, 7d or 2w, got {text!r}",
                    "type": "value_error",
                }
            ],
        )
    return window


def register(app: FastAPI) -> None:
    """Add this module's routes to ``app``."""

    @app.get(
        "/v1/workflows/{name}/results",
        tags=["results"],
        summary="A workflow's results per step and segment, with holdout lift (role: admin or analyst)",
    )
    def get_workflow_results(
        svc: ServiceDep, _key: DataReader, name: Annotated[str, Path(max_length=64)], window: Window = None
    ) -> dict[str, Any]:
        span = parse_window(window)
        try:
            with svc.engine.connect() as conn:
                return workflow_results(conn, name, window=span, decimals=svc.settings.money_decimals)
        except ResultsError as err:
            raise HTTPException(err.status, err.message) from None

    @app.get(
        "/v1/broadcasts/{broadcast_id}/results",
        tags=["results"],
        summary="A broadcast's results per segment (role: admin or analyst)",
    )
    def get_broadcast_results(
        svc: ServiceDep, _key: DataReader, broadcast_id: Annotated[int, Path(ge=1)], window: Window = None
    ) -> dict[str, Any]:
        span = parse_window(window) or BROADCAST_WINDOW
        try:
            with svc.engine.connect() as conn:
                return broadcast_results(
                    conn, broadcast_id, window=span, decimals=svc.settings.money_decimals
                )
        except ResultsError as err:
            raise HTTPException(err.status, err.message) from None


__all__ = ["parse_window", "register"]
