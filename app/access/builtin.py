"""The roles every installation starts with.

The migration that creates the role table inserts these, and admins may
change their grants later, except the admin role's, so that someone can
always manage users.
"""

from __future__ import annotations

from typing import Any

from app.access.permissions import ACTIONS, OBJECT_TYPES

ADMIN_ROLE = "admin"


def grants(
    read: str, create: str = "none", edit: str = "none", delete: str = "none"
) -> dict[str, str]:
    return {"read": read, "create": create, "edit": edit, "delete": delete}


EVERYTHING = {
    object_type: dict.fromkeys(ACTIONS, "all") for object_type in OBJECT_TYPES
}

BUILTIN_ROLES: dict[str, dict[str, Any]] = {
    "admin": {
        "label": "Administrator",
        "permissions": EVERYTHING,
        "field_rules": {},
    },
    "sales_manager": {
        "label": "Sales manager",
        "permissions": {
            "account": grants("all", "all", "team"),
            "contact": grants("all", "all", "team"),
            "deal": grants("all", "all", "team", "team"),
            "lead": grants("all", "all", "all", "team"),
            "campaign": grants("all", "all", "all", "all"),
            "ticket": grants("all"),
            "comment": grants("all", "all"),
        },
        "field_rules": {},
    },
    "sales_rep": {
        "label": "Sales rep",
        "permissions": {
            "account": grants("all", "all", "own"),
            "contact": grants("all", "all", "own"),
            "deal": grants("team", "own", "own"),
            "lead": grants("team", "own", "own"),
            "campaign": grants("all"),
            "comment": grants("team", "team"),
        },
        # A rep hands a deal to a colleague but does not move it to another team.
        "field_rules": {"deal": {"team": "read_only"}},
    },
    "support_lead": {
        "label": "Support lead",
        "permissions": {
            "account": grants("all", "all", "team"),
            "contact": grants("all", "all", "all"),
            "deal": grants("all"),
            "ticket": grants("all", "all", "all", "team"),
            "comment": grants("all", "all"),
        },
        "field_rules": {},
    },
    "support_agent": {
        "label": "Support agent",
        "permissions": {
            "account": grants("all"),
            "contact": grants("all"),
            "deal": grants("all"),
            "ticket": grants("team", "team", "team"),
            "comment": grants("team", "team"),
        },
        "field_rules": {
            "deal": {"amount": "hidden"},
            "ticket": {"team": "read_only"},
        },
    },
    "read_only": {
        "label": "Read only",
        "permissions": {
            "account": grants("all"),
            "contact": grants("all"),
            "deal": grants("all"),
            "lead": grants("all"),
            "campaign": grants("all"),
            "ticket": grants("all"),
            "comment": grants("all"),
        },
        "field_rules": {},
    },
}
