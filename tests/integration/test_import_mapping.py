"""Importing a CSV file through a column mapping: checks, presets, saved
mappings, the preview and the download of rejected rows."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from app.accounts.tables import Account
from app.contacts.tables import Contact
from app.deals.tables import Deal, Stage
from app.imports.csvfiles import read_header
from app.imports.mapped import MappingSettings, preview
from app.imports.mappings import mappings_for, save_mapping
from app.imports.service import run_import
from app.imports.tables import ImportJob, ImportRejectedRow
from app.imports.targets import detect_preset, preset_mapping, validate_mapping
from app.tickets.tables import Ticket
from tests.browserless import Session
from tests.conftest import datasets_dir
from tests.factories import make_pipeline, make_user, unique
from tests.servers import worker_process

pytestmark = [pytest.mark.asyncio(loop_scope="session")]

DEAL_HEADER = ["Ref", "Title", "Value", "Closes", "Phase", "Company"]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buffer.getvalue())
    return path


def deal_mapping() -> dict[str, str]:
    return {
        "Ref": "external_id",
        "Title": "name",
        "Value": "amount",
        "Closes": "close_date",
        "Phase": "stage",
        "Company": "account",
    }


def folder_with(
    tmp_path: Path, header: list[str], rows: list[list[str]], settings: MappingSettings
) -> Path:
    folder = tmp_path / unique("upload").replace(" ", "-")
    folder.mkdir()
    write_csv(folder / "deals.csv", header, rows)
    settings.save(folder)
    return folder


# The mapping's checks


async def test_mapping_errors_name_the_field() -> None:
    mapping = {**deal_mapping(), "Phase": "", "Closes": "amount"}

    errors = validate_mapping("deal", DEAL_HEADER, mapping)

    by_field = {error.field: error for error in errors}
    assert set(by_field) == {"amount", "stage"}
    assert "Value, Closes" in by_field["amount"].message
    assert "mapped from 2 columns" in by_field["amount"].message
    assert by_field["stage"].message == "Stage is required: map a column to it."


async def test_mapping_rejects_unknown_columns_and_fields() -> None:
    errors = validate_mapping(
        "ticket", ["Subject", "Mood"], {"Subject": "subject", "Mood": "mood", "X": ""}
    )

    assert [(error.field, error.value) for error in errors] == [
        ("mood", "Mood"),
        ("X", ""),
    ]


# Presets found from the headers of the public datasets

DATASET_PRESETS = {
    ("hubspot_style", "hubspot_companies.csv"): "hubspot-companies",
    ("hubspot_style", "hubspot_contacts.csv"): "hubspot-contacts",
    ("hubspot_style", "hubspot_deals.csv"): "hubspot-deals",
    ("hubspot_style", "hubspot_tickets.csv"): "hubspot-tickets",
    ("hubspot_style", "hubspot_activities.csv"): None,
    ("salesforce_sample", "Accounts-Contacts.csv"): "salesforce-report",
    ("crm_sales_opportunities", "accounts.csv"): "maven-accounts",
    ("crm_sales_opportunities", "sales_pipeline.csv"): "maven-deals",
    ("crm_sales_opportunities", "products.csv"): None,
    ("support_tickets", "customer_support_tickets.csv"): "support-tickets",
}


@pytest.mark.datasets
@pytest.mark.parametrize(("folder", "name"), sorted(DATASET_PRESETS))
async def test_presets_are_detected_on_dataset_files(folder: str, name: str) -> None:
    path = datasets_dir(folder) / name
    headers = read_header(path)

    preset = detect_preset(headers)

    expected = DATASET_PRESETS[(folder, name)]
    assert (preset.name if preset else None) == expected
    if preset is not None:
        mapping = preset_mapping(preset, headers)
        assert validate_mapping(preset.target, headers, mapping) == []
        # Every column the preset names is in the file.
        assert set(preset.mapping) <= set(headers)


@pytest.mark.datasets
async def test_hubspot_deals_preset_imports_the_dataset(tmp_path: Path) -> None:
    source = datasets_dir("hubspot_style") / "hubspot_deals.csv"
    headers = read_header(source)
    preset = detect_preset(headers)
    assert preset is not None
    folder = tmp_path / "hubspot"
    folder.mkdir()
    (folder / source.name).write_bytes(source.read_bytes())
    MappingSettings(
        target="deal", mapping=preset_mapping(preset, headers), preset=preset.name
    ).save(folder)

    rows = await preview(folder / source.name, MappingSettings.load(folder))
    report = await run_import("mapped", [folder])

    assert len(rows) == 20
    assert all(not row.errors for row in rows), [row.errors for row in rows]
    assert report.rows_total == 500
    assert report.rows_failed == 0, report.errors[:3]
    deals = await Deal.count().where(Deal.external_key.like("hubspot:DEAL-%"))
    assert deals == 500


# Salesforce report presets, on small reports written here in the
# "Object: Field" column naming of Salesforce's report exports

SALESFORCE_ACCOUNTS = """\ufeffAccount: Account Name,Account: Type,Account: Industry,\
Account: Employees,Account: Annual Revenue,Account: Phone,Account: Website,\
Account: Billing City,Account: Billing Country,Account: Account Owner
{name} Freight,Customer - Direct,Logistics,"1,200","48,500,000.00",+31 10 555 0100,\
https://freight.example,Rotterdam,Netherlands,{owner}
{name} Bakeries,Prospect,Food,85,"3,100,000",+44 161 555 0199,,Manchester,\
United Kingdom,
{name} Labs,Customer - Channel,Biotech,many,,,,Basel,Switzerland,Nobody Known
"""
SALESFORCE_OPPORTUNITIES = """\ufeffOpportunity: Opportunity Name,\
Account: Account Name,Opportunity: Stage,Opportunity: Amount,\
Opportunity: Close Date,Opportunity: Probability (%),Opportunity: Opportunity Owner
{name} fleet renewal,{name} Freight,Negotiation/Review,"250,000.00",6/30/2026,90,{owner}
{name} new ovens,{name} Bakeries,Closed Won,"18,400",2026-03-15,100,
{name} pilot,{name} Freight,Dreaming,1000,7/1/2026,10,
{name} late order,{name} Bakeries,Prospecting,500,31/12/2026,10,
"""


def salesforce_folder(tmp_path: Path, name: str, text: str) -> tuple[Path, str]:
    """Write a report into an upload folder with its detected preset's mapping;
    return the folder and the preset's name."""
    folder = tmp_path / unique("salesforce").replace(" ", "-")
    folder.mkdir()
    path = folder / name
    path.write_text(text, encoding="utf-8")
    headers = read_header(path)
    preset = detect_preset(headers)
    assert preset is not None, headers
    MappingSettings(
        target=preset.target,
        mapping=preset_mapping(preset, headers),
        preset=preset.name,
    ).save(folder)
    return folder, preset.name


