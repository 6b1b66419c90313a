"""Deleting deals, tickets, accounts, contacts, leads, comments, pipelines and
stages, for every caller.

One function serves every type, so every caller (today the JSON API) gets
the same checks:

- the user needs ``<type>:delete`` in their scope for the record, and a
  record outside their read scope is NotFound, as elsewhere. Pipelines and
  stages belong to no one, and only administrators delete them;
- with ``expected_version`` set, a record at another version is not
  deleted (VersionMismatch, 412 in the API);
- an account or contact that other records still point to is not deleted
  (HasDependents, 409): a CRM must not make an account's deals and tickets
  lose their customer by accident, so the caller moves or deletes those
  first. Likewise a pipeline or stage that deals are still in. A deal's or
  ticket's comments and a pipeline's stages go with it, each one audited;
- the event carries every column's value before the delete, which the
  audit row is written from. It goes to the streams of the record's pages
  and boards, so open boards take the card off, and an open page of the
  record shows the notice of a record that left the viewer's scope. A
  pipeline's or stage's delete also sends ``board.reload`` to the
  pipeline's board, as a change to them does.

The row is locked while these checks run, so no edit commits in between.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from litestar.exceptions import PermissionDeniedException
from piccolo.table import Table

from app.access.permissions import Access
from app.access.scopes import comment_permits, owner_teams_sql, require_record
from app.accounts.tables import Account
from app.audit.service import DELETE, snapshot
from app.comments.tables import Comment
from app.contacts.tables import Contact
from app.deals.tables import Deal, Pipeline, Stage
from app.encryption.columns import encrypted_columns
from app.errors import NotFound, VersionMismatch
from app.events.service import ChangeSet, change_set
from app.leads.service import lead_topics
from app.leads.tables import Lead
from app.tickets.tables import Ticket

logger = logging.getLogger(__name__)


class HasDependents(Exception):
    """Other records still refer to the record, so it was not deleted."""

    def __init__(
        self, record_type: str, record_id: int, dependents: dict[str, int]
    ) -> None:
        self.record_type = record_type
        self.record_id = record_id
        self.dependents = dependents
        listed = ", ".join(f"{count} {name}" for name, count in dependents.items())
        super().__init__(
            f"{record_type.capitalize()} {record_id} is still referred to by "
            f"{listed}. Delete them or move them to another {record_type} first."
        )


@dataclass(frozen=True)
class Dependent:
    """Rows of ``table`` whose ``column`` refers to the record, named ``label``."""

    label: str
    table: str
    column: str


@dataclass(frozen=True)
class Children:
    """Rows of type ``object_type`` whose ``column`` refers to the record.

    They are deleted with it, each with its own delete event.
    """

    object_type: str
    column: str


@dataclass(frozen=True)
class Deletable:
    """A record type that may be deleted, and what a delete touches."""

    object_type: str
    table: type[Table]
    # The streams the delete event goes to, from the row before the delete.
    topics: Callable[[dict[str, Any]], list[str]]
    # Records that must not lose this one: while any exist, no delete.
    dependents: tuple[Dependent, ...] = ()
    # A deal's or ticket's comments, a pipeline's stages.
    children: Children | None = None
    # The pipeline whose open boards reload after the delete.
    board: Callable[[dict[str, Any]], int] | None = None
    # Pipelines and stages have no owner: only administrators delete them.
    admin_only: bool = False


def comment_parent(row: dict[str, Any]) -> tuple[str, int]:
    if row.get("deal") is not None:
        return "deal", row["deal"]
    return "ticket", row["ticket"]


def comment_topics(row: dict[str, Any]) -> list[str]:
    parent_type, parent_id = comment_parent(row)
    return [f"{parent_type}:{parent_id}"]


def stage_topics(row: dict[str, Any]) -> list[str]:
    return [f"pipeline:{row['pipeline']}"]


def contact_topics(row: dict[str, Any]) -> list[str]:
    topics = [f"contact:{row['id']}"]
    if row.get("account") is not None:
        topics.append(f"account:{row['account']}")
    return topics


DELETABLE: dict[str, Deletable] = {
    kind.object_type: kind
    for kind in (
        Deletable(
            "deal",
            Deal,
            lambda row: [f"pipeline:{row['pipeline']}", f"deal:{row['id']}"],
            children=Children("comment", "deal"),
        ),
        Deletable(
            "ticket",
            Ticket,
            lambda row: ["tickets", f"ticket:{row['id']}"],
            children=Children("comment", "ticket"),
        ),
        Deletable(
            "account",
            Account,
            lambda row: [f"account:{row['id']}"],
            dependents=(
                Dependent("contacts", "contact", "account"),
                Dependent("deals", "deal", "account"),
                Dependent("tickets", "ticket", "account"),
                Dependent("child accounts", "account", "parent"),
            ),
        ),
        Deletable(
            "contact",
            Contact,
            contact_topics,
            dependents=(
                Dependent("deals", "deal", "contact"),
                Dependent("tickets", "ticket", "requester"),
            ),
        ),
        # A lead's activities go with it (ON DELETE CASCADE); what it was
        # converted into stays.
        Deletable("lead", Lead, lambda row: lead_topics(row["id"])),
        Deletable("comment", Comment, comment_topics),
        # A pipeline's forecast quotas go with it (ON DELETE CASCADE).
        Deletable(
            "pipeline",
            Pipeline,
            lambda row: [f"pipeline:{row['id']}"],
            dependents=(Dependent("deals", "deal", "pipeline"),),
            children=Children("stage", "pipeline"),
            board=lambda row: int(row["id"]),
            admin_only=True,
        ),
        Deletable(
            "stage",
            Stage,
            stage_topics,
            dependents=(Dependent("deals", "deal", "stage"),),
            board=lambda row: int(row["pipeline"]),
            admin_only=True,
        ),
    )
}


async def lock_row(kind: Deletable, record_id: int) -> dict[str, Any]:
    """Load and lock a row with its owner's teams, for the scope check."""
    table = kind.table._meta.tablename
    teams = ""
    if kind.object_type in ("account", "contact", "lead"):
        teams = f", {owner_teams_sql('r')} AS owner_teams"
    rows = await kind.table.raw(
        f"SELECT r.*{teams} FROM {table} r WHERE r.id = {{}} FOR UPDATE OF r",
        record_id,
    )
    if not rows:
        raise NotFound(kind.object_type, record_id)
    return dict(rows[0])


