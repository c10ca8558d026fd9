"""Schemes, scoring runs, segments and transitions."""

from __future__ import annotations

from fastapi import FastAPI


def register(app: FastAPI) -> None:
    """Add this module's routes to ``app``."""
