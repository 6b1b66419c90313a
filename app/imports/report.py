"""The outcome of an import: counts per table and the rows it could not import."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class ImportFileError(ValueError):
    """Raised for a file that cannot be imported at all.

    Examples are a file in no known format, one that is not UTF-8, and invalid
    JSON. It is raised before the import writes anything, and the message
    names the file.
    """

    def reason(self, file_name: str) -> str:
        """Return the message without its leading file name, for an error
        that names the file already."""
        message = str(self)
        if message.startswith(f"{file_name} "):
            return message[len(file_name) + 1 :]
        return message


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

    def __str__(self) -> str:
        where = f"{self.file}:{self.row}"
        if self.column is not None:
            where += f" {self.column}"
        if self.value is not None:
            where += f" {self.value!r}"
        return f"{where}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "row": self.row,
            "column": self.column,
            "value": self.value,
            "reason": self.reason,
        }


@dataclass
class TableCounts:
    created: int = 0
    updated: int = 0
    # Records edited in Switchboard since the last import, left as they are.
    kept: int = 0


@dataclass
class ImportReport:
    """The outcome of ``run_import``.

    ``counts`` is keyed by table name. ``rows_failed`` counts input rows that
    were not imported. A row can have more than one entry in ``errors``.
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

    def count(
        self, table: str, *, created: int = 0, updated: int = 0, kept: int = 0
    ) -> None:
        counts = self.counts.setdefault(table, TableCounts())
        counts.created += created
        counts.updated += updated
        counts.kept += kept

    def summary(self) -> str:
        """Describe the outcome in one line, for logs and the command line."""
        tables = ", ".join(
            f"{table} {counts.created} created {counts.updated} updated"
            + (
                f" {counts.kept} kept (edited since the last import)"
                if counts.kept
                else ""
            )
            for table, counts in self.counts.items()
        )
        return (
            f"{self.source} import of {self.rows_total} rows in {self.seconds:.1f} s: "
            f"{self.rows_failed} failed, {len(self.warnings)} warnings; "
            f"{tables or 'nothing written'}"
        )
