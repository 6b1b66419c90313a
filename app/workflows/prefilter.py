"""A SQL prefilter derived from a rule's condition group.

``candidate_filter`` turns a condition group into a WHERE fragment that is
TRUE for every record that ``conditions.evaluate`` accepts, and possibly for
more. Readers that go through all records of a type (timer planning, the
counts before a save, scheduled runs) read only these candidates and still
evaluate the exact conditions on each, so the fragment only has to be a
superset.

A condition becomes SQL only where the translation is exact or provably
wider:

- text columns: ``equals``, ``not_equals``, ``in``, ``contains`` and
  ``starts_with`` compare ``lower()`` under the "C" collation, which folds
  ASCII letters only. Python's ``casefold()`` agrees with it on ASCII text,
  and ``strip()`` removes the same characters as ``btrim`` with
  ``ASCII_WHITESPACE``. Text with any non-ASCII character is always a
  candidate. A needle that is not ASCII after ``casefold()`` matches no
  ASCII text, so only text with a non-ASCII character is a candidate then.
- integer, numeric, date and timestamptz columns: ``equals``,
  ``not_equals``, ``in``, ``greater`` and ``less`` with the value that
  ``conditions.coerce`` makes of the condition's text, as a parameter.
- ``is_empty`` on any of these columns.

Everything else is TRUE (no filtering): lists such as tags, actor and
trigger fields, derived fields, encrypted or encryptable columns, floating
point columns, ``changed`` and ``changed_to``, empty values and values that
``coerce`` rejects. In an ``all`` group such members drop out of the AND,
and in an ``any`` group one of them makes the whole group TRUE.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from piccolo.columns import (
    Column,
    Date,
    ForeignKey,
    Integer,
    Numeric,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)

from app.encryption.columns import EncryptableText, EncryptedText
from app.encryption.marked import ELIGIBLE_BY_KEY
from app.workflows.conditions import Mismatch, coerce, is_empty
from app.workflows.records import RecordType
from app.workflows.schema import Condition, Group

# The characters Python's str.strip() removes from ASCII text, including
# the separators \x1c to \x1f that str.isspace() counts as whitespace.
ASCII_WHITESPACE = "".join(chr(code) for code in range(128) if chr(code).isspace())
# A regular expression that finds a non-ASCII character. PostgreSQL text
# cannot contain NUL, so the range starts at 1.
NON_ASCII = "[^\x01-\x7f]"
# Numbers beyond these bounds stay in Python, because numeric parameters of
# such a size are slow or overflow PostgreSQL's numeric type.
MAX_NUMBER_EXPONENT = 1000
MAX_NUMBER_DIGITS = 1000

TEXT, NUMBER, DATE, TIMESTAMP = "text", "number", "date", "timestamptz"
# The value of each column kind that ``coerce`` converts a condition's text
# against, so the prefilter parses values exactly as the evaluator does.
SAMPLES: dict[str, Any] = {
    NUMBER: Decimal(0),
    DATE: dt.date(2000, 1, 1),
    TIMESTAMP: dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
}
CASTS = {NUMBER: "numeric", DATE: "date", TIMESTAMP: "timestamptz"}


@dataclass(frozen=True)
class SqlFilter:
    """A WHERE fragment with Piccolo's ``{}`` placeholders and their arguments."""

    sql: str
    args: tuple[Any, ...] = ()

    @property
    def matches_all(self) -> bool:
        return self.sql == "TRUE"


MATCH_ALL = SqlFilter("TRUE")


def join_filters(operator: str, parts: Iterable[SqlFilter]) -> SqlFilter:
    """Combine ``parts`` with AND or OR, keeping their arguments in order."""
    members = list(parts)
    if len(members) == 1:
        return members[0]
    sql = f" {operator} ".join(f"({member.sql})" for member in members)
    args = tuple(arg for member in members for arg in member.args)
    return SqlFilter(f"({sql})", args)


def column_kind(record_type: RecordType, name: str) -> str | None:
    """Return how the prefilter compares the field ``name``, or None when it
    leaves the field to Python."""
    if name not in record_type.readable or name in record_type.derived_fields:
        return None
    if name == "tags":
        # complete_record turns the array into a list, which matches by element.
        return None
    table = record_type.table
    column = next(
        (c for c in table._meta.columns if c._meta.db_column_name == name), None
    )
    if column is None:
        return None
    return kind_of(table._meta.tablename, column)


def kind_of(tablename: str, column: Column) -> str | None:
    name = column._meta.db_column_name
    if isinstance(column, EncryptedText | EncryptableText):
        return None
    if (tablename, name) in ELIGIBLE_BY_KEY:
        # Administrators may mark it sensitive, and then it contains ciphertext.
        return None
    if isinstance(column, Varchar | Text):
        return TEXT
    if isinstance(column, Integer | Serial | Numeric):
        return NUMBER
    if isinstance(column, ForeignKey):
        target = column._foreign_key_meta.resolved_references._meta.primary_key
        return NUMBER if isinstance(target, Serial | Integer) else None
    if isinstance(column, Timestamptz):
        return TIMESTAMP
    if isinstance(column, Date):
        return DATE
    return None


