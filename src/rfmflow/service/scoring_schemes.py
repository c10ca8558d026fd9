"""Scheme versions in the database: the active scheme is the newest row of ``scheme_versions``.

A fresh database has none; the built-in ``rfm11`` is then the active scheme and is stored as
version 1 the first time anything writes scores (:func:`ensure_active_scheme`). Storing a new
version (``PUT /v1/scheme``, ``rfmflow scheme apply``) happens in the same transaction as
the full re-score it causes (see :func:`rfmflow.service.scoring.run_scoring`).

Parsed schemes are cached by their YAML text, so the live re-score of every ingest does not
parse and validate YAML again.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.core.errors import SchemeError
from rfmflow.core.scheme import Scheme, scheme_from_yaml
from rfmflow.schemes import DEFAULT_SCHEME, builtin_text
from rfmflow.service.db.store import insert_or_ignore
from rfmflow.service.db.tables import scheme_versions

MAX_SCHEME_BYTES = 256 * 1024
BUILTIN_ACTOR = "builtin"


@dataclass(frozen=True)
class SchemeVersion:
    """A stored (or, before the first write, the built-in default) scheme version."""

    version: int
    name: str
    yaml: str
    created_at: datetime | None
    created_by: str
    scheme: Scheme
    stored: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "name": self.name,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "created_by": self.created_by,
            "stored": self.stored,
            "segments": [s.name for s in self.scheme.segments],
            "yaml": self.yaml,
        }


_CACHE: OrderedDict[str, Scheme] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def parse_scheme(text: str, *, source: str = "scheme") -> Scheme:
    """Validate a scheme's YAML for the service (cached by text); raise :class:`SchemeError`.

    Beyond :func:`rfmflow.core.scheme.scheme_from_yaml`, the service cannot score rules that
    read model predictions, nor ``monetary.measure: field:<name>`` (its events table has no
    such columns).
    """
    with _CACHE_LOCK:
        cached = _CACHE.get(text)
        if cached is not None:
            _CACHE.move_to_end(text)
            return cached
    if len(text.encode("utf-8")) > MAX_SCHEME_BYTES:
        raise SchemeError(f"{source}: the scheme is over {MAX_SCHEME_BYTES // 1024} KB")
    scheme = scheme_from_yaml(text, source=source)
    prefix = f"scheme {scheme.name!r}: "
    if scheme.uses_predictions:
        raise SchemeError(
            f"{prefix}segments: rules read model predictions (p_alive, clv, churn_risk, ...), which the "
            "service does not compute yet"
        )
    if scheme.metrics.monetary.field_name is not None:
        raise SchemeError(
            f"{prefix}metrics.monetary.measure: 'field:' measures need event columns the service does not "
            "store; use 'amount' or 'count'"
        )
    with _CACHE_LOCK:
        _CACHE[text] = scheme
        while len(_CACHE) > 32:
            _CACHE.popitem(last=False)
    return scheme


def builtin_default() -> SchemeVersion:
    text = builtin_text(DEFAULT_SCHEME)
    return SchemeVersion(1, DEFAULT_SCHEME, text, None, BUILTIN_ACTOR, parse_scheme(text), stored=False)


def _version(row: Any) -> SchemeVersion:
    return SchemeVersion(
        int(row.version), row.name, row.yaml, row.created_at, row.created_by, parse_scheme(row.yaml)
    )


def active_scheme(conn: Connection) -> SchemeVersion:
    """The active (newest) version; the built-in default, not stored, when there is none."""
    row = conn.execute(sa.select(scheme_versions).order_by(scheme_versions.c.version.desc()).limit(1)).first()
    return builtin_default() if row is None else _version(row)


def get_version(conn: Connection, version: int) -> SchemeVersion | None:
    row = conn.execute(sa.select(scheme_versions).where(scheme_versions.c.version == version)).first()
    return None if row is None else _version(row)


def list_versions(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(
            scheme_versions.c.version,
            scheme_versions.c.name,
            scheme_versions.c.created_at,
            scheme_versions.c.created_by,
        ).order_by(scheme_versions.c.version.desc())
    ).all()
    return [
        {
            "version": r.version,
            "name": r.name,
            "created_at": r.created_at.isoformat(),
            "created_by": r.created_by,
        }
        for r in rows
    ]


def ensure_active_scheme(conn: Connection, *, now: datetime | None = None) -> SchemeVersion:
    """The active version, storing the built-in default as version 1 if none is stored yet
    (in the caller's write transaction; concurrent first writers agree on one row)."""
    current = active_scheme(conn)
    if current.stored:
        return current
    insert_or_ignore(
        conn,
        scheme_versions,
        {
            "version": 1,
            "name": current.name,
            "yaml": current.yaml,
            "created_at": now or datetime.now(UTC),
            "created_by": BUILTIN_ACTOR,
        },
    )
    return active_scheme(conn)


def store_version(conn: Connection, text: str, scheme: Scheme, *, actor: str, now: datetime) -> int:
    """Store ``text`` as the next version (in the caller's write transaction); return it.

    The caller holds the scoring lease (:mod:`rfmflow.service.scoring_jobs`), so versions
    are not numbered concurrently.
    """
    ensure_active_scheme(conn, now=now)
    newest = conn.execute(sa.select(sa.func.max(scheme_versions.c.version))).scalar_one()
    version = int(newest or 0) + 1
    conn.execute(
        sa.insert(scheme_versions).values(
            version=version, name=scheme.name, yaml=text, created_at=now, created_by=actor
        )
    )
    return version


_LOC_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_PATH = r"(?:\(top level\)|[A-Za-z_]\w*(?:\[\d+\]|\.\w+)*(?: \([^)]*\))?(?:\[\d+\]|\.\w+)*)"
_PIECE = re.compile(rf"({_PATH}): ")
_SPLIT = re.compile(rf"; (?={_PATH}: )")


def scheme_error_details(err: SchemeError) -> list[dict[str, Any]]:
    """A scheme error as field errors: ``{"loc": ["body", "yaml", "segments", 2, "when"], ...}``.

    The core's messages read ``scheme 'name': <field path>: <reason>`` (several joined by
    ``; ``) or ``<source>: line L, column C: invalid YAML: ...``.
    """
    text = str(err)
    match = re.match(r"scheme '(?:[^']|'')*': ", text) or re.match(r'scheme "[^"]*": ', text)
    if match is None:
        return [{"loc": ["body", "yaml"], "msg": text, "type": "scheme_invalid"}]
    out: list[dict[str, Any]] = []
    for piece in _SPLIT.split(text[match.end() :]):
        found = _PIECE.match(piece)
        if found is None:
            out.append({"loc": ["body", "yaml"], "msg": piece, "type": "scheme_invalid"})
            continue
        path = re.sub(r" \([^)]*\)", "", found.group(1))
        loc: list[str | int] = ["body", "yaml"]
        if path != "(top level)":
            for name, index in _LOC_PART.findall(path):
                loc.append(int(index) if index else name)
        out.append({"loc": loc, "msg": piece[found.end() :], "type": "scheme_invalid"})
    return out
