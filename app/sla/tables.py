"""Business-hours calendars, SLA policies and the SLA state of each ticket."""

from __future__ import annotations

from piccolo.columns import (
    JSONB,
    Array,
    BigInt,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    Serial,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from app.auth.tables import Team
from app.tickets.tables import Ticket


class BusinessCalendar(Table, tablename="sla_calendar"):
    id: Serial
    name = Varchar(length=120, unique=True)
    # An IANA zone name such as "Europe/Berlin".
    time_zone = Varchar(length=64, default="UTC")
    # Seven lists, Monday first, of [start, end] wall-clock times "HH:MM";
    # "24:00" ends an interval at midnight.
    hours = JSONB(default="[]")
    holidays = Array(base_column=Date())
    updated_at = Timestamptz(default=TimestamptzNow())


class SlaPolicy(Table, tablename="sla_policy"):
    """Targets for the tickets that match its conditions.

    The first active policy by ``position`` whose conditions all hold applies.
    A condition left empty (``team``, ``account_tier``) matches any ticket.
    """

    id: Serial
    name = Varchar(length=120, unique=True)
    position = Integer(default=0)
    active = Boolean(default=True)
    calendar = ForeignKey(BusinessCalendar, null=False, on_delete=OnDelete.restrict)
    team = ForeignKey(Team, null=True, default=None, on_delete=OnDelete.cascade)
    account_tier = Varchar(length=40, default="")
    # {"urgent": {"first_response": 60, "next_response": 120, "resolution": 480}}
    # in business minutes; a missing target is not measured.
    targets = JSONB(default="{}")
    updated_at = Timestamptz(default=TimestamptzNow())


class TicketSla(Table, tablename="ticket_sla"):
    """The policy that applies to a ticket and the time it spent pending.

    ``paused_seconds`` counts the business time spent pending so far, and
    ``paused_at`` is set while the ticket is pending now.
    """

    id: Serial
    ticket = ForeignKey(Ticket, null=False, unique=True, on_delete=OnDelete.cascade)
    policy = ForeignKey(SlaPolicy, null=True, default=None, on_delete=OnDelete.set_null)
    calendar = ForeignKey(
        BusinessCalendar, null=True, default=None, on_delete=OnDelete.set_null
    )
    priority = Varchar(length=20, default="medium")
    started_at = Timestamptz(default=TimestamptzNow())
    paused_at = Timestamptz(null=True, default=None)
    paused_seconds = BigInt(default=0)
    updated_at = Timestamptz(default=TimestamptzNow())


class SlaClock(Table, tablename="sla_clock"):
    """One measured target of a ticket: first response, one next response, or
    resolution.

    A clock runs while ``stopped_at`` is empty. Its due time is
    ``target_seconds`` of business time after ``started_at``, plus the
    business time the ticket spent pending since then (``paused_seconds`` of
    the ticket minus ``paused_base``). ``met`` is True or False once the
    target was reached, and empty for a clock stopped without a result, such
    as a response target of a ticket solved without a reply.
    """

    id: Serial
    ticket = ForeignKey(Ticket, null=False, on_delete=OnDelete.cascade)
    metric = Varchar(length=20)
    started_at = Timestamptz(default=TimestamptzNow())
    paused_base = BigInt(default=0)
    target_seconds = Integer()
    due_at = Timestamptz()
    # When 75 % of the target has passed; the cron sends "sla.warning" then.
    warn_at = Timestamptz()
    stopped_at = Timestamptz(null=True, default=None)
    met = Boolean(null=True, default=None)
    breached_at = Timestamptz(null=True, default=None)
    warned_at = Timestamptz(null=True, default=None)
