"""Permissions: scopes per object type and action, field rules, and their union.

A role grants, for each object type and action, a scope: ``all`` records,
the viewer's ``team``'s records, the viewer's ``own`` records, or ``none``.
A user with several roles gets, for each pair, the most permissive scope
any of them grants. Field rules make fields of a type ``hidden`` (never
shown) or ``read_only`` (shown, never changed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from app.errors import FieldError

Scope = Literal["none", "own", "team", "all"]
FieldRule = Literal["hidden", "read_only"]

# From least to most permissive; the union of roles takes the maximum.
SCOPES: tuple[Scope, ...] = ("none", "own", "team", "all")
SCOPE_RANK = {scope: rank for rank, scope in enumerate(SCOPES)}
ACTIONS = ("read", "create", "edit", "delete")
# The actions whose records a user may read as well.
WRITES_IMPLY_READ = ("read", "edit", "delete")
FIELD_RULES: tuple[FieldRule, ...] = ("hidden", "read_only")
# The text shown for a field hidden from the viewer where a page cannot
# leave it out, such as a record's heading or a mail placeholder.
HIDDEN = "(hidden)"


@dataclass(frozen=True)
class ObjectType:
    """A kind of record that roles grant access to.

    ``owner_field`` is the column naming the record's owner (a deal's
    ``owner``, a ticket's ``assignee``). ``team_field`` is the record's own
    team column; without one, the record belongs to its owner's teams.
    ``scoped`` is False for types whose only meaningful scopes are ``all``
    and ``none``, such as the right to manage users.
    """

    name: str
    label: str
    owner_field: str | None = None
    team_field: str | None = None
    fields: tuple[str, ...] = ()
    scoped: bool = True


# Later object types plug in by adding an entry here; roles saved before
# then grant ``none`` on them until an admin edits the grid.
OBJECT_TYPES: dict[str, ObjectType] = {
    kind.name: kind
    for kind in (
        ObjectType(
            "account",
            "Accounts",
            owner_field="owner",
            fields=(
                "name",
                "domain",
                "industry",
                "employees",
                "annual_revenue",
                "phone",
                "website",
                "city",
                "country",
                "owner",
            ),
        ),
        ObjectType(
            "contact",
            "Contacts",
            owner_field="owner",
            fields=(
                "first_name",
                "last_name",
                "email",
                "phone",
                "title",
                "lifecycle_stage",
                "account",
                "owner",
                "personal_notes",
            ),
        ),
        ObjectType(
            "deal",
            "Deals",
            owner_field="owner",
            team_field="team",
            fields=(
                "name",
                "amount",
                "close_date",
                "engage_date",
                "owner",
                "team",
                "account",
                "contact",
                "product",
                "stage",
                "forecast_category",
            ),
        ),
        ObjectType(
            "lead",
            "Leads",
            owner_field="owner",
            fields=("name", "email", "company", "source", "status", "owner", "score"),
        ),
        ObjectType(
            "ticket",
            "Tickets",
            owner_field="assignee",
            team_field="team",
            fields=(
                "subject",
                "description",
                "status",
                "priority",
                "assignee",
                "team",
                "type",
                "channel",
            ),
        ),
        # A comment's scope applies to the record it belongs to: "team"
        # comments are those on the viewer's team's deals and tickets.
        ObjectType("comment", "Comments", fields=("body",)),
        # Email campaigns belong to no one: a role sends them all or none.
        ObjectType("campaign", "Email campaigns", scoped=False),
        # The right to manage users, roles and teams.
        ObjectType("admin", "Users, roles and teams", scoped=False),
    )
}


class Grants(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The scope of each action on one object type."""

    read: Scope = "none"
    create: Scope = "none"
    edit: Scope = "none"
    delete: Scope = "none"


class RoleRules(msgspec.Struct, frozen=True):
    """A role's permissions and field rules, as stored in the role table."""

    permissions: dict[str, Grants] = {}
    field_rules: dict[str, dict[str, FieldRule]] = {}


PATH_IN_ERROR = re.compile(r"at `\$(?P<path>[^`]*)`")