async def test_salesforce_account_report_preset(tmp_path: Path) -> None:
    owner = await make_user("sales_rep")
    name = unique("Sf").replace(" ", "")
    text = SALESFORCE_ACCOUNTS.format(name=name, owner=owner.name)
    folder, preset = salesforce_folder(tmp_path, "accounts.csv", text)

    report = await run_import("mapped", [folder])
    again = await run_import("mapped", [folder])

    assert preset == "salesforce-accounts"
    assert report.rows_total == 3
    assert [(e.row, e.column, e.value) for e in report.errors] == [
        (4, "Account: Employees", "many")
    ]
    assert [(w.row, w.column) for w in report.warnings] == []
    accounts = {
        row["name"]: row
        for row in await Account.select().where(Account.name.like(f"{name} %"))
    }
    assert sorted(accounts) == [f"{name} Bakeries", f"{name} Freight"]
    freight = accounts[f"{name} Freight"]
    assert freight["external_key"] == f"salesforce-report:{name} Freight"
    assert freight["industry"] == "Logistics"
    assert freight["employees"] == 1200
    assert freight["annual_revenue"] == Decimal("48500000.00")
    assert freight["phone"] == "+31 10 555 0100"
    assert freight["website"] == "https://freight.example"
    assert freight["city"] == "Rotterdam"
    assert freight["country"] == "Netherlands"
    assert freight["owner"] == owner.id
    bakeries = accounts[f"{name} Bakeries"]
    assert bakeries["annual_revenue"] == Decimal("3100000")
    assert bakeries["owner"] is None
    # Keyed by name, so a second import updates the same two accounts.
    assert again.rows_failed == 1
    assert await Account.count().where(Account.name.like(f"{name} %")) == 2


