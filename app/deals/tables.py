"""Products, pipelines, stages and deals."""

from __future__ import annotations

from piccolo.columns import (
    JSONB,
    Array,
    Date,
    ForeignKey,
    Integer,
    Numeric,
    Real,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from app.accounts.tables import Account
from app.auth.tables import Team, User
from app.contacts.tables import Contact
from app.db import Tracked

STAGE_KINDS = ("open", "won", "lost")


class Product(Tracked, Table):
    name = Varchar(length=200, unique=True)
    series = Varchar(length=120, default="")
    price = Numeric(digits=(14, 2), null=True, default=None)


class Pipeline(Tracked, Table):
    name = Varchar(length=200, unique=True)
    position = Integer(default=0)


class Stage(Tracked, Table):
    pipeline = ForeignKey(Pipeline, null=False, on_delete=OnDelete.restrict)
    name = Varchar(length=120)
    position = Integer(default=0)
    # Chance, from 0 to 100, that a deal in this stage is won.
    probability = Integer(default=0)
    kind = Varchar(length=10, default="open")
    # Deal fields that must hold a value before a deal may enter this stage
    # (names from app.deals.service.REQUIRABLE).
    required_fields = Array(base_column=Varchar(length=40), default=list)


class Deal(Tracked, Table):
    name = Varchar(length=300)
    pipeline = ForeignKey(Pipeline, null=False, on_delete=OnDelete.restrict)
    stage = ForeignKey(Stage, null=False, on_delete=OnDelete.restrict)
    account = ForeignKey(Account, null=True, default=None, on_delete=OnDelete.set_null)
    contact = ForeignKey(Contact, null=True, default=None, on_delete=OnDelete.set_null)
    product = ForeignKey(Product, null=True, default=None, on_delete=OnDelete.set_null)
    owner = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    team = ForeignKey(Team, null=True, default=None, on_delete=OnDelete.set_null)
    amount = Numeric(digits=(14, 2), null=True, default=None)
    close_date = Date(null=True, default=None)
    engage_date = Date(null=True, default=None)
    # "pipeline", "best_case", "commit" or "omitted" (a CHECK constraint),
    # or None for the category the stage implies (app.forecast.figures).
    forecast_category = Varchar(length=20, null=True, default=None)
    # The win probability and factors last computed for the open deal
    # (``DealChance.to_json``), kept by app.forecast.scores; None when closed.
    win_probability = Real(null=True, default=None)
    win_chance = JSONB(null=True, default=None)
    win_scored_at = Timestamptz(null=True, default=None)
    # Set whenever the deal enters a stage. Board columns list the most
    # recent arrivals first, so a moved card lands at the top everywhere.
    stage_entered_at = Timestamptz(default=TimestamptzNow())
