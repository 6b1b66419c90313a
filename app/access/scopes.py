"""Scopes as SQL conditions, and checks of single records against them.

Every list, board, total and search adds ``scope_sql`` of the viewer to
its WHERE clause, so records outside the viewer's scope are never loaded.
Conditions use Piccolo's ``{}`` placeholders and append their arguments.
"""

from __future__ import annotations

import logging
from typing import Any, overload

from litestar.exceptions import PermissionDeniedException

from app.access.permissions import OBJECT_TYPES, Access
from app.errors import FieldError, NotFound

logger = logging.getLogger(__name__)

# Columns that queries derive from a field, hidden along with it.
DERIVED_COLUMNS = {
    "owner": ("owner_name",),
    "assignee": ("assignee_name",),
    "account": ("account_name",),
    "contact": ("contact_name",),
    "product": ("product_name",),
    "team": ("team_name",),
    "requester": ("requester_name", "requester_email"),
    # A deal's stage also shows in its kind (open, won, lost) and in the
    # probability its forecast category follows by default.
    "stage": ("stage_name", "stage_kind", "stage_probability"),
    # A contact's full name joins both parts.
    "first_name": ("name",),
    "last_name": ("name",),
}
# The teams of a user: their primary team and every team they are a member of.
USER_TEAMS_SQL = (
    'SELECT m."user" FROM team_member m WHERE m.team = ANY({}::integer[]) '
    "UNION SELECT u.id FROM app_user u WHERE u.team = ANY({}::integer[])"
)


def scope_sql(
    access: Access,
    object_type: str,
    alias: str,
    args: list[object],
    action: str = "read",
) -> str:
    """Return the condition that keeps rows of ``alias`` in the viewer's scope."""
    scopes = access.scopes_for(object_type, action)
    if not scopes:
        return "FALSE"
    if scopes == ("all",):
        return "TRUE"
    conditions = [
        single_scope_sql(access, object_type, scope, alias, args) for scope in scopes
    ]
    if len(conditions) == 1:
        return conditions[0]
    return "(" + " OR ".join(conditions) + ")"


def single_scope_sql(
    access: Access, object_type: str, scope: str, alias: str, args: list[object]
) -> str:
    kind = OBJECT_TYPES[object_type]
    owner = f"{alias}.{kind.owner_field}"
    if scope == "own":
        args.append(access.user_id)
        return f"{owner} = {{}}"
    team_ids = list(access.team_ids)
    if kind.team_field is not None:
        args.append(team_ids)
        return f"{alias}.{kind.team_field} = ANY({{}}::integer[])"
    args.extend([team_ids, team_ids])
    return f"{owner} IN ({USER_TEAMS_SQL})"


def owner_teams_sql(alias: str, owner_field: str = "owner") -> str:
    """Select the team ids of the owner of ``alias``, for checks in Python."""
    return (
        f'ARRAY(SELECT m.team FROM team_member m WHERE m."user" = {alias}.{owner_field}'
        f" UNION SELECT u.team FROM app_user u WHERE u.id = {alias}.{owner_field}"
        " AND u.team IS NOT NULL)"
    )


def record_teams(object_type: str, record: dict[str, Any]) -> list[int | None]:
    """Return the teams a loaded record belongs to for scope checks.

    Deals and tickets carry their ``team``; accounts and contacts are loaded
    with ``owner_teams`` (see ``owner_teams_sql``).
    """
    kind = OBJECT_TYPES[object_type]
    if kind.team_field is not None:
        return [record.get(kind.team_field)]
    return list(record.get("owner_teams") or ())


def permits_record(
    access: Access, object_type: str, action: str, record: dict[str, Any]
) -> bool:
    kind = OBJECT_TYPES[object_type]
    owner = record.get(kind.owner_field) if kind.owner_field else None
    return access.permits(object_type, action, owner, record_teams(object_type, record))


def comment_permits(
    access: Access, action: str, parent_type: str, parent: dict[str, Any]
) -> bool:
    """Return True when comments of the record ``parent`` allow ``action``.

    The comment grant's scope applies to the parent record's owner and team,
    and reading comments also needs read access to the parent.
    """
    if not permits_record(access, parent_type, "read", parent):
        return False
    kind = OBJECT_TYPES[parent_type]
    owner = parent.get(kind.owner_field) if kind.owner_field else None
    return access.permits("comment", action, owner, record_teams(parent_type, parent))


def require_record(
    access: Access, object_type: str, action: str, record: dict[str, Any]
) -> None:
    """Raise unless the viewer may act on a record they can read.

    Raises NotFound when the record is outside their read scope, so its
    existence is not revealed, and PermissionDeniedException (403) when they
    may read it but not ``action`` it.
    """
    if not permits_record(access, object_type, "read", record):
        raise NotFound(object_type, record.get("id"))
    if action != "read" and not permits_record(access, object_type, action, record):
        logger.info(
            "action denied user_id=%s %s_id=%s action=%s",
            access.user_id,
            object_type,
            record.get("id"),
            action,
        )
        raise PermissionDeniedException(
            f"Your role does not allow you to {action} this {object_type}."
        )


def check_writable(access: Access, object_type: str, names: list[str]) -> None:
    """Reject an edit of a hidden or read-only field with a FieldError (422)."""
    for name in names:
        if not access.can_write(object_type, name):
            raise FieldError(name, None, "is read-only for your role")


def visible(
    access: Access, object_type: str, fields: tuple[str, ...]
) -> tuple[str, ...]:
    return tuple(name for name in fields if access.can_see(object_type, name))


def writable(
    access: Access, object_type: str, fields: tuple[str, ...]
) -> tuple[str, ...]:
    return tuple(name for name in fields if access.can_write(object_type, name))


@overload
def redact(
    access: Access, object_type: str, record: dict[str, Any]
) -> dict[str, Any]: ...


@overload
def redact(access: Access, object_type: str, record: None) -> None: ...


@overload
def redact(
    access: Access, object_type: str, record: dict[str, Any] | None
) -> dict[str, Any] | None: ...


def redact(
    access: Access, object_type: str, record: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Return a copy of ``record`` without the fields hidden from the viewer.

    Templates then cannot show a hidden value even by mistake: the key is
    there with None, so the page shows the field as empty or leaves it out.
    """
    if record is None:
        return None
    hidden = access.hidden_fields(object_type)
    if not hidden:
        return record
    removed = set(hidden)
    for name in hidden:
        removed.update(DERIVED_COLUMNS.get(name, ()))
    return {
        name: (None if name in removed else value) for name, value in record.items()
    }


def redact_rows(
    access: Access, object_type: str, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    if not access.hidden_fields(object_type):
        return rows
    return [redact(access, object_type, row) or row for row in rows]
