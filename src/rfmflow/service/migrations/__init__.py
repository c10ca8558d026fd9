"""Alembic migrations of the service's schema (run through :mod:`rfmflow.service.db.migrate`)."""