def candidate_filter(record_type: RecordType, group: Group) -> SqlFilter:
    """Return a WHERE fragment that holds for every record of ``record_type``
    whose fields satisfy ``group``, as ``conditions.evaluate`` decides."""
    parts = [
        candidate_filter(record_type, item)
        if isinstance(item, Group)
        else condition_filter(record_type, item)
        for item in group.items
    ]
    if group.match == "all":
        kept = [part for part in parts if not part.matches_all]
        return join_filters("AND", kept) if kept else MATCH_ALL
    if not parts or any(part.matches_all for part in parts):
        return MATCH_ALL
    return join_filters("OR", parts)


def condition_filter(record_type: RecordType, condition: Condition) -> SqlFilter:
    kind = column_kind(record_type, condition.field)
    if kind is None:
        return MATCH_ALL
    column = f'"{condition.field}"'
    if condition.op == "is_empty":
        if kind == TEXT:
            return SqlFilter(f"{column} IS NULL OR {column} = ''")
        return SqlFilter(f"{column} IS NULL")
    if is_empty(condition.value):
        # Other operators raise Mismatch on an empty value, and equals and
        # not_equals compare the text of None, so Python decides.
        return MATCH_ALL
    if kind == TEXT:
        return text_filter(column, condition.op, condition.value)
    return ordered_filter(column, kind, condition.op, condition.value)


def options_of(value: Any) -> list[Any]:
    """Return the options of an ``in`` condition, split as ``compare`` does."""
    return value if isinstance(value, list) else str(value).split(",")


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def text_filter(column: str, op: str, value: Any) -> SqlFilter:
    non_ascii = SqlFilter(f'{column} COLLATE "C" ~ {{}}', (NON_ASCII,))
    not_empty = SqlFilter(f"{column} <> ''")
    stripped = f'lower(btrim({column} COLLATE "C", {{}}))'
    lowered = f'lower({column} COLLATE "C")'

    if op in ("equals", "in"):
        options = [value] if op == "equals" else options_of(value)
        needles = [str(option).strip().casefold() for option in options]
        ascii_needles = sorted({needle for needle in needles if needle.isascii()})
        if not ascii_needles:
            return join_filters("AND", [not_empty, non_ascii])
        equal = SqlFilter(
            f"{stripped} = ANY({{}}::text[])", (ASCII_WHITESPACE, ascii_needles)
        )
        return join_filters("AND", [not_empty, join_filters("OR", [equal, non_ascii])])
    if op == "not_equals":
        needle = str(value).strip().casefold()
        if not needle.isascii():
            # No ASCII text equals the needle, so every record is a candidate.
            return MATCH_ALL
        empty = SqlFilter(f"{column} IS NULL OR {column} = ''")
        differs = SqlFilter(f"{stripped} <> {{}}", (ASCII_WHITESPACE, needle))
        return join_filters("OR", [empty, non_ascii, differs])
    if op in ("contains", "starts_with"):
        needle = str(value).casefold()
        if not needle.isascii():
            return non_ascii
        pattern = escape_like(needle) + "%"
        if op == "contains":
            pattern = "%" + pattern
        like = SqlFilter(f"{lowered} LIKE {{}} ESCAPE '\\'", (pattern,))
        return join_filters("OR", [like, non_ascii])
    # greater and less raise Mismatch on text.
    return MATCH_ALL


def exact_value(kind: str, value: Any) -> Any | None:
    """Return ``value`` as ``coerce`` converts it for a field of ``kind``, or
    None when Python must decide: the value is invalid, or PostgreSQL
    would compare it differently."""
    try:
        wanted = coerce(value, SAMPLES[kind])
    except Mismatch:
        return None
    if isinstance(wanted, Decimal):
        # NaN and infinities raise or compare differently in Python.
        if not wanted.is_finite():
            return None
        if abs(wanted.adjusted()) > MAX_NUMBER_EXPONENT:
            return None
        if len(wanted.as_tuple().digits) > MAX_NUMBER_DIGITS:
            return None
        return wanted
    # asyncpg reads PostgreSQL's infinite dates as the first and last day
    # Python has, so values in those years stay in Python.
    if wanted.year in (dt.MINYEAR, dt.MAXYEAR):
        return None
    return wanted


def ordered_filter(column: str, kind: str, op: str, value: Any) -> SqlFilter:
    cast = CASTS[kind]
    if op == "in":
        wanted = [exact_value(kind, option) for option in options_of(value)]
        if any(option is None for option in wanted):
            return MATCH_ALL
        return SqlFilter(f"{column} = ANY({{}}::{cast}[])", (wanted,))
    operators = {"equals": "=", "not_equals": "<>", "greater": ">", "less": "<"}
    if op not in operators:
        # contains and starts_with raise Mismatch on numbers and dates.
        return MATCH_ALL
    single = exact_value(kind, value)
    if single is None:
        return MATCH_ALL
    compared = SqlFilter(f"{column} {operators[op]} {{}}::{cast}", (single,))
    if op == "not_equals":
        # An empty field differs from any value that is not empty.
        return join_filters("OR", [SqlFilter(f"{column} IS NULL"), compared])
    return compared
