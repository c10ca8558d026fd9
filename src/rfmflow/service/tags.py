"""Tags as objects: groups, manual tags people add and remove, rule tags the scheme decides.

Two kinds of tag (``tags.kind``), never mixed under one name:

- **rule** tags are the scheme's ``tags:`` rules. :func:`sync_rule_tags` makes the
  ``customer_tags`` rows of kind rule equal to what ``customer_scores.tags`` says, with
  overwrite semantics: a customer gets the tag when its rule holds, keeps it (one row, its
  first ``added_at``) while it holds, and loses it when it no longer does. Full runs sync
  everyone; live re-scores sync the customers of the event. The scheme's tags are
  registered in ``tags`` (and their groups in ``tag_groups``); a tag a newer scheme no
  longer defines is removed from everyone and unregistered. People cannot add or remove
  a rule tag (:class:`TagConflict`).
- **manual** tags are created by an admin (:func:`create_tag`) and added or removed by
  people (API, CLI, CSV import) with :func:`change_tags`; rules never touch them. A manual
  tag's name may not be a rule tag's. In an **exclusive** group a customer holds at most one
  manual tag of the group: adding another replaces it (recorded as removed + added).

Every add and remove, by a rule or a person, is a ``tag_changes`` row (the history and the
feed automations read); every change made by a person also writes one ``audit_log`` row per
request (counts in its details). All functions work inside the caller's transaction.

Names (tags and groups): 1–64 characters; letters and digits of any script, spaces and
``- _ : .``; starting and ending with a letter or digit. Names are case-sensitive, but a new
name equal to an existing one except for case is refused (``VIP`` and ``vip`` would be taken
for one tag). Rule tags keep the names their scheme gives them (which only exclude ``;``).

This module holds groups, tag definitions, manual changes and the reads; the rule sync is in
:mod:`rfmflow.service.tags_rules`, names, errors and the tag-write lock in
:mod:`rfmflow.service.tags_base`, CSV import and export in :mod:`rfmflow.service.tags_csv`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.service.db.tables import customer_tags, customers, tag_changes, tag_groups, tags
from rfmflow.service.tags_base import (
    CHUNK,
    MAX_CUSTOMER_ID,
    TagConflict,
    TagError,
    TagNotFound,
    audit,
    check_description,
    check_name,
    is_postgres,
    lock_tag_writes,
    remove_everywhere,
)
from rfmflow.service.tags_rules import SyncResult, sync_rule_tags

Action = Literal["add", "remove"]
Status = Literal["added", "removed", "unchanged", "duplicate", "rejected", "skipped"]


class TagRejected(TagError):
    """An all-or-nothing batch had rejected items; nothing was written."""

    def __init__(self, report: ChangeReport) -> None:
        bad = [r for r in report.results if r.status == "rejected"]
        first = bad[0]
        where = f"line {first.line}" if first.line is not None else f"item {first.index}"
        super().__init__(f"{len(bad)} rejected (first: {where}: {first.reason}); nothing was written")
        self.report = report


# --- groups ------------------------------------------------------------------------------------
def _group_out(row: Any, members: Sequence[str]) -> dict[str, Any]:
    return {
        "name": row.name,
        "description": row.description,
        "exclusive": bool(row.exclusive),
        "tags": sorted(members),
        "created_at": row.created_at.isoformat(),
        "created_by": row.created_by,
    }


def _members(conn: Connection, group: str | None = None) -> dict[str, list[str]]:
    query = sa.select(tags.c.group_name, tags.c.name).where(tags.c.group_name.is_not(None))
    if group is not None:
        query = query.where(tags.c.group_name == group)
    out: dict[str, list[str]] = {}
    for g, name in conn.execute(query):
        out.setdefault(str(g), []).append(str(name))
    return out


def list_groups(conn: Connection) -> list[dict[str, Any]]:
    members = _members(conn)
    rows = conn.execute(sa.select(tag_groups).order_by(tag_groups.c.name)).all()
    return [_group_out(r, members.get(r.name, [])) for r in rows]


def get_group(conn: Connection, name: str) -> dict[str, Any]:
    row = conn.execute(sa.select(tag_groups).where(tag_groups.c.name == name)).first()
    if row is None:
        raise TagNotFound(f"no tag group {name!r}")
    return _group_out(row, _members(conn, name).get(name, []))


def _names_taken(conn: Connection, table: sa.Table, name: str) -> str | None:
    """The stored name equal to ``name`` ignoring case, if any."""
    folded = name.casefold()
    for (existing,) in conn.execute(sa.select(table.c.name)):
        if str(existing).casefold() == folded:
            return str(existing)
    return None


def create_group(
    conn: Connection, name: str, *, description: str = "", exclusive: bool = False, actor: str, at: datetime
) -> dict[str, Any]:
    lock_tag_writes(conn)
    name = check_name(name, "group")
    description = check_description(description)
    taken = _names_taken(conn, tag_groups, name)
    if taken is not None:
        raise TagConflict(f"tag group {taken!r} already exists", loc=("name",))
    conn.execute(
        sa.insert(tag_groups).values(
            name=name, description=description, exclusive=exclusive, created_at=at, created_by=actor
        )
    )
    audit(conn, at, actor, "tag_group.create", f"tag_group:{name}", {"exclusive": exclusive})
    return get_group(conn, name)


def _rule_members(conn: Connection, group: str) -> list[str]:
    return list(
        conn.execute(
            sa.select(tags.c.name)
            .where(tags.c.group_name == group, tags.c.kind == "rule")
            .order_by(tags.c.name)
        ).scalars()
    )


def update_group(
    conn: Connection,
    name: str,
    *,
    description: str | None = None,
    exclusive: bool | None = None,
    actor: str,
    at: datetime,
) -> dict[str, Any]:
    """Change a group's description or exclusivity. Making it exclusive is refused while it
    holds rule tags (rules decide those) or while a customer holds two of its tags."""
    lock_tag_writes(conn)
    row = conn.execute(sa.select(tag_groups).where(tag_groups.c.name == name).with_for_update()).first()
    if row is None:
        raise TagNotFound(f"no tag group {name!r}")
    changes: dict[str, Any] = {}
    if description is not None:
        changes["description"] = check_description(description)
    if exclusive is not None and exclusive != bool(row.exclusive):
        if exclusive:
            rules = _rule_members(conn, name)
            if rules:
                raise TagConflict(
                    f"group {name!r} holds rule tags ({', '.join(rules)}); rules decide those, so the "
                    "group cannot be exclusive",
                    loc=("exclusive",),
                )
            ct = customer_tags.c
            doubled = conn.execute(
                sa.select(sa.func.count()).select_from(
                    sa.select(ct.customer_id)
                    .join(tags, tags.c.name == ct.tag)
                    .where(tags.c.group_name == name)
                    .group_by(ct.customer_id)
                    .having(sa.func.count() > 1)
                    .subquery()
                )
            ).scalar_one()
            if doubled:
                raise TagConflict(
                    f"{doubled} customers hold more than one tag of group {name!r}; remove the extra tags "
                    "before making it exclusive",
                    loc=("exclusive",),
                )
        changes["exclusive"] = exclusive
    if changes:
        conn.execute(sa.update(tag_groups).where(tag_groups.c.name == name).values(**changes))
        audit(conn, at, actor, "tag_group.update", f"tag_group:{name}", changes)
    return get_group(conn, name)


def delete_group(conn: Connection, name: str, *, actor: str, at: datetime) -> None:
    """Delete an empty group (409 while tags belong to it)."""
    lock_tag_writes(conn)
    row = conn.execute(sa.select(tag_groups).where(tag_groups.c.name == name).with_for_update()).first()
    if row is None:
        raise TagNotFound(f"no tag group {name!r}")
    members = _members(conn, name).get(name, [])
    if members:
        raise TagConflict(
            f"group {name!r} still holds {len(members)} tags ({', '.join(sorted(members)[:10])}); "
            "delete them or change the scheme first"
        )
    conn.execute(sa.delete(tag_groups).where(tag_groups.c.name == name))
    audit(conn, at, actor, "tag_group.delete", f"tag_group:{name}", {})


# --- tag definitions ---------------------------------------------------------------------------
def _tag_out(row: Any, count: int) -> dict[str, Any]:
    return {
        "name": row.name,
        "kind": row.kind,
        "group": row.group_name,
        "description": row.description,
        "customers": count,
        "created_at": row.created_at.isoformat(),
        "created_by": row.created_by,
    }


def _holders(conn: Connection, name: str | None = None) -> dict[str, int]:
    ct = customer_tags.c
    query = sa.select(ct.tag, sa.func.count()).group_by(ct.tag)
    if name is not None:
        query = query.where(ct.tag == name)
    return {str(t): int(n) for t, n in conn.execute(query)}


def list_tags(conn: Connection, *, kind: str | None = None, group: str | None = None) -> list[dict[str, Any]]:
    """Every tag with its kind, group, description and how many customers hold it."""
    query = sa.select(tags).order_by(tags.c.kind.desc(), tags.c.name)  # rule, then manual
    if kind is not None:
        query = query.where(tags.c.kind == kind)
    if group is not None:
        query = query.where(tags.c.group_name == group)
    counts = _holders(conn)
    return [_tag_out(r, counts.get(r.name, 0)) for r in conn.execute(query)]


def get_tag(conn: Connection, name: str) -> dict[str, Any]:
    row = conn.execute(sa.select(tags).where(tags.c.name == name)).first()
    if row is None:
        raise TagNotFound(f"no tag {name!r}")
    return _tag_out(row, _holders(conn, name).get(name, 0))


def create_tag(
    conn: Connection,
    name: str,
    *,
    group: str | None = None,
    description: str = "",
    actor: str,
    at: datetime,
    write_audit: bool = True,
) -> dict[str, Any]:
    """Create a manual tag (optionally in an existing group)."""
    lock_tag_writes(conn)
    name = check_name(name)
    description = check_description(description)
    existing = conn.execute(sa.select(tags.c.name, tags.c.kind).where(tags.c.name == name)).first()
    if existing is not None and existing.kind == "rule":
        raise TagConflict(
            f"{name!r} is a rule tag of the scheme; a manual tag may not take its name", loc=("name",)
        )
    taken = _names_taken(conn, tags, name)
    if taken is not None:
        raise TagConflict(f"tag {taken!r} already exists", loc=("name",))
    if group is not None:
        found = conn.execute(
            sa.select(tag_groups.c.name).where(tag_groups.c.name == group).with_for_update(read=True)
        ).first()
        if found is None:
            raise TagError(f"no tag group {group!r} (create it first)", loc=("group",))
    conn.execute(
        sa.insert(tags).values(
            name=name,
            kind="manual",
            group_name=group,
            description=description,
            created_at=at,
            created_by=actor,
        )
    )
    if write_audit:
        audit(conn, at, actor, "tag.create", f"tag:{name}", {"group": group})
    return get_tag(conn, name)


def delete_tag(conn: Connection, name: str, *, actor: str, at: datetime) -> int:
    """Delete a manual tag: it is removed from every customer holding it (each removal
    recorded); return how many held it."""
    lock_tag_writes(conn)
    row = conn.execute(sa.select(tags).where(tags.c.name == name).with_for_update()).first()
    if row is None:
        raise TagNotFound(f"no tag {name!r}")
    if row.kind == "rule":
        raise TagConflict(
            f"{name!r} is a rule tag: the scheme defines it (remove it from the scheme to retire it)"
        )
    removed = remove_everywhere(conn, [name], kind="manual", at=at, actor=actor, run_id=None)
    conn.execute(sa.delete(tags).where(tags.c.name == name))
    audit(conn, at, actor, "tag.delete", f"tag:{name}", {"removed_from": removed})
    return removed


# --- manual changes ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TagOp:
    """Add or remove one tag of one customer (``line``: where it came from in a file)."""

    customer_id: str
    tag: str
    action: Action = "add"
    line: int | None = None


@dataclass
class OpResult:
    index: int
    customer_id: str
    tag: str
    action: str
    status: Status
    reason: str | None = None
    code: int | None = None
    """For a rejected op, the HTTP status it answers alone: 404, 409 or 422."""
    replaced: list[str] = field(default_factory=list)
    line: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "customer_id": self.customer_id,
            "tag": self.tag,
            "action": self.action,
            "status": self.status,
        }
        if self.line is not None:
            out["line"] = self.line
        if self.reason is not None:
            out["reason"] = self.reason
        if self.replaced:
            out["replaced"] = self.replaced
        return out


@dataclass
class ChangeReport:
    results: list[OpResult]
    created: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in ("added", "removed", "unchanged", "duplicate", "rejected", "skipped")}
        for r in self.results:
            out[r.status] += 1
        out["replaced"] = sum(len(r.replaced) for r in self.results)
        return out


@dataclass(frozen=True)
class _TagInfo:
    kind: str
    group: str | None
    exclusive: bool


def _tag_info(conn: Connection, names: Iterable[str]) -> dict[str, _TagInfo]:
    wanted = sorted(set(names))
    out: dict[str, _TagInfo] = {}
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        query = (
            sa.select(tags.c.name, tags.c.kind, tags.c.group_name, tag_groups.c.exclusive)
            .select_from(tags.outerjoin(tag_groups, tag_groups.c.name == tags.c.group_name))
            .where(tags.c.name.in_(chunk))
        )
        for name, kind, group, exclusive in conn.execute(query):
            out[str(name)] = _TagInfo(str(kind), group, bool(exclusive))
    return out


def _existing_customers(conn: Connection, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` are customers; on PostgreSQL their rows are locked (in id order) so
    concurrent tag changes of one customer take turns (exclusive groups stay exclusive)."""
    wanted = sorted(set(ids))
    found: set[str] = set()
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        query = sa.select(customers.c.customer_id).where(customers.c.customer_id.in_(chunk))
        if is_postgres(conn):
            query = query.order_by(customers.c.customer_id).with_for_update(key_share=True)
        found.update(str(c) for c in conn.execute(query).scalars())
    return found


