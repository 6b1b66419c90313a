"""Conditions that match search text against the fields of one record type.

A field is searched only when the viewer may see it and its stored values
are plaintext. Matching a hidden field would reveal its value one guess at
a time, and encrypted values never match.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from piccolo.table import Table

from app.access.permissions import Access
from app.encryption.columns import encrypted_columns
from app.pagination import contains_pattern

# Text that may be a phone number: digits, spaces and + ( ) - . /
PHONE_TEXT = re.compile(r"[0-9+()./\s-]+")
# A shorter run of digits would match most phone numbers.
MIN_PHONE_DIGITS = 3


def searchable(
    access: Access, object_type: str, table: type[Table], fields: Mapping[str, str]
) -> list[str]:
    """Return the SQL of the ``fields`` (field name to SQL) that may be searched.

    Each field name must be the name of its column.
    """
    encrypted = set(encrypted_columns(table))
    return [
        sql
        for name, sql in fields.items()
        if access.can_see(object_type, name) and name not in encrypted
    ]


def contains_any(columns: Sequence[str], search: str, args: list[object]) -> str:
    """Return the condition that one of ``columns`` contains ``search``.

    The match ignores case and takes ``%`` and ``_`` literally. Without any
    column to search the condition is FALSE.
    """
    if not columns:
        return "FALSE"
    pattern = contains_pattern(search)
    args.extend([pattern] * len(columns))
    return "(" + " OR ".join(f"{column} ILIKE {{}}" for column in columns) + ")"


def phone_digits(search: str) -> str | None:
    """Return the digits of search text that looks like a phone number, else None."""
    if not PHONE_TEXT.fullmatch(search):
        return None
    digits = re.sub(r"[^0-9]", "", search)
    return digits if len(digits) >= MIN_PHONE_DIGITS else None


def any_of(conditions: Sequence[str]) -> str:
    """Join conditions with OR; FALSE when there are none."""
    if not conditions:
        return "FALSE"
    if len(conditions) == 1:
        return conditions[0]
    return "(" + " OR ".join(conditions) + ")"
