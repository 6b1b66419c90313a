"""Rules, their immutable versions, the log of their runs and their timers."""

from __future__ import annotations

from piccolo.columns import (
    JSONB,
    BigSerial,
    Boolean,
    DoublePrecision,
    ForeignKey,
    Integer,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from app.auth.tables import User


class WorkflowRule(Table):
    """A rule's name, place and switch; what it does is in its versions."""

    id: Serial
    object_type = Varchar(length=40)
    name = Varchar(length=200)
    enabled = Boolean(default=False)
    # Rules of one object type run in this order, lowest first.
    position = Integer(default=0)
    current_version = Integer(default=1)
    # A copy of the current version's trigger kind, for lookups.
    trigger_kind = Varchar(length=40)
    created_by = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class WorkflowRuleVersion(Table):
    """One saved definition of a rule; never changed once written."""

    id: Serial
    rule = ForeignKey(WorkflowRule, null=False, on_delete=OnDelete.cascade)
    version = Integer()
    # A ``RuleDefinition`` (app.workflows.schema) as JSON.
    definition = JSONB()
    created_by = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    created_at = Timestamptz(default=TimestamptzNow())


class RuleRun(Table):
    """One evaluation of a rule against a record, and how it ended."""

    id = BigSerial(primary_key=True)
    rule = ForeignKey(WorkflowRule, null=False, on_delete=OnDelete.cascade)
    version = Integer()
    record_type = Varchar(length=40)
    record_id = Integer(null=True, default=None)
    trigger = Varchar(length=40)
    # See app.workflows.engine.OUTCOMES.
    outcome = Varchar(length=20)
    error = Text(default="")
    # What each action did: [{"kind": ..., "result": ...}, ...].
    actions = JSONB(default="[]")
    depth = Integer(default=0)
    duration_ms = DoublePrecision(default=0.0)
    created_at = Timestamptz(default=TimestamptzNow())


class WorkflowTimer(Table):
    """A time-based or scheduled rule waiting to fire for a record.

    ``record_id`` is 0 for a scheduled rule, which runs over every record of
    its type. A row fires once: ``fired_at`` is set in the transaction that
    runs the rule.
    """

    id = BigSerial(primary_key=True)
    rule = ForeignKey(WorkflowRule, null=False, on_delete=OnDelete.cascade)
    rule_version = ForeignKey(
        WorkflowRuleVersion, null=False, on_delete=OnDelete.cascade
    )
    record_type = Varchar(length=40)
    record_id = Integer(default=0)
    due_at = Timestamptz()
    fired_at = Timestamptz(null=True, default=None)
    # For a scheduled rule's run: the highest record id already handled,
    # so the next batch starts after it.
    done_through = Integer(default=0)
    created_at = Timestamptz(default=TimestamptzNow())


class WorkflowTimerPlan(Table):
    """The latest run that sets a time-based rule's timers for the records
    that existed when the rule was enabled or saved.

    Each save or enabling raises ``generation``, and a run that finds a
    newer generation stops (``app.workflows.planning``). ``done`` and
    ``total`` count the records checked against the conditions, which are
    those the SQL prefilter allows. ``scheduled`` counts the timers set and
    ``due_now`` those of them that were already due.
    """

    rule = ForeignKey(
        WorkflowRule, primary_key=True, null=False, on_delete=OnDelete.cascade
    )
    rule_version = ForeignKey(
        WorkflowRuleVersion, null=False, on_delete=OnDelete.cascade
    )
    generation = Integer(default=1)
    # One of app.workflows.planning.PLAN_STATES.
    state = Varchar(length=20, default="queued")
    done = Integer(default=0)
    total = Integer(default=0)
    scheduled = Integer(default=0)
    due_now = Integer(default=0)
    # The highest record id planned, where the next batch starts.
    done_through = Integer(default=0)
    error = Text(default="")
    created_by = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
