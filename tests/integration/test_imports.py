"""Imports of the public datasets and of hand-written malformed files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.accounts.tables import Account
from app.comments.tables import Comment
from app.contacts.tables import Contact
from app.deals.tables import Deal
from app.demo import demo_files
from app.events.tables import Event
from app.imports.csvfiles import CsvReader
from app.imports.report import ImportFileError, RowError
from app.imports.service import run_import
from app.tickets.tables import Ticket
from tests.conftest import datasets_dir
from tests.factories import unique

DEALS_HEADER = (
    "Deal ID,Deal Name,Deal Stage,Pipeline,Amount,Close Date,Create Date,"
    "Deal Owner,Deal Type,Closed Lost Reason,Associated Company Domain,"
    "Associated Contact Email"
)


def deal_line(
    deal_id: str,
    name: str,
    *,
    amount: str = "100",
    close: str = "",
    created: str = "2024-12-01",
) -> str:
    """Build one row of a HubSpot deals file in the "Sales Pipeline"."""
    return (
        f"{deal_id},{name},Contract Sent,Sales Pipeline,{amount},"
        f"{close or '2025-03-01'},{created},import.tester@example.com,"
        "New Business,,,"
    )


def write_file(
    path: Path, lines: list[str], *, newline: str = "\n", bom: bool = False
) -> Path:
    text = newline.join(lines) + newline
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return path


async def count(table: Any, prefix: str, where: str = "") -> int:
    rows = await table.raw(
        f"SELECT count(*) AS n FROM {table._meta.tablename} "
        f"WHERE external_key LIKE {{}} {where}",
        prefix + "%",
    )
    return rows[0]["n"]


async def deal_keys(prefix: str) -> set[str]:
    rows = await Deal.raw(
        "SELECT external_key FROM deal WHERE external_key LIKE {}", prefix + "%"
    )
    return {row["external_key"] for row in rows}


async def last_event_id() -> int:
    rows = await Event.raw("SELECT coalesce(max(id), 0) AS id FROM event")
    return rows[0]["id"]


async def reload_events(after: int) -> list[dict[str, Any]]:
    return await Event.raw(
        "SELECT record_type, record_id, topics FROM event "
        "WHERE id > {} AND kind = 'board.reload' ORDER BY id",
        after,
    )


# CSV reading


def test_csv_reader_bom_crlf_multiline(tmp_path: Path) -> None:
    path = write_file(
        tmp_path / "quirks.csv",
        ["name,notes,", 'first,"line one\r\nline two",', "", "second,plain,", ",,"],
        newline="\r\n",
        bom=True,
    )

    reader = CsvReader(path)
    rows = list(reader)

    assert reader.header == ["name", "notes"]
    assert rows == [
        (2, {"name": "first", "notes": "line one\r\nline two"}),
        (5, {"name": "second", "notes": "plain"}),
    ]
    assert reader.rejected == []


def test_csv_reader_ragged_rows(tmp_path: Path) -> None:
    path = write_file(tmp_path / "ragged.csv", ["a,b,c", "1", "1,2,3,4", "5,6,7,,"])

    reader = CsvReader(path)
    rows = list(reader)

    assert rows == [
        (2, {"a": "1", "b": "", "c": ""}),
        (4, {"a": "5", "b": "6", "c": "7"}),
    ]
    assert reader.rejected == [
        (3, "the row has 4 fields but the header names 3 columns")
    ]


def test_csv_reader_rejects_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("name\ncaf\u00e9\n".encode("latin-1"))

    with pytest.raises(ImportFileError, match=r"latin1\.csv is not valid UTF-8"):
        list(CsvReader(path))


# Arguments and files


async def test_run_import_rejects_unknown_source(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"'pipedrive'.*maven, tickets, hubspot, salesforce"
    ):
        await run_import("pipedrive", [tmp_path])


async def test_run_import_rejects_unrecognised_file(tmp_path: Path) -> None:
    path = write_file(tmp_path / "notes.csv", ["title,body", "a,b"])

    with pytest.raises(
        ImportFileError, match=r"notes\.csv matches none of the hubspot"
    ):
        await run_import("hubspot", [path])


async def test_run_import_rejects_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="does not exist"):
        await run_import("maven", [tmp_path / "absent.csv"])


# Malformed rows and failing batches


async def test_malformed_file_partial_import(tmp_path: Path) -> None:
    path = write_file(
        tmp_path / "deals.csv",
        [
            DEALS_HEADER + ",",
            deal_line("MALFORMED-1", "Good first") + ",",
            deal_line("MALFORMED-2", "Spans lines")[:-3] + ',"Price\r\nand timing",,,',
            deal_line("MALFORMED-3", "Bad date", close="2025-02-30") + ",",
            deal_line("MALFORMED-4", "Bad amount", amount="12k") + ",",
            deal_line("MALFORMED-5", "Good last", amount="75.5") + ",",
        ],
        newline="\r\n",
        bom=True,
    )

    report = await run_import("hubspot", [path])

    assert report.errors == [
        RowError(
            "deals.csv",
            5,
            "Close Date",
            "2025-02-30",
            "not a date in the form YYYY-MM-DD",
        ),
        RowError(
            "deals.csv",
            6,
            "Amount",
            "12k",
            "not an amount such as 1200, 1,200 or 1200.50",
        ),
    ]
    assert report.rows_total == 5
    assert report.rows_failed == 2
    assert await deal_keys("hubspot:MALFORMED-") == {
        "hubspot:MALFORMED-1",
        "hubspot:MALFORMED-2",
        "hubspot:MALFORMED-5",
    }
    amounts = await Deal.raw(
        "SELECT amount FROM deal WHERE external_key = 'hubspot:MALFORMED-5'"
    )
    assert str(amounts[0]["amount"]) == "75.50"


async def test_unreadable_numbers_fail_their_rows_only(tmp_path: Path) -> None:
    prefix = unique("NUMBERS").replace(" ", "-")
    path = write_file(
        tmp_path / "deals.csv",
        [
            DEALS_HEADER,
            deal_line(f"{prefix}-1", "Good first", amount="10"),
            deal_line(f"{prefix}-2", "Huge", amount="1e30"),
            deal_line(f"{prefix}-3", "Not a number", amount="NaN"),
            deal_line(f"{prefix}-4", "Infinite", amount="Infinity"),
            deal_line(f"{prefix}-5", "Tenth of a cent", amount="0.001"),
            deal_line(f"{prefix}-6", "Year one", created="0001-01-01T00:00+14:00"),
            deal_line(f"{prefix}-7", "Year 9999", close="9999-12-31"),
            deal_line(f"{prefix}-8", "Good last", amount="1200.50"),
        ],
    )

    report = await run_import("hubspot", [path])

    assert [(e.file, e.row, e.column, e.value) for e in report.errors] == [
        ("deals.csv", 3, "Amount", "1e30"),
        ("deals.csv", 4, "Amount", "NaN"),
        ("deals.csv", 5, "Amount", "Infinity"),
        ("deals.csv", 6, "Amount", "0.001"),
        ("deals.csv", 7, "Create Date", "0001-01-01T00:00+14:00"),
        ("deals.csv", 8, "Close Date", "9999-12-31"),
    ]
    expected = "not an amount such as 1200, 1,200 or 1200.50"
    assert [e.reason for e in report.errors[:3]] == [expected] * 3
    assert "at most two" in report.errors[3].reason
    assert report.errors[4].reason == "must be between 1900 and 2200"
    assert report.errors[5].reason == "must be between 1900 and 2200"
    assert report.rows_failed == 6
    amounts = await Deal.raw(
        "SELECT external_key, amount FROM deal WHERE external_key LIKE {} "
        "ORDER BY external_key",
        f"hubspot:{prefix}-%",
    )
    assert [(row["external_key"], str(row["amount"])) for row in amounts] == [
        (f"hubspot:{prefix}-1", "10.00"),
        (f"hubspot:{prefix}-8", "1200.50"),
    ]


async def test_salesforce_numbers_fail_their_records_only(tmp_path: Path) -> None:
    ref = unique("Numbers").replace(" ", "")
    records = [
        {"Name": "Good", "AnnualRevenue": 125000.5, "NumberOfEmployees": 12},
        {"Name": "Huge", "AnnualRevenue": 1e30},
        {"Name": "Long count", "NumberOfEmployees": "<digits>"},
        {"Name": "Exponent", "AnnualRevenue": 3.5e7},
    ]
    text = json.dumps(
        {
            "records": [
                {
                    "attributes": {"type": "Account", "referenceId": f"{ref}{n}"},
                    **fields,
                }
                for n, fields in enumerate(records, start=1)
            ]
        }
    )
    # A JSON integer longer than int() converts, which json.dumps cannot write.
    text = text.replace('"<digits>"', "9" * 5000)
    path = tmp_path / "Accounts.json"
    path.write_text(text)

    report = await run_import("salesforce", [path])

    assert [(e.row, e.column, (e.value or "")[:4]) for e in report.errors] == [
        (2, "AnnualRevenue", "1e+3"),
        (3, "NumberOfEmployees", "9999"),
    ]
    assert report.errors[0].reason == "not an amount such as 1200, 1,200 or 1200.50"
    assert report.errors[1].reason == "must be at most 2147483647"
    stored = await Account.raw(
        "SELECT external_key, annual_revenue, employees FROM account "
        "WHERE external_key LIKE {} ORDER BY external_key",
        f"salesforce:{ref}%",
    )
    assert [
        (row["external_key"], str(row["annual_revenue"]), row["employees"])
        for row in stored
    ] == [
        (f"salesforce:{ref}1", "125000.50", 12),
        # A JSON number in exponent form is read as the number it is.
        (f"salesforce:{ref}4", "35000000.00", None),
    ]


async def test_failed_batch_leaves_no_rows(tmp_path: Path) -> None:
    path = write_file(
        tmp_path / "deals.csv",
        [
            DEALS_HEADER,
            deal_line("BATCH-1", "Batch one a"),
            deal_line("BATCH-2", "Batch one b"),
            deal_line("BATCH-3", "Batch two a"),
            deal_line("BATCH-4", "Rejected by the database"),
            deal_line("BATCH-5", "Batch three a"),
        ],
    )
    # A real constraint that the importer's own checks do not test.
    # NOT VALID leaves the rows of other tests unchecked.
    await Deal.raw(
        "ALTER TABLE deal ADD CONSTRAINT deal_test_rejected_name "
        "CHECK (name <> 'Rejected by the database') NOT VALID"
    )
    try:
        report = await run_import("hubspot", [path], batch_size=2)
    finally:
        await Deal.raw("ALTER TABLE deal DROP CONSTRAINT deal_test_rejected_name")

    assert await deal_keys("hubspot:BATCH-") == {
        "hubspot:BATCH-1",
        "hubspot:BATCH-2",
        "hubspot:BATCH-5",
    }
    assert report.rows_failed == 2
    assert [(error.row, error.column) for error in report.errors] == [
        (4, None),
        (5, None),
    ]
    for error in report.errors:
        assert "rows 4-5" in error.reason
        assert "deal_test_rejected_name" in error.reason
    assert report.counts["deal"].created == 3


async def test_progress_reported_per_batch(tmp_path: Path) -> None:
    lines = [DEALS_HEADER] + [deal_line(f"PROGRESS-{n}", f"Deal {n}") for n in range(7)]
    path = write_file(tmp_path / "deals.csv", lines)
    calls: list[tuple[int, int]] = []

    async def on_progress(done: int, total: int) -> None:
        calls.append((done, total))

    await run_import("hubspot", [path], on_progress=on_progress, batch_size=3)

    assert calls == [(0, 7), (3, 7), (6, 7), (7, 7)]


# Public datasets


@pytest.mark.datasets
async def test_maven_import_and_reimport() -> None:
    folder = datasets_dir("crm_sales_opportunities")
    before = await last_event_id()

    first = await run_import("maven", [folder])

    assert first.rows_failed == 0
    assert first.errors == []
    assert first.ignored_files == ["data_dictionary.csv"]
    assert first.counts["deal"].created + first.counts["deal"].updated == 8800
    await check_maven_rows()

    pipeline = await Deal.raw(
        "SELECT DISTINCT pipeline FROM deal WHERE external_key LIKE 'maven:%'"
    )
    pipeline_id = pipeline[0]["pipeline"]
    events = await reload_events(before)
    assert {
        "record_type": "pipeline",
        "record_id": pipeline_id,
        "topics": [f"pipeline:{pipeline_id}"],
    } in events

    versions = await Deal.raw(
        "SELECT sum(version) AS total FROM deal WHERE external_key LIKE 'maven:%'"
    )

    second = await run_import("maven", [folder])

    assert second.counts["deal"].created == 0
    assert second.counts["deal"].updated == 8800
    assert second.counts["account"].created == 0
    assert second.counts["account"].updated == 85
    await check_maven_rows()
    versions_after = await Deal.raw(
        "SELECT sum(version) AS total FROM deal WHERE external_key LIKE 'maven:%'"
    )
    # The same files again change no record, so no version moves.
    assert versions_after[0]["total"] == versions[0]["total"]


async def check_maven_rows() -> None:
    assert await count(Deal, "maven:") == 8800
    assert await count(Account, "maven:") == 85
    rows = await Deal.raw(
        "SELECT s.name, count(*) AS n FROM deal d JOIN stage s ON s.id = d.stage "
        "WHERE d.external_key LIKE 'maven:%' GROUP BY s.name"
    )
    assert {row["name"]: row["n"] for row in rows} == {
        "Won": 4238,
        "Lost": 2473,
        "Engaging": 1589,
        "Prospecting": 500,
    }

    pipeline_csv = datasets_dir("crm_sales_opportunities", "sales_pipeline.csv")
    gtx_pro = {
        "maven:" + values["opportunity_id"]
        for _, values in CsvReader(pipeline_csv)
        if values["product"] == "GTXPro"
    }
    products = await Deal.raw(
        "SELECT p.name, count(*) AS n FROM deal d JOIN product p ON p.id = d.product "
        "WHERE d.external_key = ANY({}::varchar[]) GROUP BY p.name",
        sorted(gtx_pro),
    )
    assert len(gtx_pro) == 1480
    assert products == [{"name": "GTX Pro", "n": 1480}]

    no_product = await count(Deal, "maven:", "AND product IS NULL")
    assert no_product == 0
    open_without_amount = await Deal.raw(
        "SELECT count(*) AS n FROM deal d JOIN stage s ON s.id = d.stage "
        "WHERE d.external_key LIKE 'maven:%' AND s.kind = 'open' AND d.amount IS NULL"
    )
    assert open_without_amount[0]["n"] == 0


@pytest.mark.datasets
async def test_tickets_import_counts() -> None:
    folder = datasets_dir("support_tickets")
    before = await last_event_id()

    report = await run_import("tickets", [folder])

    assert report.rows_total == 8469
    assert report.rows_failed == 0
    assert await count(Ticket, "tickets:") == 8469
    rows = await Ticket.raw(
        "SELECT status, count(*) AS n FROM ticket "
        "WHERE external_key LIKE 'tickets:%' GROUP BY status"
    )
    assert {row["status"]: row["n"] for row in rows} == {
        "pending": 2881,
        "open": 2819,
        "closed": 2769,
    }
    unlinked = await count(Ticket, "tickets:", "AND requester IS NULL")
    assert unlinked == 0
    events = await reload_events(before)
    assert {
        "record_type": "ticket_board",
        "record_id": 0,
        "topics": ["tickets"],
    } in events


@pytest.mark.datasets
async def test_hubspot_import_counts() -> None:
    report = await run_import("hubspot", [datasets_dir("hubspot_style")])

    assert await count(Account, "hubspot:COMP-") == 200
    assert await count(Contact, "hubspot:CONT-") == 950
    assert await count(Deal, "hubspot:DEAL-") == 500
    assert await count(Ticket, "hubspot:TICK-") == 300
    # Activities of contacts without a deal cannot become comments.
    assert await count(Comment, "hubspot:ACT-") == 743
    assert report.rows_total == 3950
    assert report.rows_failed == 1257
    assert {error.reason for error in report.errors} == {
        "the contact has no deal to attach the activity to"
    }
    assert report.warnings == []
    linked = await count(Deal, "hubspot:DEAL-", "AND contact IS NOT NULL")
    assert linked == 500


async def test_demo_data_imports_every_row() -> None:
    report = await run_import("hubspot", demo_files())

    assert report.rows_total == 200 + 950 + 500 + 300 + 743
    assert report.errors == []
    assert report.rows_failed == 0
    assert report.warnings == []


@pytest.mark.datasets
async def test_salesforce_import_counts() -> None:
    # Other tests import their own report files, so count only what this adds.
    report_accounts = await count(Account, "salesforce-report:")
    report_contacts = await count(Contact, "salesforce-report:")
    report = await run_import("salesforce", [datasets_dir("salesforce_sample")])

    assert report.rows_total == 50
    assert report.rows_failed == 0
    assert report.warnings == []
    # Other tests import JSON records of their own, with other referenceIds.
    assert await count(Account, "salesforce:AccountRef") == 10
    assert await count(Contact, "salesforce:ContactRef") == 6
    assert await count(Deal, "salesforce:OpportunityRef") == 20
    # Every report row matches an account and a contact of the JSON files.
    assert await count(Account, "salesforce-report:") == report_accounts
    assert await count(Contact, "salesforce-report:") == report_contacts
    rows = await Deal.raw(
        "SELECT s.kind, count(*) AS n FROM deal d JOIN stage s ON s.id = d.stage "
        "WHERE d.external_key LIKE 'salesforce:OpportunityRef%' GROUP BY s.kind"
    )
    assert {row["kind"]: row["n"] for row in rows} == {"open": 17, "won": 2, "lost": 1}
    amy = await Contact.raw(
        "SELECT a.name FROM contact c JOIN account a ON a.id = c.account "
        "WHERE c.email = 'amy@demo.net'"
    )
    assert amy == [{"name": "Alpha Dynamics"}]


async def test_reimport_keeps_records_edited_in_app(tmp_path: Path) -> None:
    from app.deals.service import update_deal
    from app.merge import Edit

    path = write_file(
        tmp_path / "deals.csv",
        [
            DEALS_HEADER,
            deal_line("KEEP-1", "Edited in the app", amount="100"),
            deal_line("KEEP-2", "Left alone", amount="200"),
        ],
    )
    await run_import("hubspot", [path])
    edited = (
        await Deal.select(Deal.id).where(Deal.external_key == "hubspot:KEEP-1").first()
    )
    await update_deal(
        edited["id"], {"name": Edit("Edited in the app", "Renamed by a rep")}, None
    )

    report = await run_import("hubspot", [path])

    rows = {
        row["external_key"]: row
        for row in await Deal.select(Deal.external_key, Deal.name, Deal.version).where(
            Deal.external_key.is_in(["hubspot:KEEP-1", "hubspot:KEEP-2"])
        )
    }
    assert rows["hubspot:KEEP-1"]["name"] == "Renamed by a rep"
    assert rows["hubspot:KEEP-1"]["version"] == 2
    # Imported again unchanged, so still the version the first import wrote.
    assert rows["hubspot:KEEP-2"]["version"] == 1
    assert report.counts["deal"].kept == 1
    assert report.counts["deal"].updated == 1
    assert "1 kept (edited since the last import)" in report.summary()


async def test_reimport_bumps_changed_row(tmp_path: Path) -> None:
    first = write_file(
        tmp_path / "deals.csv",
        [DEALS_HEADER, deal_line("BUMP-1", "Same", amount="100")],
    )
    await run_import("hubspot", [first])
    second = write_file(
        tmp_path / "deals2.csv",
        [DEALS_HEADER, deal_line("BUMP-1", "Same", amount="150")],
    )

    await run_import("hubspot", [second])

    row = (
        await Deal.select(Deal.amount, Deal.version)
        .where(Deal.external_key == "hubspot:BUMP-1")
        .first()
    )
    assert row["version"] == 2
    assert str(row["amount"]) == "150.00"
