"""Litestar guards: every route declares the permission it needs in its ``opt``.

A handler sets ``opt={"permission": ...}`` to one of:

- ``PUBLIC``: anyone, signed in or not (the sign-in page, health checks);
- ``SIGNED_IN``: any signed-in user (sign-out, the home redirect, the socket,
  which checks each stream itself);
- ``"<object type>:<action>"`` such as ``"deal:read"``: a user whose roles
  grant some scope other than none for it. The handler then checks the
  record itself against that scope;
- ``IMPORT``: create rights on every record type an import writes;
- ``ADMIN``: the right to manage users, roles and teams;
- ``FORECAST``: the forecast page, for users who may edit some deals and
  see deal amounts (the sales roles and administrators).

``check_permission`` runs on every route. A signed-in request to a handler
that declares nothing is rejected, so a new page is closed until it declares
who may use it.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from app.access.permissions import ACTIONS, OBJECT_TYPES, Access

logger = logging.getLogger(__name__)

PUBLIC = "public"
SIGNED_IN = "signed_in"
ADMIN = "admin:edit"
IMPORT = "import:create"
# The forecast page: people who work deals (some edit scope) and see amounts.
FORECAST = "forecast:read"
# An import creates records of every owner and team.
IMPORTED_TYPES = ("account", "contact", "deal", "ticket")


def permission(object_type: str, action: str) -> dict[str, str]:
    """Return a route's ``opt`` declaring that it needs ``object_type:action``."""
    if object_type not in OBJECT_TYPES or action not in ACTIONS:
        raise ValueError(f"unknown permission {object_type}:{action}")
    return {"permission": f"{object_type}:{action}"}


def allows(access: Access, needed: str) -> bool:
    """Return True when ``access`` satisfies the declared permission ``needed``."""
    if needed in (PUBLIC, SIGNED_IN):
        return True
    if needed == IMPORT:
        return all(access.scope(kind, "create") == "all" for kind in IMPORTED_TYPES)
    if needed == ADMIN:
        return access.is_admin
    if needed == FORECAST:
        return access.can("deal", "edit") and access.can_see("deal", "amount")
    object_type, _, action = needed.partition(":")
    if object_type not in OBJECT_TYPES or action not in ACTIONS:
        raise ValueError(f"unknown permission {needed!r}")
    return access.can(object_type, action)


def current_access(connection: ASGIConnection[Any, Any, Any, Any]) -> Access | None:
    user = connection.scope.get("user")
    access = getattr(user, "access", None)
    return access if isinstance(access, Access) else None


async def check_permission(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Reject requests whose user lacks the handler's declared permission.

    A coroutine although it never awaits: Litestar runs a plain function
    guard in a worker thread, a thread hop on every request.
    """
    needed = handler.opt.get("permission")
    if "user" not in connection.scope:
        # Paths excluded from sign-in (the sign-in page, static files) have
        # no user; the session middleware already rejected the others.
        return
    access = current_access(connection)
    if needed is None:
        logger.error(
            "route declares no permission path=%s handler=%s",
            connection.scope.get("path"),
            handler.handler_name,
        )
        raise PermissionDeniedException(
            "This page declares no permission, so it is closed to everyone."
        )
    if access is None or not allows(access, needed):
        logger.info(
            "permission denied user_id=%s path=%s permission=%s",
            getattr(connection.scope.get("user"), "id", None),
            connection.scope.get("path"),
            needed,
        )
        raise PermissionDeniedException(refusal_message(needed))


def refusal_message(needed: str) -> str:
    if needed == ADMIN:
        return "Only administrators can manage users, roles and teams."
    if needed == FORECAST:
        return "The forecast is for roles that work deals and see their amounts."
    if needed == IMPORT:
        return (
            "Importing needs the right to create accounts, contacts, deals and tickets."
        )
    object_type, _, action = needed.partition(":")
    kind = OBJECT_TYPES.get(object_type)
    label = kind.label.lower() if kind else object_type
    return f"Your role does not allow you to {action} {label}."


async def admin_only(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Let only users whose roles grant managing users, roles and teams through."""
    access = current_access(connection)
    if access is None or not access.is_admin:
        raise PermissionDeniedException(
            "Only administrators can manage users, roles and teams."
        )
