"""The product's whole HTTP app: the service's API plus the dashboard, automation and alerts.

This is the composition root: the service layer builds an app from route groups it is given
(:func:`rfmflow.service.app.create_app`) and knows nothing of the layers above it; this module,
in the top layer, hands it all of them. ``rfmflow serve`` serves :func:`build_app`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.engine import Engine

    from rfmflow.service.settings import Settings


def product_routes() -> list[Callable[[FastAPI], None]]:
    """Every route group, in the order they are mounted."""
    from rfmflow.alerts import routes as alerts_routes
    from rfmflow.automation import (
        routes_broadcasts,
        routes_engine,
        routes_gdpr,
        routes_public,
        routes_results,
        routes_tasks,
        routes_telegram,
        routes_workflows,
    )
    from rfmflow.dashboard import routes as dashboard_routes
    from rfmflow.service.app import service_routes

    return [
        *service_routes(),
        dashboard_routes.register,  # the dashboard's pages under /
        routes_telegram.register,  # POST /v1/telegram/webhook and the bot's runtime
        routes_results.register,  # GET /v1/workflows/{name}/results, /v1/broadcasts/{id}/results
        routes_broadcasts.register,  # /v1/broadcasts: preview, create, start, pause, resume, stop
        routes_workflows.register,  # /v1/workflows, /v1/customers/{id}/consent
        routes_tasks.register,  # /v1/tasks: hand-offs to people
        routes_gdpr.register,  # /v1/customers/{id}/personal-data, .../erase
        routes_public.register,  # /u/{token} unsubscribe, /l/{token} tracked clicks (no key)
        routes_engine.register,  # the automation loop in serve's process
        alerts_routes.register,  # /v1/alerts/..., /v1/reports/... and the alerts loop
    ]


def build_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    """The app ``rfmflow serve`` serves (see :func:`rfmflow.service.app.create_app`)."""
    from rfmflow.service.app import create_app

    return create_app(settings, engine=engine, routes=product_routes())


__all__ = ["build_app", "product_routes"]
