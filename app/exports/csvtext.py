"""CSV text for spreadsheets: safe cells, and rows encoded a chunk at a time."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

# A spreadsheet evaluates a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Lets spreadsheets read the file as UTF-8. The import reader skips it too.
BYTE_ORDER_MARK = "\ufeff"


def cell(value: Any) -> str:
    """Return ``value`` as CSV cell text that no spreadsheet runs as a formula.

    Text starting with = + - @ tab or carriage return gets a leading
    apostrophe, which spreadsheets show as text. Numbers, dates and
    booleans come from the database's typed columns, so they cannot
    carry a formula and are written as they are.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def encode_rows(rows: Iterable[Sequence[Any]]) -> bytes:
    """Encode rows as CSV lines (CRLF line ends, as RFC 4180 specifies) in UTF-8."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow([cell(value) for value in row])
    return buffer.getvalue().encode()


def content_disposition(filename: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in filename)
    return f'attachment; filename="{safe}"'