def validation_error(
    column: str, raw: Any, error: msgspec.ValidationError
) -> FieldError:
    """Turn msgspec's message into a FieldError naming the field and value."""
    match = PATH_IN_ERROR.search(str(error))
    path = match.group("path") if match else ""
    # msgspec writes "[...]" for a dict key it does not name.
    path = path.split("[...]")[-1]
    keys = [key for key in re.split(r"[.\[\]']+", path) if key]
    value: Any = raw
    for key in keys:
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            value = None
    if isinstance(value, Mapping | list):
        # An object or list, such as one missing a field, is named by its path.
        value = None
    field = ".".join([column, *keys])
    reason = str(error).split(" - at ")[0]
    return FieldError(field, value, f"is invalid: {reason}")


def parse_permissions(raw: Any) -> dict[str, Grants]:
    """Validate a permission grid such as ``{"deal": {"read": "team"}}``.

    Raises FieldError naming the field (``permissions.deal.read``) and the
    value for an unknown object type, action or scope.
    """
    if not isinstance(raw, Mapping):
        raise FieldError("permissions", raw, "must be an object of object types")
    for object_type in raw:
        if object_type not in OBJECT_TYPES:
            raise FieldError(
                f"permissions.{object_type}",
                object_type,
                f"is not an object type; use one of {', '.join(OBJECT_TYPES)}",
            )
    for object_type, actions in raw.items():
        if not isinstance(actions, Mapping):
            continue
        for action, scope in actions.items():
            if action not in ACTIONS:
                raise FieldError(
                    f"permissions.{object_type}.{action}",
                    action,
                    f"is not an action; use one of {', '.join(ACTIONS)}",
                )
            if scope not in SCOPES:
                raise FieldError(
                    f"permissions.{object_type}.{action}",
                    scope,
                    f"is not a scope; use one of {', '.join(SCOPES)}",
                )
    try:
        grid = msgspec.convert(raw, dict[str, Grants])
    except msgspec.ValidationError as error:
        raise validation_error("permissions", raw, error) from None

    for object_type, grants in grid.items():
        if OBJECT_TYPES[object_type].scoped:
            continue
        for action in ACTIONS:
            if getattr(grants, action) in ("own", "team"):
                raise FieldError(
                    f"permissions.{object_type}.{action}",
                    getattr(grants, action),
                    "must be all or none",
                )
    return grid


def parse_field_rules(raw: Any) -> dict[str, dict[str, FieldRule]]:
    """Validate field rules such as ``{"deal": {"amount": "hidden"}}``.

    Raises FieldError naming the field (``field_rules.deal.amount``) and the
    value for an unknown object type, field or rule.
    """
    if not isinstance(raw, Mapping):
        raise FieldError("field_rules", raw, "must be an object of object types")
    for object_type, fields in raw.items():
        kind = OBJECT_TYPES.get(object_type)
        if kind is None:
            raise FieldError(
                f"field_rules.{object_type}",
                object_type,
                f"is not an object type; use one of {', '.join(OBJECT_TYPES)}",
            )
        if not isinstance(fields, Mapping):
            continue
        for field, rule in fields.items():
            if field not in kind.fields:
                raise FieldError(
                    f"field_rules.{object_type}.{field}",
                    field,
                    f"is not a {object_type} field; "
                    f"use one of {', '.join(kind.fields)}",
                )
            if rule not in FIELD_RULES:
                raise FieldError(
                    f"field_rules.{object_type}.{field}",
                    rule,
                    f"is not a field rule; use one of {', '.join(FIELD_RULES)}",
                )
    try:
        return msgspec.convert(raw, dict[str, dict[str, FieldRule]])
    except msgspec.ValidationError as error:
        raise validation_error("field_rules", raw, error) from None