async def test_salesforce_opportunity_report_preset(tmp_path: Path) -> None:
    owner = await make_user("sales_rep")
    name = unique("Sf").replace(" ", "")
    accounts, _ = salesforce_folder(
        tmp_path,
        "accounts.csv",
        SALESFORCE_ACCOUNTS.format(name=name, owner=owner.name),
    )
    await run_import("mapped", [accounts])
    text = SALESFORCE_OPPORTUNITIES.format(name=name, owner=owner.name)
    folder, preset = salesforce_folder(tmp_path, "opportunities.csv", text)

    rows = await preview(folder / "opportunities.csv", MappingSettings.load(folder))
    report = await run_import("mapped", [folder])

    assert preset == "salesforce-opportunities"
    assert [bool(row.errors) for row in rows] == [False, False, True, True]
    assert report.rows_total == 4
    assert report.rows_failed == 2
    errors = {(e.row, e.column): e for e in report.errors}
    assert set(errors) == {
        (4, "Opportunity: Stage"),
        (5, "Opportunity: Close Date"),
    }
    assert errors[(4, "Opportunity: Stage")].value == "Dreaming"
    assert "Negotiation/Review" in errors[(4, "Opportunity: Stage")].reason
    assert "M/D/YYYY" in errors[(5, "Opportunity: Close Date")].reason
    deals = {
        row["name"]: row
        for row in await Deal.raw(
            "SELECT d.name, d.amount, d.close_date, d.owner, d.external_key, "
            "a.name AS account, s.name AS stage, p.name AS pipeline FROM deal d "
            "JOIN stage s ON s.id = d.stage JOIN pipeline p ON p.id = d.pipeline "
            "LEFT JOIN account a ON a.id = d.account WHERE d.name LIKE {}",
            f"{name} %",
        )
    }
    assert sorted(deals) == [f"{name} fleet renewal", f"{name} new ovens"]
    fleet = deals[f"{name} fleet renewal"]
    assert fleet["pipeline"] == "Salesforce"
    assert fleet["stage"] == "Negotiation/Review"
    assert fleet["amount"] == Decimal("250000.00")
    assert fleet["close_date"] == date(2026, 6, 30)
    assert fleet["account"] == f"{name} Freight"
    assert fleet["owner"] == owner.id
    # The report has no opportunity ids, so its deals are not keyed.
    assert fleet["external_key"] is None
    ovens = deals[f"{name} new ovens"]
    assert ovens["stage"] == "Closed Won"
    assert ovens["close_date"] == date(2026, 3, 15)
    assert ovens["account"] == f"{name} Bakeries"


async def test_salesforce_presets_detected_by_header() -> None:
    contacts = ["Account: Account Name", "Account: Type", "Contact: Last Name"]
    accounts = ["Account: Account Name", "Account: Type", "Account: Industry"]
    opportunities = [
        "Opportunity: Opportunity Name",
        "Account: Account Name",
        "Opportunity: Stage",
    ]

    found = {
        "contacts": detect_preset(contacts),
        "accounts": detect_preset(accounts),
        "opportunities": detect_preset(opportunities),
    }

    names = {key: preset.name if preset else None for key, preset in found.items()}
    assert names == {
        "contacts": "salesforce-report",
        "accounts": "salesforce-accounts",
        "opportunities": "salesforce-opportunities",
    }


# Importing through a mapping


