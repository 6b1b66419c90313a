"""Import jobs, so that a running import can report its progress."""

from __future__ import annotations

from piccolo.columns import JSONB, ForeignKey, Integer, Serial, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from app.auth.tables import User

JOB_STATES = ("queued", "running", "done", "failed")


class ImportJob(Table):
    id: Serial
    source = Varchar(length=40)
    filenames = JSONB(default="[]")
    state = Varchar(length=20, default="queued")
    rows_total = Integer(default=0)
    rows_done = Integer(default=0)
    rows_failed = Integer(default=0)
    # [{"file": ..., "row": ..., "column": ..., "reason": ...}, ...], capped.
    errors = JSONB(default="[]")
    user = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    created_at = Timestamptz(default=TimestamptzNow())
    finished_at = Timestamptz(null=True, default=None)
