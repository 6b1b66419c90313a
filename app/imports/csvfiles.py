"""Read the CSV files that spreadsheets and CRMs export, tolerating their quirks."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from app.imports.report import ImportFileError


class CsvReader:
    """Iterate over a CSV file's data rows as ``(line, values)`` pairs.

    ``line`` is the 1-based line number in the file of the row's first line, so
    that it stays right after quoted fields that span several lines. The header
    is line 1. ``values`` maps every header name to the field's text, and ragged
    rows with fewer fields get ``""`` for the missing ones.

    The file is UTF-8, with or without a byte order mark, and may end its lines
    with LF or CRLF. Empty header names at the end of the header, which
    spreadsheets leave after a trailing comma, are dropped with their fields.
    Blank lines and rows whose fields are all empty are skipped.

    A row with non-empty fields beyond the header cannot be mapped to columns,
    so it is not yielded. Its line and the reason are appended to ``rejected``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rejected: list[tuple[int, str]] = []
        self.header = read_header(path)

    def __iter__(self) -> Iterator[tuple[int, dict[str, str]]]:
        width = len(self.header)
        with open_text(self.path) as handle:
            reader = csv.reader(handle)
            try:
                next(reader)
                line = reader.line_num + 1
                for fields in reader:
                    first_line = line
                    line = reader.line_num + 1
                    if not any(fields):
                        continue

                    surplus = fields[width:]
                    if any(value.strip() for value in surplus):
                        self.rejected.append(
                            (
                                first_line,
                                f"the row has {len(fields)} fields but the header "
                                f"names {width} columns",
                            )
                        )
                        continue

                    fields += [""] * (width - len(fields))
                    yield first_line, dict(zip(self.header, fields, strict=False))
            except UnicodeDecodeError as error:
                raise ImportFileError(
                    f"{self.path.name} is not valid UTF-8 ({error}). "
                    "Save it as UTF-8 and import it again."
                ) from None
            except csv.Error as error:
                raise ImportFileError(
                    f"{self.path.name} is not a valid CSV file at line "
                    f"{reader.line_num}: {error}"
                ) from None


def read_header(path: Path) -> list[str]:
    """Return the header's column names without trailing empty names.

    Raises ``ImportFileError`` when the file is empty, is not UTF-8, or names
    a column twice.
    """
    with open_text(path) as handle:
        try:
            fields = next(csv.reader(handle), None)
        except UnicodeDecodeError as error:
            raise ImportFileError(
                f"{path.name} is not valid UTF-8 ({error}). "
                "Save it as UTF-8 and import it again."
            ) from None
        except csv.Error as error:
            raise ImportFileError(
                f"{path.name} has an invalid header: {error}"
            ) from None

    if not fields:
        raise ImportFileError(f"{path.name} is empty, so it has no header line")

    names = [name.strip() for name in fields]
    while names and not names[-1]:
        names.pop()

    duplicates = sorted({name for name in names if name and names.count(name) > 1})
    if duplicates:
        raise ImportFileError(
            f"{path.name} names the column {duplicates[0]!r} more than once"
        )
    return names


def count_rows(path: Path) -> int:
    """Read the whole file and return its number of data rows, rejected ones included.

    Reading every row first also finds encoding and quoting errors before an
    import writes anything.
    """
    reader = CsvReader(path)
    return sum(1 for _ in reader) + len(reader.rejected)


def open_text(path: Path) -> io.TextIOWrapper:
    # newline="" hands CR and LF to the csv module untouched, so quoted fields
    # keep their own line breaks. utf-8-sig drops a byte order mark.
    return open(path, encoding="utf-8-sig", newline="")
