"""Users and the teams they work in."""

from __future__ import annotations

from piccolo.columns import Boolean, ForeignKey, Serial, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from app.db import Tracked

ROLES = (
    "admin",
    "sales_manager",
    "sales_rep",
    "support_lead",
    "support_agent",
    "read_only",
)


class Team(Tracked, Table):
    name = Varchar(length=120, unique=True)
    region = Varchar(length=120, default="")


class User(Tracked, Table, tablename="app_user"):
    email = Varchar(length=254, unique=True)
    name = Varchar(length=200)
    role = Varchar(length=40, choices=None, default="read_only")
    password_hash = Varchar(length=200, null=True, default=None)
    active = Boolean(default=True)
    team = ForeignKey(Team, null=True, default=None, on_delete=OnDelete.set_null)
    last_sign_in_at = Timestamptz(null=True, default=None)


class TeamMember(Table):
    id: Serial
    team = ForeignKey(Team, null=False, on_delete=OnDelete.cascade)
    user = ForeignKey(User, null=False, on_delete=OnDelete.cascade)
    joined_at = Timestamptz(default=TimestamptzNow())
