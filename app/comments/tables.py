"""The comment table: each comment belongs to exactly one deal or ticket."""

from __future__ import annotations

from piccolo.columns import Boolean, ForeignKey, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from app.auth.tables import User
from app.db import Tracked
from app.deals.tables import Deal
from app.sanitize import RichText
from app.tickets.tables import Ticket
from app.workflows.tables import WorkflowRule


class Comment(Tracked, Table):
    deal = ForeignKey(Deal, null=True, default=None, on_delete=OnDelete.cascade)
    ticket = ForeignKey(Ticket, null=True, default=None, on_delete=OnDelete.cascade)
    author = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    # Sanitised HTML: see app.sanitize.
    body = RichText()
    internal = Boolean(default=False)
    # The workflow rule that wrote an internal note (such a note has no
    # author), and the rule's name then, which shows once the rule is deleted.
    rule = ForeignKey(
        WorkflowRule, null=True, default=None, on_delete=OnDelete.set_null
    )
    rule_name = Varchar(length=200, default="")
