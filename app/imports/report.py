"""What an import did: counts per table and the rows it could not import."""

from __future__ import annotations

from dataclasses import dataclass, field


class ImportFileError(ValueError):
    """A file cannot be imported at all: unknown format, bad encoding, bad JSON.

    Raised before the import writes anything. The message names the file.
    """


@dataclass(frozen=True)
class RowError:
    """One problem with one input row.

    ``row`` is the line number in a CSV file (header = 1), or the 1-based
    position of the record in a JSON file's ``records`` list. ``column`` and
    ``value`` are ``None`` when the problem is not about one field.
    """

    file: str
    row: int
    column: str | None
    value: str | None
    reason: str


@dataclass
class TableCounts:
    created: int = 0
    updated: int = 0


@dataclass
class ImportReport:
    """The outcome of ``run_import``.

    ``counts`` is keyed by table name. ``rows_failed`` counts input rows that
    were not imported; a row can have more than one entry in ``errors``.
    """

    source: str
    files: list[str]
    rows_total: int = 0
    rows_done: int = 0
    rows_failed: int = 0
    counts: dict[str, TableCounts] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)
    # Problems with rows that were imported anyway, such as a link to a
    # record that does not exist, which is left empty.
    warnings: list[RowError] = field(default_factory=list)
    # Files in a given folder that match none of the source's formats.
    ignored_files: list[str] = field(default_factory=list)
    pipeline_ids: set[int] = field(default_factory=set)
    tickets_changed: bool = False
    seconds: float = 0.0

    def count(self, table: str, *, created: int = 0, updated: int = 0) -> None:
        counts = self.counts.setdefault(table, TableCounts())
        counts.created += created
        counts.updated += updated
