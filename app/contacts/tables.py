"""The contact table."""

from __future__ import annotations

from piccolo.columns import ForeignKey, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from app.accounts.tables import Account
from app.auth.tables import User
from app.db import Tracked
from app.encryption.columns import EncryptableText, EncryptedText


class Contact(Tracked, Table):
    first_name = Varchar(length=120, default="")
    last_name = Varchar(length=120, default="")
    email = Varchar(length=254, null=True, default=None, index=True)
    phone = EncryptedText(length=60, default="")
    title = EncryptableText(length=200, default="")
    lifecycle_stage = Varchar(length=60, default="")
    account = ForeignKey(Account, null=True, default=None, on_delete=OnDelete.set_null)
    owner = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    personal_notes = EncryptedText(length=5000, default="")
