"""The rows an import did not write, kept with their original fields so that
the user can download them, fix them and import them again."""

from __future__ import annotations

import csv
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from app.exports.csvtext import BYTE_ORDER_MARK, encode_rows
from app.imports.csvfiles import open_text
from app.imports.report import RowError
from app.imports.tables import ImportRejectedRow

logger = logging.getLogger(__name__)

CHUNK_ROWS = 500
REPORT_COLUMNS = ("file", "line", "errors")


def describe_errors(errors: Iterable[RowError]) -> str:
    """Join a row's problems, each with its column and value, into one cell."""
    parts = []
    for error in errors:
        where = error.column or ""
        if error.value not in (None, ""):
            where += f" {error.value!r}"
        parts.append(f"{where}: {error.reason}" if where else error.reason)
    return "; ".join(parts)


def original_rows(
    path: Path, lines: set[int]
) -> tuple[list[str], dict[int, list[str]]]:
    """Return the header of a CSV file and the fields of its rows that start at
    one of ``lines`` (header = line 1), as the file has them."""
    found: dict[int, list[str]] = {}
    with open_text(path) as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        line = reader.line_num + 1
        for fields in reader:
            first_line = line
            line = reader.line_num + 1
            if first_line in lines:
                found[first_line] = fields
    return header, found


async def store_rejected_rows(
    job_id: int, paths: dict[str, Path], errors: list[RowError]
) -> int:
    """Replace the rejected rows of ``job_id`` with those of ``errors``.

    ``paths`` maps each imported file's name to its path. A row with several
    errors is stored once with all of them. Returns the number of rows.
    """
    by_row: dict[tuple[str, int], list[RowError]] = defaultdict(list)
    for error in errors:
        by_row[(error.file, error.row)].append(error)

    lines_by_file: dict[str, set[int]] = defaultdict(set)
    for file, line in by_row:
        lines_by_file[file].add(line)
    originals: dict[str, tuple[list[str], dict[int, list[str]]]] = {}
    for file, lines in lines_by_file.items():
        path = paths.get(file)
        if path is not None and path.suffix.lower() == ".csv" and path.is_file():
            try:
                originals[file] = original_rows(path, lines)
            except (OSError, UnicodeDecodeError, csv.Error) as error:
                logger.warning(
                    "rejected rows kept without their fields job_id=%s file=%s "
                    "error=%r",
                    job_id,
                    file,
                    error,
                )

    rows = []
    for (file, line), row_errors in sorted(by_row.items()):
        header, found = originals.get(file, ([], {}))
        rows.append(
            ImportRejectedRow(
                job=job_id,
                file=file[:255],
                line=line,
                header=header if line in found else [],
                fields=found.get(line, []),
                errors=describe_errors(row_errors),
            )
        )
    async with ImportRejectedRow._meta.db.transaction():
        await ImportRejectedRow.delete().where(ImportRejectedRow.job == job_id)
        for start in range(0, len(rows), CHUNK_ROWS):
            await ImportRejectedRow.insert(*rows[start : start + CHUNK_ROWS])
    logger.info("rejected rows stored job_id=%s rows=%d", job_id, len(rows))
    return len(rows)


async def count_rejected_rows(job_id: int) -> int:
    return await ImportRejectedRow.count().where(ImportRejectedRow.job == job_id)


async def report_header(job_id: int) -> list[str]:
    """Return the report's columns: file, line, errors, then every column of the
    rejected rows' files in the order they first appear."""
    rows = await ImportRejectedRow.raw(
        "SELECT header FROM import_rejected_row WHERE job = {} "
        "GROUP BY header ORDER BY min(id)",
        job_id,
    )
    columns: list[str] = []
    for row in rows:
        header = row["header"]
        for name in json.loads(header) if isinstance(header, str) else header:
            if name not in columns and name not in REPORT_COLUMNS:
                columns.append(name)
    return [*REPORT_COLUMNS, *columns]


async def stream_report(job_id: int, columns: list[str]) -> AsyncIterator[bytes]:
    """Yield the report as CSV, a chunk of rows per database read."""
    yield (BYTE_ORDER_MARK).encode() + encode_rows([columns])
    after = 0
    while True:
        chunk = (
            await ImportRejectedRow.select()
            .where(ImportRejectedRow.job == job_id, ImportRejectedRow.id > after)
            .order_by(ImportRejectedRow.id)
            .limit(CHUNK_ROWS)
            .output(load_json=True)
        )
        if not chunk:
            return
        yield encode_rows(report_line(row, columns) for row in chunk)
        after = chunk[-1]["id"]


def report_line(row: dict[str, Any], columns: list[str]) -> list[Any]:
    values = dict(zip(row["header"], row["fields"], strict=False))
    values.update({"file": row["file"], "line": row["line"], "errors": row["errors"]})
    return [values.get(name, "") for name in columns]