async def test_mapped_import_writes_rows_and_reports_bad_ones(tmp_path: Path) -> None:
    pipeline = await make_pipeline()
    company = unique("Mapped company")
    await Account.insert(Account(name=company))
    ref = unique("ref").replace(" ", "")
    settings = MappingSettings(
        target="deal", mapping=deal_mapping(), pipeline_id=pipeline["id"]
    )
    folder = folder_with(
        tmp_path,
        DEAL_HEADER,
        [
            [f"{ref}-1", "Good deal", "1200.50", "2026-05-01", "engaging", company],
            [f"{ref}-2", "Bad amount", "lots", "2026-05-01", "Prospecting", ""],
            [f"{ref}-3", "Bad stage", "10", "", "Dreaming", ""],
            [f"{ref}-4", "Unknown company", "10", "", "Won", "Nobody Ltd"],
        ],
        settings,
    )

    report = await run_import("mapped", [folder])

    assert report.rows_total == 4
    assert report.rows_failed == 2
    assert [(e.row, e.column, e.value) for e in report.errors] == [
        (3, "Value", "lots"),
        (4, "Phase", "Dreaming"),
    ]
    assert [(w.row, w.column, w.value) for w in report.warnings] == [
        (5, "Company", "Nobody Ltd")
    ]
    deal = (
        await Deal.select(Deal.name, Deal.amount, Deal.stage, Deal.account.name)
        .where(Deal.external_key == f"csv-deal:{ref}-1")
        .first()
    )
    assert deal is not None
    assert str(deal["amount"]) == "1200.50"
    assert deal["stage"] == pipeline["stages"][1]
    assert deal["account.name"] == company

    # Importing the file again updates the same deals.
    again = await run_import("mapped", [folder])
    assert again.counts["deal"].created == 0
    assert await Deal.count().where(Deal.external_key.like(f"csv-deal:{ref}-%")) == 2


async def test_mapped_import_keeps_stage_rules(tmp_path: Path) -> None:
    pipeline = await make_pipeline()
    ruled = pipeline["stages"][1]
    await Stage.update({Stage.required_fields: ["close_date"]}).where(Stage.id == ruled)
    ref = unique("ruled").replace(" ", "")
    settings = MappingSettings(
        target="deal", mapping=deal_mapping(), pipeline_id=pipeline["id"]
    )
    folder = folder_with(
        tmp_path,
        DEAL_HEADER,
        [
            [f"{ref}-1", "Has a date", "10", "2026-05-01", "engaging", ""],
            [f"{ref}-2", "No date", "10", "", "engaging", ""],
        ],
        settings,
    )

    report = await run_import("mapped", [folder])

    assert [(e.row, e.column, e.value) for e in report.errors] == [
        (3, "Phase", "Engaging")
    ]
    assert "needs close date" in report.errors[0].reason
    stored = await Deal.select(Deal.external_key).where(
        Deal.external_key.like(f"csv-deal:{ref}-%")
    )
    assert [row["external_key"] for row in stored] == [f"csv-deal:{ref}-1"]


async def test_ticket_and_contact_targets(tmp_path: Path) -> None:
    email = f"{unique('req').replace(' ', '')}@example.org"
    contacts = tmp_path / "contacts"
    contacts.mkdir()
    write_csv(
        contacts / "people.csv",
        ["Given", "Family", "Mail"],
        [["Ada", "Lovelace", email]],
    )
    MappingSettings(
        target="contact",
        mapping={"Given": "first_name", "Family": "last_name", "Mail": "email"},
    ).save(contacts)
    tickets = tmp_path / "tickets"
    tickets.mkdir()
    subject = unique("Printer on fire")
    write_csv(
        tickets / "issues.csv",
        ["Summary", "State", "Urgency", "From"],
        [
            [subject, "Waiting on contact", "Critical", email],
            [f"{subject} 2", "", "", ""],
            [f"{subject} 3", "Sleeping", "low", ""],
        ],
    )
    MappingSettings(
        target="ticket",
        mapping={
            "Summary": "subject",
            "State": "status",
            "Urgency": "priority",
            "From": "requester",
        },
    ).save(tickets)

    await run_import("mapped", [contacts])
    report = await run_import("mapped", [tickets])

    assert report.rows_failed == 1
    [error] = report.errors
    assert (error.row, error.column, error.value) == (4, "State", "Sleeping")
    assert error.reason == (
        "unknown value, expected one of new, open, pending, on_hold, solved, closed"
    )
    contact = await Contact.select().where(Contact.email == email).first()
    ticket = await Ticket.select().where(Ticket.subject == subject).first()
    second = await Ticket.select().where(Ticket.subject == f"{subject} 2").first()
    assert contact is not None
    assert ticket is not None
    assert (ticket["status"], ticket["priority"]) == ("pending", "urgent")
    assert ticket["requester"] == contact["id"]
    assert (second["status"], second["priority"]) == ("new", "medium")
    assert second["requester"] is None


