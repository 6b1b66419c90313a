"""The comment table: each comment belongs to exactly one deal or ticket."""

from __future__ import annotations

from piccolo.columns import Boolean, ForeignKey, Text
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from app.auth.tables import User
from app.db import Tracked
from app.deals.tables import Deal
from app.tickets.tables import Ticket


class Comment(Tracked, Table):
    deal = ForeignKey(Deal, null=True, default=None, on_delete=OnDelete.cascade)
    ticket = ForeignKey(Ticket, null=True, default=None, on_delete=OnDelete.cascade)
    author = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    body = Text()
    internal = Boolean(default=False)