class Access(msgspec.Struct, frozen=True):
    """The rights of one user, resolved from all of their roles.

    ``scopes`` maps ``"type.action"`` to the most permissive scope granted.
    ``hidden`` and ``read_only`` list, per object type, the fields that
    every role granting read (or a write) on that type restricts.
    """

    user_id: int = 0
    team_ids: tuple[int, ...] = ()
    scopes: dict[str, Scope] = {}
    hidden: dict[str, tuple[str, ...]] = {}
    read_only: dict[str, tuple[str, ...]] = {}

    def scope(self, object_type: str, action: str) -> Scope:
        return self.scopes.get(f"{object_type}.{action}", "none")

    def scopes_for(self, object_type: str, action: str) -> tuple[Scope, ...]:
        """Return the scopes whose records allow ``action``, most permissive first.

        A user may read every record they may edit or delete, so reading has
        up to three scopes: "team" read with "own" edit covers a user's own
        deal in another team too.
        """
        if action != "read":
            granted = {self.scope(object_type, action)}
        else:
            granted = {self.scope(object_type, name) for name in WRITES_IMPLY_READ}
        granted.discard("none")
        if "all" in granted:
            return ("all",)
        return tuple(sorted(granted, key=SCOPE_RANK.__getitem__, reverse=True))

    def can(self, object_type: str, action: str) -> bool:
        """Return True when some record of the type may be acted on."""
        return bool(self.scopes_for(object_type, action))

    def hidden_fields(self, object_type: str) -> frozenset[str]:
        return frozenset(self.hidden.get(object_type, ()))

    def can_see(self, object_type: str, field: str) -> bool:
        return field not in self.hidden.get(object_type, ())

    def can_write(self, object_type: str, field: str) -> bool:
        return field not in self.read_only.get(object_type, ()) and self.can_see(
            object_type, field
        )

    def permits(
        self,
        object_type: str,
        action: str,
        owner_id: int | None,
        team_ids: Iterable[int | None],
    ) -> bool:
        """Return True when the record owned by ``owner_id`` in ``team_ids``
        is in this user's scope for ``action``."""
        teams = [team for team in team_ids if team is not None]
        for scope in self.scopes_for(object_type, action):
            if scope == "all":
                return True
            if scope == "own" and owner_id is not None and owner_id == self.user_id:
                return True
            if scope == "team" and any(team in self.team_ids for team in teams):
                return True
        return False

    @property
    def is_admin(self) -> bool:
        return self.scope("admin", "edit") == "all"

    def sees_personal_details(self, user_id: int | None) -> bool:
        """Return True when this user may see another user's email and client
        addresses: administrators see everyone's, other users only their own."""
        return self.is_admin or (user_id is not None and user_id == self.user_id)


def resolve(
    user_id: int, team_ids: Iterable[int], roles: Iterable[RoleRules]
) -> Access:
    """Combine the roles of one user: the most permissive scope wins.

    A field stays hidden only if every role that grants read on its type
    hides it, and read-only only if no role that grants a write on its type
    leaves it writable.
    """
    # NOTE: field rules combine per object type, not per record. A role that
    # reads team deals with amounts, held with one that reads all deals
    # without them, shows the amounts of every deal the user can read.
    scopes: dict[str, Scope] = {}
    visible: dict[str, set[str]] = {}
    writable: dict[str, set[str]] = {}
    readers: set[str] = set()
    writers: set[str] = set()
    for role in roles:
        for object_type, grants in role.permissions.items():
            for action in ACTIONS:
                granted: Scope = getattr(grants, action)
                key = f"{object_type}.{action}"
                if SCOPE_RANK[granted] > SCOPE_RANK[scopes.get(key, "none")]:
                    scopes[key] = granted
            kind = OBJECT_TYPES.get(object_type)
            if kind is None:
                continue
            rules = role.field_rules.get(object_type, {})
            if grants.read != "none":
                readers.add(object_type)
                visible.setdefault(object_type, set()).update(
                    field for field in kind.fields if rules.get(field) != "hidden"
                )
            if grants.create != "none" or grants.edit != "none":
                writers.add(object_type)
                writable.setdefault(object_type, set()).update(
                    field for field in kind.fields if field not in rules
                )

    hidden = {}
    read_only = {}
    for object_type, kind in OBJECT_TYPES.items():
        if object_type in readers:
            shown = visible.get(object_type, set())
            restricted = tuple(field for field in kind.fields if field not in shown)
            if restricted:
                hidden[object_type] = restricted
        if object_type in writers:
            free = writable.get(object_type, set())
            fixed = tuple(field for field in kind.fields if field not in free)
            if fixed:
                read_only[object_type] = fixed
    return Access(
        user_id=user_id,
        team_ids=tuple(sorted(set(team_ids))),
        scopes=dict(sorted(scopes.items())),
        hidden=hidden,
        read_only=read_only,
    )


# The importer and other commands act as the system: every scope is "all".
SYSTEM = Access(
    scopes={
        f"{object_type}.{action}": "all"
        for object_type in OBJECT_TYPES
        for action in ACTIONS
    }
)
