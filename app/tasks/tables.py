"""The task table: a follow-up on exactly one deal or ticket."""

from __future__ import annotations

from piccolo.columns import (
    Boolean,
    ForeignKey,
    Integer,
    Serial,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from app.auth.tables import User
from app.deals.tables import Deal
from app.tickets.tables import Ticket
from app.workflows.tables import WorkflowRule


class Task(Table):
    id: Serial
    title = Varchar(length=500)
    deal = ForeignKey(Deal, null=True, default=None, on_delete=OnDelete.cascade)
    ticket = ForeignKey(Ticket, null=True, default=None, on_delete=OnDelete.cascade)
    assignee = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    due_at = Timestamptz()
    done = Boolean(default=False)
    done_at = Timestamptz(null=True, default=None)
    done_by = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    # Set when the assignee was reminded, so a task reminds once.
    reminded_at = Timestamptz(null=True, default=None)
    # The rule whose create_task action made the task, if any.
    rule = ForeignKey(
        WorkflowRule, null=True, default=None, on_delete=OnDelete.set_null
    )
    version = Integer(default=1)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
