"""Import jobs, so that a running import can report its progress."""

from __future__ import annotations

from piccolo.columns import (
    JSONB,
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

# A "draft" job contains an uploaded CSV while its columns are mapped. No
# worker touches it until it is queued.
JOB_STATES = ("draft", "queued", "running", "done", "failed")


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
    # Written by the worker while the job runs. An unfinished job whose
    # heartbeat is old has lost its worker and is run again.
    heartbeat_at = Timestamptz(null=True, default=None)
    # Runs that ended without finishing or stopping cleanly (the worker was
    # killed, or the queue lost the job). The job fails after a few.
    lost_runs = Integer(default=0)


class ImportMapping(Table):
    """A saved mapping of CSV headers to record fields, offered again for the
    same set of headers. ``owner`` is None for a mapping shared by everyone."""

    id: Serial
    name = Varchar(length=120)
    target = Varchar(length=20)
    # The digest of the file's header set (see app.imports.targets.header_key).
    header_key = Varchar(length=64)
    headers = JSONB(default="[]")
    # {header: field name, or "" to ignore the column}
    mapping = JSONB(default="{}")
    owner = ForeignKey(User, null=True, default=None, on_delete=OnDelete.cascade)
    created_by = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class ImportRejectedRow(Table):
    """An input row an import did not write: its original fields and why."""

    id: Serial
    job = ForeignKey(ImportJob, on_delete=OnDelete.cascade)
    file = Varchar(length=255, default="")
    line = Integer(default=0)
    # The file's header and the row's fields, both as lists of text, empty
    # for a record of a JSON file.
    header = JSONB(default="[]")
    fields = JSONB(default="[]")
    errors = Text(default="")
