"""Roles and the users who hold them."""

from __future__ import annotations

from piccolo.columns import JSONB, Boolean, ForeignKey, Serial, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from app.auth.tables import User
from app.db import Tracked


class Role(Tracked, Table):
    # A slug such as "sales_rep", unique; built-in roles keep theirs.
    name = Varchar(length=60, unique=True)
    label = Varchar(length=120)
    builtin = Boolean(default=False)
    # {"deal": {"read": "team", "edit": "own", ...}, ...}
    permissions = JSONB(default="{}")
    # {"deal": {"amount": "hidden"}, ...}
    field_rules = JSONB(default="{}")
    require_two_factor = Boolean(default=False)


class UserRole(Table):
    """One role held by one user; the pair is unique."""

    id: Serial
    user_id = ForeignKey(User, null=False, on_delete=OnDelete.cascade)
    role_id = ForeignKey(Role, null=False, on_delete=OnDelete.cascade)