async def test_preview_shows_each_rows_errors(tmp_path: Path) -> None:
    pipeline = await make_pipeline()
    settings = MappingSettings(
        target="deal", mapping=deal_mapping(), pipeline_id=pipeline["id"]
    )
    rows = [
        [f"p-{number}", f"Deal {number}", "5", "2026-01-01", "Won", ""]
        for number in range(25)
    ]
    rows[1] = ["p-1", "Broken", "-3", "31/01/2026", "Won", ""]
    rows[2] = ["p-2", "Nowhere", "5", "", "Somewhere", ""]
    folder = folder_with(tmp_path, DEAL_HEADER, rows, settings)

    shown = await preview(folder / "deals.csv", settings)

    assert len(shown) == 20
    assert [row.line for row in shown] == list(range(2, 22))
    assert shown[0].errors == []
    assert shown[0].values["amount"] == "5.00"
    assert {(e.column, e.value) for e in shown[1].errors} == {
        ("Value", "-3"),
        ("Closes", "31/01/2026"),
    }
    assert [(e.column, e.value) for e in shown[2].errors] == [("Phase", "Somewhere")]
    assert (
        "expected one of Prospecting, Engaging, Won, Lost" in shown[2].errors[0].reason
    )
    assert await Deal.count().where(Deal.external_key.like("csv-deal:p-%")) == 0


# Saved mappings


async def test_saved_mappings_are_offered_for_the_same_headers() -> None:
    owner = await make_user("admin")
    other = await make_user("admin")
    headers = ["Ref", unique("Column"), "Value"]
    mapping = {headers[0]: "external_id", headers[1]: "name", headers[2]: "amount"}

    mine = await save_mapping(owner.id, "My deals", "deal", headers, mapping)
    shared = await save_mapping(
        owner.id, "Team deals", "deal", headers, mapping, scope="organisation"
    )
    replaced = await save_mapping(
        owner.id, "my deals", "deal", headers, {**mapping, headers[2]: ""}
    )

    reordered = [headers[2], headers[0], f"  {headers[1].upper()} "]
    offered = await mappings_for(owner.id, reordered)
    assert [item["id"] for item in offered] == [mine, shared]
    assert replaced == mine
    assert offered[0]["mapping"][headers[2]] == ""
    assert [item["id"] for item in await mappings_for(other.id, headers)] == [shared]
    assert await mappings_for(owner.id, [*headers, "Extra"]) == []


async def test_saving_a_mapping_checks_its_name() -> None:
    user = await make_user("admin")
    from app.errors import FieldError

    with pytest.raises(FieldError) as empty:
        await save_mapping(user.id, "  ", "deal", ["A"], {"A": ""})
    with pytest.raises(FieldError) as scope:
        await save_mapping(user.id, "Name", "deal", ["A"], {"A": ""}, scope="world")

    assert empty.value.field == "mapping_name"
    assert (scope.value.field, scope.value.value) == ("mapping_scope", "world")


# The pages, a real worker and the download of rejected rows


async def upload(session: Session, target: str, name: str, body: bytes):
    return await session.http.post(
        "/import/map",
        data={"target": target},
        files={"file": (name, body, "text/csv")},
        headers={"x-csrftoken": session.csrf_token},
    )


def form_for(headers: list[str], mapping: dict[str, str], **extra: str) -> dict:
    data = {
        f"column_{index}": mapping.get(header, "")
        for index, header in enumerate(headers)
    }
    return {**data, **extra}


async def wait_for_job(job_id: int, seconds: float = 60) -> dict:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        job = await ImportJob.select().where(ImportJob.id == job_id).first()
        if job["state"] in ("done", "failed"):
            return job
        assert asyncio.get_running_loop().time() < deadline, job
        await asyncio.sleep(0.2)


