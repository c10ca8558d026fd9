"""``register(app)``: the dashboard's pages and static files on the service's app.

==========================================  =========================  =====================================
page                                        roles                      what
==========================================  =========================  =====================================
``GET/POST /login``, ``POST /logout``       (anyone with an API key)   sign in with an API key; sign out
``GET /``                                   admin, analyst             overview (agents: to ``/customers``)
``GET /moves``                              admin, analyst             customers behind a transition cell
``GET /customers``                          admin, analyst, agent      filtered, sorted list, cursor pages
``GET /customers/export.csv|.parquet``      admin, analyst             the filtered list as a file
``GET /customers/{id}``                     admin, analyst, agent      one customer; events paginated
``POST /customers/{id}/tags``               admin, agent               add or remove a manual tag
``GET /scheme``, ``POST /scheme``           admin (analyst: read)      view, validate, preview, apply
``POST /customers/{id}/consent``            admin, agent               opt a customer in or out of a channel
``GET /workflows``, ``/workflows/{name}``   admin, analyst             workflows, results by step and segment
``GET/POST /workflows/new``                 admin                      a workflow from a built-in template
``POST /workflows/{name}[/status]``         admin                      edit; activate, pause, resume, stop
``GET /tasks``, ``POST /tasks/{id}/close``  all (close: admin, agent)  the hand-off queue, most urgent first
``GET /broadcasts``, ``/broadcasts/{id}``   admin, analyst             broadcasts, results by segment
``GET/POST /broadcasts/new``                admin                      new broadcast, audience counted first
``POST /broadcasts/{id}/action``            admin                      start (confirmed), pause, resume, stop
``GET/POST /alerts``                        admin (analyst: read)      rules (add, enable, disable), history
``GET/POST /reports``                       admin (analyst: read)      weekly reports; make one now (admin)
``GET /reports/{id}.html``                  admin, analyst             a report's page (a download)
``GET /static/...``                         anyone                     the stylesheet and script
==========================================  =========================  =====================================
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from rfmflow.dashboard import (
    pages_alerts,
    pages_auth,
    pages_broadcasts,
    pages_customers,
    pages_overview,
    pages_scheme,
    pages_tasks,
    pages_workflows,
)
from rfmflow.dashboard.web import (
    BadForm,
    Dashboard,
    Forbidden,
    NeedsSignIn,
    current_session,
    make_templates,
    redirect,
    render,
)


def register(app: FastAPI) -> None:
    """Add the dashboard to ``app`` (built by :func:`rfmflow.service.app.create_app`)."""
    app.state.dashboard = Dashboard(settings=app.state.service.settings, templates=make_templates())
    app.mount("/static", StaticFiles(packages=[("rfmflow.dashboard", "static")]), name="dashboard-static")

    async def needs_sign_in(request: Request, _err: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return redirect(f"/login?next={quote(target, safe='')}")

    async def forbidden(request: Request, err: Exception) -> Response:
        message = err.message if isinstance(err, Forbidden | BadForm) else str(err)
        status = err.status if isinstance(err, BadForm) else 403
        return render(
            request,
            "error.html.j2",
            session=current_session(request),
            status=status,
            title="Not allowed",
            message=message,
        )

    app.add_exception_handler(NeedsSignIn, needs_sign_in)
    app.add_exception_handler(Forbidden, forbidden)
    app.add_exception_handler(BadForm, forbidden)
    pages_auth.register(app)
    pages_overview.register(app)
    pages_customers.register(app)
    pages_scheme.register(app)
    pages_workflows.register(app)
    pages_broadcasts.register(app)
    pages_tasks.register(app)
    pages_alerts.register(app)
