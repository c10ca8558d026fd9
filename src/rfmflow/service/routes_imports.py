"""Bulk imports of event history (``POST /v1/imports``)."""

from __future__ import annotations

from fastapi import FastAPI


def register(app: FastAPI) -> None:
    """Add this module's routes to ``app``."""