async def test_pages_map_preview_run_and_download_rejected_rows(server) -> None:
    user = await make_user("admin")
    session = Session(server.url)
    await session.sign_in(user.email)
    pipeline = await make_pipeline()
    ref = unique("web").replace(" ", "")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(DEAL_HEADER)
    writer.writerow([f"{ref}-1", "Fine", "10", "2026-02-02", "Won", ""])
    writer.writerow([f"{ref}-2", "=cmd()", "oops", "2026-02-02", "Won", ""])
    body = buffer.getvalue().encode()

    uploaded = await upload(session, "deal", "deals.csv", body)
    assert uploaded.status_code in (302, 303), uploaded.text
    page_url = uploaded.headers["location"]
    job_id = int(page_url.split("/")[2])
    page = await session.get(page_url)
    assert page.status_code == 200
    assert "Map the columns of deals.csv" in page.text

    # A field mapped twice names the field and keeps the draft.
    twice = await session.post(
        page_url,
        form_for(
            DEAL_HEADER,
            {**deal_mapping(), "Closes": "amount"},
            pipeline=str(pipeline["id"]),
        ),
        htmx=False,
    )
    assert twice.status_code == 422
    assert 'data-field="amount"' in twice.text

    mapped = form_for(DEAL_HEADER, deal_mapping(), pipeline=str(pipeline["id"]))
    shown = await session.post(
        page_url,
        {**mapped, "action": "preview", "mapping_name": "Web deals"},
        htmx=False,
    )
    assert shown.status_code == 200
    assert 'data-line="3" class="rejected"' in shown.text
    assert "not an amount such as 1200" in shown.text
    assert (await ImportJob.select().where(ImportJob.id == job_id).first())[
        "state"
    ] == "draft"

    # Someone else cannot see the draft, its mapping or its report.
    stranger = Session(server.url)
    await stranger.sign_in((await make_user("admin")).email)
    assert (await stranger.get(page_url)).status_code == 404
    assert (await stranger.get(f"/import/{job_id}/rejected.csv")).status_code == 404
    unfinished = await session.get(f"/import/{job_id}/rejected.csv")
    assert unfinished.status_code == 409

    with worker_process():
        started = await session.post(page_url, {**mapped, "action": "run"}, htmx=False)
        assert started.status_code in (302, 303)
        assert started.headers["location"] == f"/import/{job_id}"
        job = await wait_for_job(job_id)

    assert job["state"] == "done"
    assert (job["rows_total"], job["rows_failed"]) == (2, 1)
    job_page = await session.get(f"/import/{job_id}")
    assert f'href="/import/{job_id}/rejected.csv"' in job_page.text

    report = await session.get(f"/import/{job_id}/rejected.csv")
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(report.text.lstrip("\ufeff"))))
    assert len(rows) == 1
    assert rows[0]["line"] == "3"
    assert rows[0]["Ref"] == f"{ref}-2"
    assert rows[0]["Title"] == "'=cmd()"
    assert rows[0]["errors"] == (
        "Value 'oops': not an amount such as 1200, 1,200 or 1200.50"
    )
    assert await ImportRejectedRow.count().where(ImportRejectedRow.job == job_id) == 1

    # The mapping was remembered for this header set.
    offered = await mappings_for(user.id, DEAL_HEADER)
    assert "Web deals" in [item["name"] for item in offered]
    # A started import can no longer be mapped.
    late = await session.post(page_url, {**mapped, "action": "run"}, htmx=False)
    assert late.status_code == 409
    await stranger.close()
    await session.close()


