"""The audit_log table. Rows are only ever inserted, never updated or deleted."""

from __future__ import annotations

from piccolo.columns import JSONB, BigSerial, Integer, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class AuditLog(Table, tablename="audit_log"):
    id = BigSerial(primary_key=True)
    # The database clock when the row was appended, under the append lock.
    created_at = Timestamptz(default=TimestamptzNow())
    # No foreign key: a user's rows must outlive the user, and ON DELETE SET
    # NULL would be an UPDATE, which the table rejects.
    actor_id = Integer(null=True, default=None)
    client_address = Varchar(length=64, null=True, default=None)
    # create, update, delete, role_change, sign_in, sign_in_failed, export.
    action = Varchar(length=40)
    record_type = Varchar(length=40, null=True, default=None)
    record_id = Integer(null=True, default=None)
    # {"field": [before, after], ...}, with before null on create and after null
    # on delete.
    changes = JSONB(default="{}")
    # Facts that are not field changes, such as the email a failed sign-in tried.
    details = JSONB(default="{}")
    # SHA-256 (hex) of the previous row, and of this row's fields plus prev_hash.
    prev_hash = Varchar(length=64)
    hash = Varchar(length=64)
