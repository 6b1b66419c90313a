"""Run an import file by file in batches, each batch in its own transaction."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from app.imports.csvfiles import CsvReader, count_rows, read_header
from app.imports.fields import RowValues
from app.imports.report import ImportReport, RowError, TableCounts
from app.imports.writer import transaction

logger = logging.getLogger(__name__)

BATCH_SIZE = 500

ProgressCallback = Callable[[int, int], Awaitable[None]]


@dataclass
class SourceFiles:
    """The input files of one import, each tagged with the format it has."""

    # (format, path) in the order the source imports them.
    files: list[tuple[str, Path]]
    unrecognised: list[Path]
    rows_total: int

    def paths(self, kind: str) -> list[Path]:
        return [path for file_kind, path in self.files if file_kind == kind]


@dataclass
class Batch:
    """Consecutive input rows of one file, written in one transaction.

    ``rows`` contains the rows that passed ``Step.prepare`` as ``(line, record)``.
    The write function may still ``reject`` some of them. Counts, warnings and
    those rejections reach the report only when the transaction commits. After
    a rollback, every prepared row is reported as failed instead.
    """

    file: str
    first_line: int = 0
    last_line: int = 0
    size: int = 0
    rows: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    failed_lines: set[int] = field(default_factory=set)
    rejected_lines: set[int] = field(default_factory=set)
    warnings: list[RowError] = field(default_factory=list)
    counts: dict[str, TableCounts] = field(default_factory=dict)
    pipeline_ids: set[int] = field(default_factory=set)
    tickets_changed: bool = False
    # Run after the batch commits, for state that must not outlive a rollback.
    after_commit: list[Callable[[], None]] = field(default_factory=list)

    def add_line(self, line: int) -> None:
        if not self.size:
            self.first_line = line
        self.last_line = max(self.last_line, line)
        self.size += 1

    def fail(
        self, line: int, column: str | None, value: str | None, reason: str
    ) -> None:
        self.errors.append(RowError(self.file, line, column, value, reason))
        self.failed_lines.add(line)

    def reject(
        self, line: int, column: str | None, value: str | None, reason: str
    ) -> None:
        """Keep a prepared row out of the write, reporting why."""
        self.fail(line, column, value, reason)
        self.rejected_lines.add(line)

    def warn(
        self, line: int, column: str | None, value: str | None, reason: str
    ) -> None:
        """Report a problem with a row that is still imported, such as a link
        to a record that does not exist and is left empty."""
        self.warnings.append(RowError(self.file, line, column, value, reason))

    def accepted(self) -> list[tuple[int, dict[str, Any]]]:
        return [
            (line, row) for line, row in self.rows if line not in self.rejected_lines
        ]

    def count(
        self,
        table: type[Any],
        written: Iterable[Mapping[str, Any]],
        *,
        created_only: bool = False,
    ) -> None:
        """Add ``upsert``'s rows to the counts of ``table``.

        ``created_only`` leaves out updates, for lookups whose update is a no-op.
        """
        counts = self.counts.setdefault(table._meta.tablename, TableCounts())
        for row in written:
            if row["inserted"]:
                counts.created += 1
            elif row.get("kept"):
                counts.kept += 1
            elif not created_only:
                counts.updated += 1


@dataclass
class Step:
    """One pass over the rows of one file."""

    file: str
    rows: Iterable[tuple[int, Mapping[str, Any]]]
    # Returns the record to write. A row with field errors fails. A row for
    # which it returns None without errors is skipped on purpose.
    prepare: Callable[[RowValues], dict[str, Any] | None]
    write: Callable[[Batch], Awaitable[None]]
    # A record field that must be unique within the file, and the input
    # column it comes from, which duplicate errors name.
    key: str | None = "external_key"
    key_column: str | None = None
    # Rows the reader could not map to columns, as (line, reason). The reader
    # may append to this list while it is iterated.
    unreadable: list[tuple[int, str]] = field(default_factory=list)


def csv_step(
    path: Path,
    prepare: Callable[[RowValues], dict[str, Any] | None],
    write: Callable[[Batch], Awaitable[None]],
    **options: Any,
) -> Step:
    """Build the step over the rows of the CSV file at ``path``.

    ``options`` are the step's ``key`` and ``key_column``, and the rows the
    reader cannot map to columns are the step's ``unreadable`` rows.
    """
    reader = CsvReader(path)
    return Step(
        path.name, reader, prepare, write, unreadable=reader.rejected, **options
    )


class ImportRun:
    """The state of one running import: its report, batch size and progress."""

    def __init__(
        self,
        report: ImportReport,
        *,
        batch_size: int = BATCH_SIZE,
        on_progress: ProgressCallback | None = None,
        job_id: int | None = None,
        user_id: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(
                f"batch_size={batch_size} is invalid, it must be 1 or more"
            )
        self.report = report
        self.batch_size = batch_size
        self.on_progress = on_progress
        # For the logs only.
        self.job_id = job_id
        self.user_id = user_id

    async def progress(self) -> None:
        if self.on_progress is not None:
            await self.on_progress(self.report.rows_done, self.report.rows_total)

    async def run(self, step: Step) -> None:
        """Prepare, check and write every row of ``step``, one batch at a time."""
        seen: dict[Any, int] = {}
        unreadable_done = 0
        batch = Batch(step.file)

        for line, values in step.rows:
            while unreadable_done < len(step.unreadable):
                bad_line, reason = step.unreadable[unreadable_done]
                batch.add_line(bad_line)
                batch.fail(bad_line, None, None, reason)
                unreadable_done += 1

            batch.add_line(line)
            self.take_row(step, batch, seen, line, values)

            if batch.size >= self.batch_size:
                await self.flush(batch, step.write)
                batch = Batch(step.file)

        for bad_line, reason in step.unreadable[unreadable_done:]:
            batch.add_line(bad_line)
            batch.fail(bad_line, None, None, reason)
        if batch.size:
            await self.flush(batch, step.write)

    def take_row(
        self,
        step: Step,
        batch: Batch,
        seen: dict[Any, int],
        line: int,
        values: Mapping[str, Any],
    ) -> None:
        """Add the row's record to ``batch``, or its errors when it is invalid."""
        fields = RowValues(values)
        record = step.prepare(fields)
        if fields.errors:
            for column, value, reason in fields.errors:
                batch.fail(line, column, value, reason)
            return
        if record is None:
            return

        if step.key is not None:
            key = record[step.key]
            if key in seen:
                value = fields.raw(step.key_column) if step.key_column else None
                reason = f"duplicate of row {seen[key]}"
                batch.fail(line, step.key_column, value, reason)
                return
            seen[key] = line
        batch.rows.append((line, record))

    async def flush(
        self, batch: Batch, write: Callable[[Batch], Awaitable[None]]
    ) -> None:
        committed = True
        if batch.rows:
            try:
                async with transaction():
                    await write(batch)
            except asyncpg.PostgresError as error:
                committed = False
                logger.warning(
                    "import batch rolled back job_id=%s user_id=%s source=%s "
                    "file=%s rows=%d-%d error=%s",
                    self.job_id,
                    self.user_id,
                    self.report.source,
                    batch.file,
                    batch.first_line,
                    batch.last_line,
                    error,
                )
                self.roll_back(batch, error)

        report = self.report
        if committed:
            for table, counts in batch.counts.items():
                report.count(
                    table,
                    created=counts.created,
                    updated=counts.updated,
                    kept=counts.kept,
                )
            report.pipeline_ids |= batch.pipeline_ids
            report.tickets_changed |= batch.tickets_changed
            report.warnings.extend(batch.warnings)
            for callback in batch.after_commit:
                callback()
        report.errors.extend(batch.errors)
        report.rows_failed += len(batch.failed_lines)
        report.rows_done += batch.size
        await self.progress()

    def roll_back(self, batch: Batch, error: asyncpg.PostgresError) -> None:
        reason = (
            f"not imported because the database rejected the batch of rows "
            f"{batch.first_line}-{batch.last_line}: {error}"
        )
        # The rollback also undid the lookups behind the write function's
        # rejections, so the rollback reason replaces them. Earlier errors stay.
        batch.errors = [
            item for item in batch.errors if item.row not in batch.rejected_lines
        ]
        batch.counts.clear()
        for line, _ in batch.rows:
            batch.fail(line, None, None, reason)

    async def write_once(self, write: Callable[[], Awaitable[None]]) -> None:
        """Run ``write`` in its own transaction, for steps that are not rows."""
        async with transaction():
            await write()


def recognise_csv(
    paths: Iterable[Path], formats: Mapping[str, Collection[str]]
) -> SourceFiles:
    """Tag each CSV file with the first format whose columns its header has.

    ``formats`` maps a format name to its required columns, in the order the
    formats must be imported. Files that match no format are returned in
    ``unrecognised``. Raises ``ImportFileError`` for unreadable files.
    """
    tagged: list[tuple[str, Path]] = []
    unrecognised: list[Path] = []
    for path in paths:
        header = set(read_header(path))
        kind = next(
            (name for name, required in formats.items() if set(required) <= header),
            None,
        )
        if kind is None:
            unrecognised.append(path)
        else:
            tagged.append((kind, path))

    order = list(formats)
    tagged.sort(key=lambda item: order.index(item[0]))
    rows_total = sum(count_rows(path) for _, path in tagged)
    return SourceFiles(files=tagged, unrecognised=unrecognised, rows_total=rows_total)


def describe_formats(formats: Mapping[str, Collection[str]]) -> str:
    return "; ".join(
        f"{name} (columns {', '.join(columns)})" for name, columns in formats.items()
    )
