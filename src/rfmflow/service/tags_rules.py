"""Rule tags: :func:`sync_rule_tags` keeps ``customer_tags`` of kind rule equal to what the
scores' ``tags`` say (overwrite semantics), after full runs and live re-scores; the scheme's
tags are registered in ``tags`` (see :mod:`rfmflow.service.tags`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.core.scheme import Rule, Scheme
from rfmflow.service.db.store import insert_or_ignore
from rfmflow.service.db.tables import customer_scores, customer_tags, tag_changes, tag_groups, tags
from rfmflow.service.tags_base import (
    CHUNK,
    MAX_NAME,
    audit,
    is_postgres,
    lock_tag_writes,
    log,
    remove_everywhere,
)


@dataclass(frozen=True)
class SyncResult:
    """What :func:`sync_rule_tags` changed."""

    added: int = 0
    removed: int = 0
    registered: tuple[str, ...] = ()
    retired: tuple[str, ...] = ()


def _rule_group(rule: Rule) -> str | None:
    """The group a rule tag joins: its scheme group, none when that name does not fit a group
    name (over 64 characters; logged)."""
    if not rule.group:
        return None
    if len(rule.group) > MAX_NAME:
        log.warning(
            "rule tag without a group: the group name is over 64 characters", extra={"tag": rule.name}
        )
        return None
    return rule.group


def _register_rule_tags(
    conn: Connection, scheme: Scheme, *, at: datetime, actor: str, run_id: int | None, retire: bool
) -> tuple[list[str], list[str], int]:
    """Make ``tags`` hold the scheme's tags as kind rule (and their groups); with ``retire``
    unregister rule tags the scheme no longer defines. Returns (registered, retired, removals)."""
    wanted = {t.name: t for t in scheme.tags}
    mine = tags.c.name.in_(list(wanted))
    query = sa.select(tags).where(sa.or_(tags.c.kind == "rule", mine) if retire else mine)
    stored = {str(r.name): r for r in conn.execute(query)}
    registered: list[str] = []
    removals = 0
    groups_needed = {g for g in (_rule_group(t) for t in scheme.tags) if g is not None}
    if groups_needed:
        have = set(
            conn.execute(
                sa.select(tag_groups.c.name).where(tag_groups.c.name.in_(sorted(groups_needed)))
            ).scalars()
        )
        for g in sorted(groups_needed - have):
            group_row = {
                "name": g,
                "description": "",
                "exclusive": False,
                "created_at": at,
                "created_by": actor,
            }
            insert_or_ignore(conn, tag_groups, group_row)  # live re-scores may race to register it
    for name, rule in wanted.items():
        group = _rule_group(rule)
        row = stored.get(name)
        if row is None:
            values = {
                "name": name,
                "kind": "rule",
                "group_name": group,
                "description": rule.description,
                "created_at": at,
                "created_by": actor,
            }
            if insert_or_ignore(conn, tags, values):
                registered.append(name)
            continue
        if row.kind == "manual":
            # The scheme takes the name over: people's assignments go (recorded), the rule decides.
            taken = remove_everywhere(conn, [name], kind="manual", at=at, actor=actor, run_id=run_id)
            conn.execute(
                sa.update(tags)
                .where(tags.c.name == name)
                .values(kind="rule", group_name=group, description=rule.description)
            )
            audit(conn, at, actor, "tag.takeover", f"tag:{name}", {"removed_from": taken})
            registered.append(name)
            continue
        if row.group_name != group or row.description != rule.description:
            conn.execute(
                sa.update(tags)
                .where(tags.c.name == name)
                .values(group_name=group, description=rule.description)
            )
    retired: list[str] = []
    if retire:
        retired = sorted(n for n, r in stored.items() if r.kind == "rule" and n not in wanted)
        if retired:
            removals = remove_everywhere(conn, retired, kind="rule", at=at, actor=actor, run_id=run_id)
            conn.execute(sa.delete(tags).where(tags.c.name.in_(retired)))
    return registered, retired, removals


_DIFF = {"sqlite": "temp.rfmflow_tag_diff", "postgresql": "pg_temp.rfmflow_tag_diff"}
_DIFF_DDL = (
    "CREATE TEMPORARY TABLE rfmflow_tag_diff (customer_id VARCHAR(256) NOT NULL, tag VARCHAR(64) NOT NULL, "
    "change VARCHAR(8) NOT NULL)"
)
_CAND = {"sqlite": "temp.rfmflow_tag_candidates", "postgresql": "pg_temp.rfmflow_tag_candidates"}
_CAND_DDL = "CREATE TEMPORARY TABLE rfmflow_tag_candidates (customer_id VARCHAR(256) PRIMARY KEY)"
MASK_BITS = 62
"""Rule tags compared per pass: one bit each in a BIGINT."""


def _contains(conn: Connection, haystack: str, needle: str) -> str:
    """SQL: the ';'-list ``haystack`` holds the item ``needle`` (exact, case-sensitive)."""
    func = "strpos" if is_postgres(conn) else "instr"
    return f"{func}(';' || {haystack} || ';', ';' || {needle} || ';') > 0"


def _find_candidates(conn: Connection, cand: str, params: dict[str, str]) -> None:
    """Fill ``cand`` with the customers whose rule tags (of the names in ``params``) differ
    from their scores' ``tags``: one pass over ``customer_scores`` comparing two bit masks per
    customer (the tags its scores name, the tags it holds), so a run where few tags move
    costs a scan, not a comparison per (customer, tag)."""
    keys = list(params)
    want = " + ".join(
        f"(CASE WHEN {_contains(conn, 'cs.tags', ':' + k)} THEN {1 << i} ELSE 0 END)"
        for i, k in enumerate(keys)
    )
    bits = "CASE ct.tag " + " ".join(f"WHEN :{k} THEN {1 << i}" for i, k in enumerate(keys)) + " ELSE 0 END"
    listed = ", ".join(f":{k}" for k in keys)
    if is_postgres(conn):  # a hash full join: also finds holders without scores
        sql = (
            f"INSERT INTO {cand} (customer_id) SELECT COALESCE(cs.customer_id, h.customer_id) "
            "FROM customer_scores AS cs FULL JOIN "
            f"(SELECT ct.customer_id, SUM({bits}) AS have FROM customer_tags AS ct "
            f"WHERE ct.tag IN ({listed}) GROUP BY ct.customer_id) AS h ON h.customer_id = cs.customer_id "
            f"WHERE COALESCE({want}, 0) <> COALESCE(h.have, 0)"
        )
        conn.execute(sa.text(sql), params)
        conn.exec_driver_sql(f"ANALYZE {cand}")
        return
    have = f"(SELECT COALESCE(SUM({bits}), 0) FROM customer_tags AS ct WHERE ct.customer_id = cs.customer_id)"
    conn.execute(
        sa.text(
            f"INSERT INTO {cand} (customer_id) SELECT cs.customer_id FROM customer_scores AS cs "
            f"WHERE {want} <> {have}"
        ),
        params,
    )
    conn.execute(
        sa.text(
            f"INSERT OR IGNORE INTO {cand} (customer_id) SELECT DISTINCT ct.customer_id "
            f"FROM customer_tags AS ct WHERE ct.tag IN ({listed}) AND NOT EXISTS "
            "(SELECT 1 FROM customer_scores AS cs WHERE cs.customer_id = ct.customer_id)"
        ),
        params,
    )


FEW_CANDIDATES = 10_000
"""Up to this many customers differ: each is diffed with index lookups (a plan that does not
depend on the tables' statistics, stale right after a big sync); more: with joins."""


def _diff_candidates(conn: Connection, cand: str, diff: str, params: dict[str, str], *, few: bool) -> None:
    """The exact (customer, tag) adds and removes of the candidates, into ``diff``."""
    cte = "WITH names(name) AS (VALUES " + ", ".join(f"(:{k})" for k in params) + ") "
    holds = _contains(conn, "cs.tags", "n.name")
    still = _contains(conn, "cs.tags", "ct.tag")
    if few:  # per candidate and tag: is it named by the scores, is it held (two index lookups)
        scored = (
            "(SELECT COUNT(*) FROM customer_scores AS cs WHERE cs.customer_id = c.customer_id "
            f"AND cs.tags IS NOT NULL AND {holds})"
        )
        held = (
            "(SELECT COUNT(*) FROM customer_tags AS ct WHERE ct.customer_id = c.customer_id "
            "AND ct.tag = n.name)"
        )
        pairs = f"FROM {cand} AS c CROSS JOIN names AS n"
        adds = f"SELECT c.customer_id, n.name, 'added' {pairs} WHERE {scored} > 0 AND {held} = 0"
        removes = f"SELECT c.customer_id, n.name, 'removed' {pairs} WHERE {held} > 0 AND {scored} = 0"
    else:  # CROSS JOIN: SQLite keeps this order (it knows nothing of the temporary table's size)
        adds = (
            f"SELECT cs.customer_id, n.name, 'added' FROM {cand} AS c CROSS JOIN customer_scores AS cs "
            f"CROSS JOIN names AS n WHERE cs.customer_id = c.customer_id AND cs.tags IS NOT NULL AND {holds} "
            "AND NOT EXISTS (SELECT 1 FROM customer_tags AS ct WHERE ct.customer_id = cs.customer_id "
            "AND ct.tag = n.name)"
        )
        removes = (
            f"SELECT ct.customer_id, ct.tag, 'removed' FROM {cand} AS c CROSS JOIN customer_tags AS ct "
            "WHERE ct.customer_id = c.customer_id AND ct.tag IN (SELECT name FROM names) "
            "AND NOT EXISTS (SELECT 1 FROM customer_scores AS cs "
            f"WHERE cs.customer_id = ct.customer_id AND cs.tags IS NOT NULL AND {still})"
        )
    for select in (adds, removes):
        conn.execute(sa.text(f"{cte}INSERT INTO {diff} (customer_id, tag, change) {select}"), params)


def sync_rule_tags(
    conn: Connection,
    scheme: Scheme,
    *,
    at: datetime,
    actor: str,
    run_id: int | None = None,
    customer_ids: Iterable[str] | None = None,
) -> SyncResult:
    """Make the rule tags in ``customer_tags`` equal what ``customer_scores.tags`` says (see
    the module doc), recording every add and remove in ``tag_changes``.

    Without ``customer_ids`` (after a full run) every customer is compared in one pass
    (:func:`_find_candidates`), the few that differ are diffed per tag and written with
    set-based statements, and rule tags the scheme no longer defines are retired; with them
    (after a live re-score) only those customers are synced. Run it inside the write
    transaction that wrote the scores.
    """
    if customer_ids is not None:
        return _sync_some(conn, scheme, sorted(set(customer_ids)), at=at, actor=actor, run_id=run_id)
    lock_tag_writes(conn)
    registered, retired, retired_removals = _register_rule_tags(
        conn, scheme, at=at, actor=actor, run_id=run_id, retire=True
    )
    names = [t.name for t in scheme.tags]
    if not names:
        return SyncResult(0, retired_removals, tuple(registered), tuple(retired))
    dialect = conn.dialect.name
    diff, cand = _DIFF[dialect], _CAND[dialect]
    for table in (diff, cand):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    conn.exec_driver_sql(_DIFF_DDL)
    conn.exec_driver_sql(_CAND_DDL)
    try:
        for start in range(0, len(names), MASK_BITS):
            params = {f"n{i}": name for i, name in enumerate(names[start : start + MASK_BITS])}
            conn.exec_driver_sql(f"DELETE FROM {cand}")
            _find_candidates(conn, cand, params)
            differ = int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {cand}").scalar_one())
            if differ:
                _diff_candidates(conn, cand, diff, params, few=differ <= FEW_CANDIDATES)
        counts: dict[str, int] = dict(
            conn.exec_driver_sql(f"SELECT change, COUNT(*) FROM {diff} GROUP BY change").all()
        )
        added, removed = int(counts.get("added", 0)), int(counts.get("removed", 0))
        if added or removed:
            _apply_diff(conn, diff, at=at, actor=actor, run_id=run_id, removed=removed)
        if is_postgres(conn) and added + removed > FEW_CANDIDATES:
            conn.exec_driver_sql("ANALYZE customer_tags")  # later plans (the next sync's) see its new size
    finally:
        for table in (diff, cand):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    return SyncResult(added, removed + retired_removals, tuple(registered), tuple(retired))


def _apply_diff(
    conn: Connection, diff: str, *, at: datetime, actor: str, run_id: int | None, removed: int
) -> None:
    if is_postgres(conn):
        conn.exec_driver_sql(f"ANALYZE {diff}")
    conn.execute(
        sa.text(
            "INSERT INTO tag_changes (customer_id, tag, change, kind, at, actor, run_id) "
            f"SELECT customer_id, tag, change, 'rule', :at, :actor, :run_id FROM {diff} "
            "ORDER BY customer_id, change DESC, tag"
        ).bindparams(
            sa.bindparam("at", type_=tag_changes.c.at.type),
            sa.bindparam("run_id", type_=sa.Integer()),
        ),
        {"at": at, "actor": actor, "run_id": run_id},
    )
    if removed:
        conn.exec_driver_sql(
            f"DELETE FROM customer_tags WHERE (customer_id, tag) IN "
            f"(SELECT customer_id, tag FROM {diff} WHERE change = 'removed')"
        )
    conn.execute(
        sa.text(
            "INSERT INTO customer_tags (customer_id, tag, kind, added_at, added_by) "
            f"SELECT customer_id, tag, 'rule', :at, :actor FROM {diff} WHERE change = 'added' "
            "ORDER BY customer_id, tag"
        ).bindparams(sa.bindparam("at", type_=customer_tags.c.added_at.type)),
        {"at": at, "actor": actor},
    )


def _registered(conn: Connection, scheme: Scheme) -> bool:
    """Whether ``tags`` holds the scheme's tags as rule tags with their groups and descriptions."""
    wanted = {t.name: (_rule_group(t), t.description) for t in scheme.tags}
    rows = conn.execute(
        sa.select(tags.c.name, tags.c.kind, tags.c.group_name, tags.c.description).where(
            tags.c.name.in_(list(wanted))
        )
    ).all()
    found = {str(r.name): (r.kind, r.group_name, r.description) for r in rows}
    return all(found.get(n) == ("rule", g, d) for n, (g, d) in wanted.items())


def _sync_some(
    conn: Connection, scheme: Scheme, ids: Sequence[str], *, at: datetime, actor: str, run_id: int | None
) -> SyncResult:
    """The live path: a few customers, diffed in Python, written in bulk. A scheme without
    tags has nothing to sync: the run that made it active retired the older rule tags."""
    if not ids or not scheme.tags:
        return SyncResult()
    names = [t.name for t in scheme.tags]
    registered: list[str] = []
    if not _registered(conn, scheme):
        lock_tag_writes(conn)
        registered, _retired, _n = _register_rule_tags(
            conn, scheme, at=at, actor=actor, run_id=run_id, retire=False
        )
    allowed = set(names)
    removed: list[tuple[str, str]] = []
    added: list[tuple[str, str]] = []
    cs, ct = customer_scores.c, customer_tags.c
    for start in range(0, len(ids), CHUNK):
        chunk = list(ids[start : start + CHUNK])
        want = {
            (str(cid), t)
            for cid, text in conn.execute(sa.select(cs.customer_id, cs.tags).where(cs.customer_id.in_(chunk)))
            for t in (text or "").split(";")
            if t in allowed
        }
        have = {
            (str(cid), str(tag))
            for cid, tag in conn.execute(
                sa.select(ct.customer_id, ct.tag).where(ct.customer_id.in_(chunk), ct.kind == "rule")
            )
        }
        removed += sorted(have - want)
        added += sorted(want - have)
    if removed or added:
        lock_tag_writes(conn)
    if removed:
        for start in range(0, len(removed), CHUNK):
            chunk_pairs = removed[start : start + CHUNK]
            conn.execute(sa.delete(customer_tags).where(sa.tuple_(ct.customer_id, ct.tag).in_(chunk_pairs)))
    if added:
        conn.execute(
            sa.insert(customer_tags),
            [
                {"customer_id": c, "tag": t, "kind": "rule", "added_at": at, "added_by": actor}
                for c, t in added
            ],
        )
    changes = [
        {"customer_id": c, "tag": t, "change": ch, "kind": "rule", "at": at, "actor": actor, "run_id": run_id}
        for ch, pairs in (("removed", removed), ("added", added))
        for c, t in pairs
    ]
    changes.sort(key=lambda r: (r["customer_id"], r["change"] != "removed", r["tag"]))
    if changes:
        conn.execute(sa.insert(tag_changes), changes)
    return SyncResult(len(added), len(removed), tuple(registered))


__all__ = ["FEW_CANDIDATES", "MASK_BITS", "SyncResult", "sync_rule_tags"]
