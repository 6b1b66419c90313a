"""The ticket table."""

from __future__ import annotations

from piccolo.columns import ForeignKey, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from app.accounts.tables import Account
from app.auth.tables import Team, User
from app.contacts.tables import Contact
from app.db import Tracked

STATUSES = ("new", "open", "pending", "on_hold", "solved", "closed")
PRIORITIES = ("low", "medium", "high", "urgent")
CHANNELS = ("email", "phone", "chat", "social", "web")


class Ticket(Tracked, Table):
    subject = Varchar(length=300)
    description = Text(default="")
    status = Varchar(length=20, default="new")
    priority = Varchar(length=20, default="medium")
    channel = Varchar(length=20, default="web")
    type = Varchar(length=60, default="")
    requester = ForeignKey(
        Contact, null=True, default=None, on_delete=OnDelete.set_null
    )
    account = ForeignKey(Account, null=True, default=None, on_delete=OnDelete.set_null)
    assignee = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    team = ForeignKey(Team, null=True, default=None, on_delete=OnDelete.set_null)
    # Set whenever the status changes; board columns list the most recent first.
    status_changed_at = Timestamptz(default=TimestamptzNow())
