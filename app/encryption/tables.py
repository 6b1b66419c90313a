"""The fields administrators marked sensitive, and the progress of their job."""

from __future__ import annotations

from piccolo.columns import ForeignKey, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from app.auth.tables import User


class SensitiveField(Table):
    """A marked column. The row is deleted once an unmarked column is decrypted.

    ``state`` is ``encrypting`` or ``decrypting`` while a job rewrites the
    stored values (``done`` of ``total``), and ``encrypted`` after.
    """

    id: Serial
    table_name = Varchar(length=63)
    column_name = Varchar(length=63)
    state = Varchar(length=20)
    done = Integer(default=0)
    total = Integer(default=0)
    job_id = Varchar(length=120, default="")
    error = Text(default="")
    changed_by = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    updated_at = Timestamptz(default=TimestamptzNow())
