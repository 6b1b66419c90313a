"""The account table."""

from __future__ import annotations

from piccolo.columns import ForeignKey, Integer, Numeric, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from app.auth.tables import User
from app.db import Tracked
from app.encryption.columns import EncryptableText


class Account(Tracked, Table):
    name = Varchar(length=200, index=True)
    domain = Varchar(length=200, null=True, default=None, index=True)
    industry = Varchar(length=120, default="")
    employees = Integer(null=True, default=None)
    annual_revenue = Numeric(digits=(16, 2), null=True, default=None)
    year_established = Integer(null=True, default=None)
    phone = EncryptableText(length=60, default="")
    website = EncryptableText(length=300, default="")
    city = EncryptableText(length=120, default="")
    country = Varchar(length=120, default="")
    parent: ForeignKey = ForeignKey(
        "self", null=True, default=None, on_delete=OnDelete.set_null
    )
    owner = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    # A service tier such as "gold"; SLA policies can match on it.
    tier = Varchar(length=40, default="")
