"""The top bar's main menu: its sections and the permission each one needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.access.guards import ADMIN, FORECAST, IMPORT, SIGNED_IN, allows


@dataclass(frozen=True)
class MenuLink:
    """One section of the main menu.

    A page whose ``section`` equals the link's marks it current.
    ``permission`` is a route permission, as ``app.access.guards`` defines.
    """

    href: str
    label: str
    section: str
    permission: str


MAIN_MENU = (
    MenuLink("/pipelines", "Pipeline", "pipeline", "deal:read"),
    MenuLink("/tickets", "Tickets", "tickets", "ticket:read"),
    MenuLink("/accounts", "Accounts", "accounts", "account:read"),
    MenuLink("/contacts", "Contacts", "contacts", "contact:read"),
    MenuLink("/forecast", "Forecast", "forecast", FORECAST),
    MenuLink("/leads", "Leads", "leads", "lead:read"),
    MenuLink("/campaigns", "Campaigns", "campaigns", "campaign:read"),
    MenuLink("/tasks", "My tasks", "tasks", SIGNED_IN),
    MenuLink("/import", "Import", "import", IMPORT),
    MenuLink("/admin/users", "Admin", "admin", ADMIN),
    MenuLink("/admin/audit", "Audit log", "audit", ADMIN),
)
# A menu with more links than this is too wide to sit in the top bar beside
# the search box below 1280 pixels, so app.css collapses it earlier.
LONG_MENU = 8


def main_menu(user: Any) -> list[MenuLink]:
    """Return the sections the signed-in ``user`` may open; none without a user."""
    access = getattr(user, "access", None)
    if access is None:
        return []
    return [link for link in MAIN_MENU if allows(access, link.permission)]