def _held(conn: Connection, ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """Per customer, the tags held and their kind."""
    wanted = sorted(set(ids))
    out: dict[str, dict[str, str]] = {}
    ct = customer_tags.c
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        for cid, tag, kind in conn.execute(
            sa.select(ct.customer_id, ct.tag, ct.kind).where(ct.customer_id.in_(chunk))
        ):
            out.setdefault(str(cid), {})[str(tag)] = str(kind)
    return out


def _reject(op: TagOp, index: int, reason: str, code: int) -> OpResult:
    return OpResult(index, op.customer_id, op.tag, op.action, "rejected", reason, code, line=op.line)


def change_tags(
    conn: Connection,
    ops: Sequence[TagOp],
    *,
    actor: str,
    at: datetime,
    atomic: bool = True,
    create_missing: bool = False,
    audit_action: str | None,
    audit_target: str = "",
    audit_details: dict[str, Any] | None = None,
    validate_only: bool = False,
    seen: set[tuple[str, str, str]] | None = None,
) -> ChangeReport:
    """Apply manual adds and removes in order, as one request (one audit row).

    Each op is answered: ``added``, ``removed``, ``unchanged`` (already held / not held),
    ``duplicate`` (the same op earlier in the request) or ``rejected`` (unknown customer or
    tag, a rule tag, a bad name). ``atomic``: any rejected op raises :class:`TagRejected` and
    nothing is written; otherwise the others are applied. ``create_missing``: unknown tag
    names (valid ones) are created as manual tags without a group. Only the net change of
    each (customer, tag) is written, so an add followed by a remove of the same tag leaves
    nothing behind.

    ``validate_only``: only check, write nothing, return the rejected and duplicate ops.
    ``seen``: the ops of earlier chunks of the same request (their repeats are duplicates).
    ``audit_action`` None: the caller writes the request's audit row.
    """
    results: list[OpResult | None] = [None] * len(ops)
    known_customers = _existing_customers(conn, (op.customer_id for op in ops if op.customer_id))
    lock_tag_writes(conn)
    info = _tag_info(conn, (op.tag for op in ops))
    to_create: dict[str, str] = {}  # casefolded -> name
    folded: dict[str, str] | None = None
    seen = set() if seen is None else seen
    valid: list[tuple[int, TagOp]] = []
    for i, op in enumerate(ops):
        if op.action not in ("add", "remove"):
            results[i] = _reject(op, i, f"action must be add or remove, not {op.action!r}", 422)
            continue
        if not op.customer_id or len(op.customer_id) > MAX_CUSTOMER_ID:
            results[i] = _reject(op, i, f"customer_id must be 1 to {MAX_CUSTOMER_ID} characters", 422)
            continue
        tag = info.get(op.tag)
        if tag is None and op.tag not in to_create.values():
            try:
                check_name(op.tag)
            except TagError as err:
                results[i] = _reject(op, i, err.message, 422)
                continue
            if folded is None:
                folded = {str(n).casefold(): str(n) for n in conn.execute(sa.select(tags.c.name)).scalars()}
            similar = folded.get(op.tag.casefold()) or to_create.get(op.tag.casefold())
            if not create_missing or op.action == "remove" or similar is not None:
                hint = f"; did you mean {similar!r}?" if similar is not None else " (create it first)"
                results[i] = _reject(op, i, f"no tag {op.tag!r}{hint}", 404)
                continue
            to_create[op.tag.casefold()] = op.tag
        if tag is not None and tag.kind == "rule":
            results[i] = _reject(
                op, i, f"{op.tag!r} is a rule tag: the scheme's rule adds and removes it, not people", 409
            )
            continue
        if op.customer_id not in known_customers:
            results[i] = _reject(op, i, f"no customer {op.customer_id!r}", 404)
            continue
        key = (op.customer_id, op.tag, op.action)
        if key in seen:
            results[i] = OpResult(i, op.customer_id, op.tag, op.action, "duplicate", line=op.line)
            continue
        seen.add(key)
        valid.append((i, op))
    if validate_only:
        return ChangeReport([r for r in results if r is not None])
    if atomic and any(r is not None and r.status == "rejected" for r in results):
        raise TagRejected(ChangeReport([r for r in results if r is not None]))

    created = list(to_create.values())
    for name in created:
        create_tag(conn, name, actor=actor, at=at, write_audit=False)
        info[name] = _TagInfo("manual", None, False)
    before = _held(conn, {op.customer_id for _, op in valid})
    info.update(_tag_info(conn, {t for held in before.values() for t in held} - info.keys()))
    state = {cid: dict(held) for cid, held in before.items()}
    for i, op in valid:
        held = state.setdefault(op.customer_id, {})
        tag = info[op.tag]
        status: Status
        replaced: list[str] = []
        if op.action == "add" and op.tag not in held:
            if tag.exclusive and tag.group is not None:
                replaced = sorted(
                    t
                    for t, kind in held.items()
                    if kind == "manual" and t in info and info[t].group == tag.group
                )
                for t in replaced:
                    del held[t]
            held[op.tag] = "manual"
            status = "added"
        elif op.action == "remove" and op.tag in held:
            del held[op.tag]
            status = "removed"
        else:
            status = "unchanged"
        results[i] = OpResult(i, op.customer_id, op.tag, op.action, status, replaced=replaced, line=op.line)
    report = ChangeReport([r for r in results if r is not None], created=created)

    removed = sorted((cid, t) for cid, held in before.items() for t in held if t not in state.get(cid, {}))
    added = sorted((cid, t) for cid, held in state.items() for t in held if t not in before.get(cid, {}))
    _write_manual(conn, removed, added, at=at, actor=actor)
    if audit_action is not None:
        details = {**(audit_details or {}), **report.counts()}
        if created:
            details["created_tags"] = created
        audit(conn, at, actor, audit_action, audit_target, details)
    return report


def _write_manual(
    conn: Connection,
    removed: Sequence[tuple[str, str]],
    added: Sequence[tuple[str, str]],
    *,
    at: datetime,
    actor: str,
) -> None:
    ct = customer_tags.c
    for start in range(0, len(removed), CHUNK):
        chunk = removed[start : start + CHUNK]
        conn.execute(sa.delete(customer_tags).where(sa.tuple_(ct.customer_id, ct.tag).in_(chunk)))
    if added:
        conn.execute(
            sa.insert(customer_tags),
            [
                {"customer_id": c, "tag": t, "kind": "manual", "added_at": at, "added_by": actor}
                for c, t in added
            ],
        )
    changes = [
        {
            "customer_id": c,
            "tag": t,
            "change": "removed",
            "kind": "manual",
            "at": at,
            "actor": actor,
            "run_id": None,
        }
        for c, t in removed
    ] + [
        {
            "customer_id": c,
            "tag": t,
            "change": "added",
            "kind": "manual",
            "at": at,
            "actor": actor,
            "run_id": None,
        }
        for c, t in added
    ]
    changes.sort(key=lambda r: (r["customer_id"], r["change"] != "removed", r["tag"]))
    if changes:
        conn.execute(sa.insert(tag_changes), changes)


# --- reads -------------------------------------------------------------------------------------
def customer_known(conn: Connection, customer_id: str) -> bool:
    found = conn.execute(
        sa.select(customers.c.customer_id).where(customers.c.customer_id == customer_id)
    ).first()
    return found is not None


def tags_of(conn: Connection, customer_id: str) -> list[dict[str, Any]]:
    """The customer's current tags (rule tags first), with kind, group and who added them when."""
    ct = customer_tags.c
    rows = conn.execute(
        sa.select(ct.tag, ct.kind, ct.added_at, ct.added_by, tags.c.group_name)
        .select_from(customer_tags.outerjoin(tags, tags.c.name == ct.tag))
        .where(ct.customer_id == customer_id)
        .order_by(ct.kind.desc(), ct.tag)
    ).all()
    return [
        {
            "tag": r.tag,
            "kind": r.kind,
            "group": r.group_name,
            "added_at": r.added_at.isoformat(),
            "added_by": r.added_by,
        }
        for r in rows
    ]


def _change_out(r: Any) -> dict[str, Any]:
    return {
        "id": int(r.id),
        "customer_id": r.customer_id,
        "tag": r.tag,
        "change": r.change,
        "kind": r.kind,
        "at": r.at.isoformat(),
        "actor": r.actor,
        "run_id": r.run_id,
    }


def tag_history(conn: Connection, customer_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """The customer's tag changes, newest first."""
    t = tag_changes.c
    rows = conn.execute(
        sa.select(tag_changes).where(t.customer_id == customer_id).order_by(t.id.desc()).limit(limit)
    ).all()
    return [_change_out(r) for r in rows]


def changes_since(
    conn: Connection,
    since_id: int,
    *,
    limit: int,
    tag: str | None = None,
    customer_id: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Tag changes with an id above ``since_id``, oldest first, and the cursor to send next
    (the last id returned; ``since_id`` when there is nothing new).

    Writers of tags take turns (:func:`lock_tag_writes`; SQLite has one writer anyway), so
    ids become visible in order and a consumer following the cursor never skips a change.
    """
    t = tag_changes.c
    query = sa.select(tag_changes).where(t.id > since_id)
    if tag is not None:
        query = query.where(t.tag == tag)
    if customer_id is not None:
        query = query.where(t.customer_id == customer_id)
    rows = conn.execute(query.order_by(t.id).limit(limit)).all()
    out = [_change_out(r) for r in rows]
    return out, (out[-1]["id"] if out else since_id)


EXPORT_COLUMNS = ("customer_id", "tag", "kind", "added_at", "added_by")


def export_rows(
    conn: Connection, *, names: Sequence[str] = (), kind: str | None = None, batch: int = 5000
) -> Iterator[tuple[str, str, str, str, str]]:
    """``customer_tags`` rows (customer_id, tag, kind, added_at ISO, added_by) ordered by tag
    and customer, read in batches by key (no long-held cursor)."""
    ct = customer_tags.c
    after: tuple[str, str] | None = None
    while True:
        query = sa.select(ct.customer_id, ct.tag, ct.kind, ct.added_at, ct.added_by)
        if names:
            query = query.where(ct.tag.in_(list(names)))
        if kind is not None:
            query = query.where(ct.kind == kind)
        if after is not None:
            query = query.where(
                sa.or_(ct.tag > after[0], sa.and_(ct.tag == after[0], ct.customer_id > after[1]))
            )
        rows = conn.execute(query.order_by(ct.tag, ct.customer_id).limit(batch)).all()
        for r in rows:
            yield (r.customer_id, r.tag, r.kind, r.added_at.isoformat(), r.added_by)
        if len(rows) < batch:
            return
        after = (rows[-1].tag, rows[-1].customer_id)


__all__ = [
    "ChangeReport",
    "OpResult",
    "SyncResult",
    "TagConflict",
    "TagError",
    "TagNotFound",
    "TagOp",
    "TagRejected",
    "audit",
    "change_tags",
    "changes_since",
    "check_name",
    "create_group",
    "create_tag",
    "customer_known",
    "delete_group",
    "delete_tag",
    "export_rows",
    "get_group",
    "get_tag",
    "list_groups",
    "list_tags",
    "lock_tag_writes",
    "sync_rule_tags",
    "tag_history",
    "tags_of",
    "update_group",
]
