"""A customer's personal data over HTTP (GDPR): export and erasure (:mod:`rfmflow.automation.gdpr`).

===========================================  =====  ==================================================
endpoint                                     role   what
===========================================  =====  ==================================================
``GET /v1/customers/{id}/personal-data``     admin  everything held about the customer, as JSON
``POST /v1/customers/{id}/erase``            admin  ``{"confirm": "<the customer id>"}``: erase the
                                                    personal fields, keep the counts, opt out of every
                                                    channel; an ``audit_log`` row ``customer.erase``
===========================================  =====  ==================================================

An unknown customer is 404; an erasure whose ``confirm`` does not repeat the id is 422 (``loc``
``["body", "confirm"]``) and changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict

from rfmflow.automation.gdpr import CustomerNotFound, erase_with_audit, personal_data
from rfmflow.service.app import ServiceDep, require
from rfmflow.service.auth import ApiKey
from rfmflow.service.db.engine import run_write

Admin = Annotated[ApiKey, Depends(require("admin"))]


class ErasureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    confirm: str
    """The customer's id again: erasure cannot be undone."""


def register(app: FastAPI) -> None:
    @app.get(
        "/v1/customers/{customer_id}/personal-data",
        tags=["customers"],
        summary="Everything held about a customer (GDPR export; admin)",
    )
    def export(svc: ServiceDep, _key: Admin, customer_id: str) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            try:
                return personal_data(conn, customer_id)
            except CustomerNotFound as err:
                raise HTTPException(404, str(err)) from None

    @app.post(
        "/v1/customers/{customer_id}/erase",
        tags=["customers"],
        summary="Erase a customer's personal data, keep the counts (GDPR; admin)",
    )
    def erase_customer(svc: ServiceDep, key: Admin, customer_id: str, body: ErasureIn) -> dict[str, Any]:
        if body.confirm != customer_id:
            raise HTTPException(
                422,
                [
                    {
                        "loc": ["body", "confirm"],
                        "msg": "repeat the customer's id to confirm the erasure (it cannot be undone)",
                        "type": "value_error",
                    }
                ],
            )
        try:
            return run_write(
                svc.engine,
                lambda conn: erase_with_audit(conn, customer_id, f"key:{key.id}", datetime.now(UTC)),
            )
        except CustomerNotFound as err:
            raise HTTPException(404, str(err)) from None


__all__ = ["ErasureIn", "register"]