async def test_pages_reject_unreadable_amounts_by_row(server) -> None:
    user = await make_user("admin")
    session = Session(server.url)
    await session.sign_in(user.email)
    pipeline = await make_pipeline()
    ref = unique("amounts").replace(" ", "")
    amounts = ["10", "1e30", "NaN", "Infinity", "1,200.50"]
    rows = [
        [f"{ref}-{number}", f"Deal {number}", amount, "2026-04-01", "Won", ""]
        for number, amount in enumerate(amounts, start=1)
    ]
    buffer = io.StringIO()
    csv.writer(buffer).writerows([DEAL_HEADER, *rows])
    uploaded = await upload(session, "deal", "deals.csv", buffer.getvalue().encode())
    page_url = uploaded.headers["location"]
    job_id = int(page_url.split("/")[2])
    mapped = form_for(DEAL_HEADER, deal_mapping(), pipeline=str(pipeline["id"]))

    shown = await session.post(page_url, {**mapped, "action": "preview"}, htmx=False)

    assert shown.status_code == 200, shown.text
    for line in (3, 4, 5):
        assert f'data-line="{line}" class="rejected"' in shown.text
    for line in (2, 6):
        assert f'data-line="{line}" class="rejected"' not in shown.text
    assert "1e30" in shown.text
    assert "not an amount such as 1200, 1,200 or 1200.50" in shown.text

    with worker_process():
        started = await session.post(page_url, {**mapped, "action": "run"}, htmx=False)
        assert started.status_code in (302, 303)
        job = await wait_for_job(job_id)

    assert job["state"] == "done", job
    assert (job["rows_total"], job["rows_failed"]) == (5, 3)
    stored = await Deal.select(Deal.external_key, Deal.amount).where(
        Deal.external_key.like(f"csv-deal:{ref}-%")
    )
    assert sorted((row["external_key"], row["amount"]) for row in stored) == [
        (f"csv-deal:{ref}-1", Decimal("10.00")),
        (f"csv-deal:{ref}-5", Decimal("1200.50")),
    ]
    report = await session.get(f"/import/{job_id}/rejected.csv")
    rejected = list(csv.DictReader(io.StringIO(report.text.lstrip("\ufeff"))))
    assert [(row["file"], row["line"], row["Value"]) for row in rejected] == [
        ("deals.csv", "3", "1e30"),
        ("deals.csv", "4", "NaN"),
        ("deals.csv", "5", "Infinity"),
    ]
    assert rejected[0]["errors"] == (
        "Value '1e30': not an amount such as 1200, 1,200 or 1200.50"
    )
    await session.close()


async def test_upload_errors_name_the_field(server) -> None:
    user = await make_user("admin")
    session = Session(server.url)
    await session.sign_in(user.email)
    drafts = await ImportJob.count().where(ImportJob.state == "draft")

    wrong_target = await upload(session, "lead", "a.csv", b"A\n1\n")
    not_csv = await upload(session, "deal", "a.json", b"{}")
    empty = await upload(session, "deal", "a.csv", b"")

    assert wrong_target.status_code == 422
    assert 'data-field="target"' in wrong_target.text
    assert not_csv.status_code == 422
    assert 'data-field="file"' in not_csv.text
    assert empty.status_code == 422
    assert "has no header line" in empty.text
    assert await ImportJob.count().where(ImportJob.state == "draft") == drafts
    await session.close()


async def test_mapping_pages_need_the_import_right(server) -> None:
    rep = await make_user("sales_rep")
    session = Session(server.url)
    await session.sign_in(rep.email)

    response = await upload(session, "deal", "a.csv", b"A\n1\n")

    assert response.status_code == 403
    await session.close()


async def test_mapping_page_offers_presets_and_saved(server) -> None:
    user = await make_user("admin")
    session = Session(server.url)
    await session.sign_in(user.email)
    header = ["Deal ID", "Deal Name", "Deal Stage", "Pipeline", unique("Extra")]
    body = (",".join(header) + "\nD-1,First,Closed Won,Sales Pipeline,x\n").encode()
    saved = await save_mapping(
        user.id,
        unique("Saved"),
        "deal",
        header,
        {"Deal ID": "external_id", "Deal Name": "name", "Deal Stage": "stage"},
    )

    uploaded = await upload(session, "deal", "hubspot.csv", body)
    page_url = uploaded.headers["location"]
    page = await session.get(page_url)

    assert 'data-preset="hubspot-deals" aria-current="true"' in page.text
    assert 'name="preset" value="hubspot-deals"' in page.text
    assert '<option value="pipeline" selected>' in page.text
    assert f'data-mapping="{saved}"' in page.text

    applied = await session.get(f"{page_url}?use={saved}")
    assert applied.status_code == 200
    assert '<option value="pipeline" selected>' not in applied.text
    assert '<option value="name" selected>' in applied.text

    unknown = await session.get(f"{page_url}?preset=nope")
    assert unknown.status_code == 400
    assert 'data-field="preset"' in unknown.text

    switched = await session.post(
        page_url, {"target": "ticket", "action": "preview"}, htmx=False
    )
    assert switched.status_code == 200
    assert '<option value="subject">' in switched.text
    assert 'id="preview"' not in switched.text
    await session.close()
