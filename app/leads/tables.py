"""The lead table and the activities recorded on leads."""

from __future__ import annotations

from piccolo.columns import JSONB, ForeignKey, Integer, Serial, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from app.accounts.tables import Account
from app.auth.tables import Team, User
from app.contacts.tables import Contact
from app.db import Tracked
from app.deals.tables import Deal
from app.encryption.columns import EncryptableText

STATUSES = ("new", "working", "qualified", "unqualified", "converted")
# Statuses whose outcome is known: the predictive model learns from these.
CLOSED_STATUSES = ("unqualified", "converted")


class Lead(Tracked, Table):
    name = Varchar(length=200, default="")
    email = Varchar(length=254, null=True, default=None)
    company = EncryptableText(length=200, default="")
    source = Varchar(length=120, default="")
    status = Varchar(length=20, default="new")
    owner = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    # Answers to the web form's and the imported questions, question -> answer.
    answers = JSONB(default="{}")
    # Set when the status becomes unqualified or converted.
    closed_at = Timestamptz(null=True, default=None)
    # The two parts of the score and their combination, each 0 to 100.
    rule_score = Integer(null=True, default=None)
    model_score = Integer(null=True, default=None)
    score = Integer(null=True, default=None)
    # [{"text": "Lead Source is Reference", "points": 18, "part": "model"}, ...]
    score_factors = JSONB(default="[]")
    model_version = Integer(null=True, default=None)
    scored_at = Timestamptz(null=True, default=None)
    converted_contact = ForeignKey(
        Contact, null=True, default=None, on_delete=OnDelete.set_null
    )
    converted_account = ForeignKey(
        Account, null=True, default=None, on_delete=OnDelete.set_null
    )
    converted_deal = ForeignKey(
        Deal, null=True, default=None, on_delete=OnDelete.set_null
    )
    converted_at = Timestamptz(null=True, default=None)


class LeadActivity(Table):
    """Something a lead did or that was done with them, such as a call."""

    id: Serial
    lead = ForeignKey(Lead, null=False, on_delete=OnDelete.cascade)
    kind = Varchar(length=40)
    detail = Varchar(length=300, default="")
    actor = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    occurred_at = Timestamptz(default=TimestamptzNow())


class WebFormSettings(Table):
    """The web-to-lead form's settings; the one row has id 1.

    Without the row the form uses the defaults of ``app.leads.webform_settings``.
    """

    id: Serial
    source = Varchar(length=120, default="Web form")
    default_owner = ForeignKey(
        User, null=True, default=None, on_delete=OnDelete.set_null
    )
    default_team = ForeignKey(
        Team, null=True, default=None, on_delete=OnDelete.set_null
    )
    # The optional standard fields shown besides email, such as ["name"].
    fields = JSONB(default='["name", "company"]')
    # Questions shown as text inputs, stored as the lead's answers.
    questions = JSONB(default="[]")
    # Sources a posted form may name instead of ``source``, such as a
    # partner's page that embeds the form with ?source=Partner.
    sources = JSONB(default="[]")
    redirect_url = Varchar(length=2000, default="")
    # Origins such as "https://www.example.com" that may frame the form.
    allowed_origins = JSONB(default="[]")
    updated_at = Timestamptz(default=TimestamptzNow())
