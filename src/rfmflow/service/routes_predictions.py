"""Predictions over HTTP.

======================================  ===============  ============================================
endpoint                                roles            what
======================================  ===============  ============================================
``GET /v1/predictions``                 admin, analyst   the newest successful fit: models, churn
                                                         counts, per segment expected revenue and CLV
                                                         (404 before the first one)
``GET /v1/predictions/fits``            admin, analyst   recent fits, failed ones with their reason
``POST /v1/predictions/fit``            admin            fit now (201 with the fit; 422 with the
                                                         reason when the data cannot be fitted)
======================================  ===============  ============================================

A customer's own predictions are in ``GET /v1/customers/{id}`` (``predictions``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from rfmflow.service.app import ServiceDep, require
from rfmflow.service.auth import ApiKey
from rfmflow.service.predictions import fit_predictions, latest_fit, list_fits

DataReader = Annotated[ApiKey, Depends(require("data:read"))]
Admin = Annotated[ApiKey, Depends(require("admin"))]


def register(app: FastAPI) -> None:
    @app.get(
        "/v1/predictions",
        tags=["predictions"],
        summary="The newest fit: churn counts, expected revenue and CLV per segment (admin, analyst)",
    )
    def get_predictions(svc: ServiceDep, _key: DataReader) -> JSONResponse:
        with svc.engine.connect() as conn:
            fit = latest_fit(conn)
        if fit is None:
            return JSONResponse(
                {"detail": "no predictions yet: POST /v1/predictions/fit or wait for the scheduled run"}, 404
            )
        return JSONResponse(fit)

    @app.get("/v1/predictions/fits", tags=["predictions"], summary="Recent fits (admin, analyst)")
    def get_fits(
        svc: ServiceDep, _key: DataReader, limit: Annotated[int, Query(ge=1, le=200)] = 20
    ) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            return {"fits": list_fits(conn, limit=limit)}

    @app.post(
        "/v1/predictions/fit",
        tags=["predictions"],
        status_code=201,
        summary="Fit the models now and replace every customer's predictions (admin)",
    )
    async def post_fit(svc: ServiceDep, _key: Admin) -> JSONResponse:
        result = await run_in_threadpool(fit_predictions, svc.engine, svc.settings)
        return JSONResponse(result.as_dict(), status_code=201 if result.status == "done" else 422)


__all__ = ["register"]
