"""Quoting for SQL text built by rfmflow (identifiers and string literals, standard SQL)."""

from __future__ import annotations


def quote_ident(name: str) -> str:
    """Quote an identifier in double quotes, doubling any double quote inside it."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """Quote a string literal in single quotes, doubling any single quote inside it."""
    return "'" + value.replace("'", "''") + "'"