async def lock_parent(parent_type: str, parent_id: int) -> dict[str, Any]:
    parent = DELETABLE[parent_type]
    return await lock_row(parent, parent_id)


async def check_delete(kind: Deletable, access: Access, row: dict[str, Any]) -> None:
    """Raise NotFound or 403 unless ``access`` may delete the locked ``row``."""
    if kind.admin_only:
        if not access.is_admin:
            logger.info(
                "%s delete denied: not an administrator user_id=%s %s_id=%s",
                kind.object_type,
                access.user_id,
                kind.object_type,
                row["id"],
            )
            raise PermissionDeniedException(
                f"Only administrators may delete a {kind.object_type}."
            )
        return
    if kind.object_type != "comment":
        require_record(access, kind.object_type, "delete", row)
        return
    parent_type, parent_id = comment_parent(row)
    parent = await lock_parent(parent_type, parent_id)
    if not comment_permits(access, "read", parent_type, parent):
        raise NotFound("comment", row["id"])
    if not comment_permits(access, "delete", parent_type, parent):
        logger.info(
            "comment delete denied user_id=%s comment_id=%s",
            access.user_id,
            row["id"],
        )
        raise PermissionDeniedException(
            f"Your role does not allow you to delete comments on this {parent_type}."
        )


async def count_dependents(kind: Deletable, record_id: int) -> dict[str, int]:
    found = {}
    for dependent in kind.dependents:
        rows = await kind.table.raw(
            f"SELECT count(*) AS n FROM {dependent.table} "
            f"WHERE {dependent.column} = {{}}",
            record_id,
        )
        if rows[0]["n"]:
            found[dependent.label] = rows[0]["n"]
    return found


def deleted_values(kind: Deletable, row: dict[str, Any]) -> dict[str, list[Any]]:
    """Return the row as a delete's changes, without derived or secret values."""
    stored = {name: value for name, value in row.items() if name != "owner_teams"}
    return snapshot(stored, DELETE, encrypted_columns(kind.table))


async def delete_children(
    changes: ChangeSet, children: Children, parent_id: int
) -> int:
    """Delete a record's comments or stages in the open change set, one event each."""
    kind = DELETABLE[children.object_type]
    table = kind.table._meta.tablename
    rows = await kind.table.raw(
        f"DELETE FROM {table} WHERE {children.column} = {{}} RETURNING *", parent_id
    )
    for row in rows:
        changes.add(
            f"{kind.object_type}.deleted",
            kind.object_type,
            row["id"],
            kind.topics(dict(row)),
            deleted_values(kind, dict(row)),
        )
    return len(rows)


async def delete_record(
    object_type: str,
    record_id: int,
    access: Access,
    actor_id: int | None,
    expected_version: int | None = None,
) -> dict[str, Any]:
    """Delete one record as the user with ``access`` and return its row as it was.

    Raises NotFound outside the user's read scope,
    PermissionDeniedException without the delete right on it,
    VersionMismatch when ``expected_version`` is set and differs, and
    HasDependents when other records still refer to it.
    """
    kind = DELETABLE[object_type]
    async with change_set(actor_id) as changes:
        row = await lock_row(kind, record_id)
        await check_delete(kind, access, row)
        if expected_version is not None and row["version"] != expected_version:
            raise VersionMismatch(
                object_type, record_id, expected_version, row["version"]
            )
        dependents = await count_dependents(kind, record_id)
        if dependents:
            logger.info(
                "delete rejected: dependents %s_id=%s user_id=%s dependents=%s",
                object_type,
                record_id,
                actor_id,
                dependents,
            )
            raise HasDependents(object_type, record_id, dependents)

        children = 0
        if kind.children is not None:
            children = await delete_children(changes, kind.children, record_id)
        table = kind.table._meta.tablename
        await kind.table.raw(f"DELETE FROM {table} WHERE id = {{}}", record_id)
        changes.add(
            f"{object_type}.deleted",
            object_type,
            record_id,
            kind.topics(row),
            deleted_values(kind, row),
        )
        if kind.board is not None:
            board = kind.board(row)
            changes.add(
                "board.reload",
                "pipeline",
                board,
                [f"pipeline:{board}"],
                {f"{object_type}_id": record_id},
            )

    logger.info(
        "record deleted %s_id=%s user_id=%s children=%d",
        object_type,
        record_id,
        actor_id,
        children,
    )
    return row
