"""Import Salesforce sample data: ``sf data import tree`` JSON and report CSVs.

Tree files contain ``{"records": [{"attributes": {"type": ..., "referenceId":
...}, ...}]}`` and refer to each other's records as ``"@<referenceId>"``. A
data plan (a JSON list naming tree files) adds the files it names. Report
CSVs have "Object: Field" headers such as "Account: Account Name".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.accounts.tables import Account
from app.contacts.tables import Contact
from app.deals.service import rejected_stage_entries
from app.deals.tables import Deal, Pipeline, Stage
from app.imports.csvfiles import count_rows, read_header
from app.imports.fields import RowValues, key_limit, limit, midnight
from app.imports.report import ImportFileError, RowError
from app.imports.runner import Batch, ImportRun, SourceFiles, Step, csv_step
from app.imports.writer import (
    STAGE_ENTERED_ON_CHANGE,
    PipelineStages,
    StageSpec,
    ensure_pipeline,
    ids_by_key,
    link_account_parents,
    prefix_pattern,
    upsert,
)

SOURCE = "salesforce"
# Tree records are keyed by referenceId, the only id the format has.
# NOTE: referenceIds such as "AccountRef1" are labels local to one export, so
# a different export that reuses them updates the records of the first.
PREFIX = f"{SOURCE}:"
# Records that come only from a report CSV, which has no record ids, are
# keyed by account name or contact email under this prefix.
REPORT_PREFIX = "salesforce-report:"
SUFFIXES = (".json", ".csv")
OBJECT_TYPES = ("Account", "Contact", "Opportunity")
REPORT_COLUMNS = ("Account: Account Name",)
# Columns of an opportunity report, in the "Object: Field" naming that
# Salesforce's cross-object report exports use.
OPPORTUNITY_REPORT_COLUMNS = (
    "Opportunity: Opportunity Name",
    "Opportunity: Stage",
    "Account: Account Name",
)
# Report exports write dates in the exporting user's locale. This is the
# default en_US form; ISO dates are accepted too.
# NOTE: other locales (such as D/M/YYYY) are rejected with a message naming
# the accepted forms, because a day-first date cannot be told from this one.
REPORT_DATE_FORMATS = {"%m/%d/%Y": "M/D/YYYY"}
PIPELINE = "Salesforce"
# The opportunity stages of a new Salesforce org, in order.
# NOTE: the probabilities are the org defaults as commonly documented, not
# checked against a Salesforce org.
STAGES = (
    StageSpec("Prospecting", "open", 10),
    StageSpec("Qualification", "open", 10),
    StageSpec("Needs Analysis", "open", 20),
    StageSpec("Value Proposition", "open", 50),
    StageSpec("Id. Decision Makers", "open", 60),
    StageSpec("Perception Analysis", "open", 70),
    StageSpec("Proposal/Price Quote", "open", 75),
    StageSpec("Negotiation/Review", "open", 90),
    StageSpec("Closed Won", "won", 100),
    StageSpec("Closed Lost", "lost", 0),
)
KEY_LENGTH = key_limit(REPORT_PREFIX)


def describe() -> str:
    return (
        'sObject tree JSON ({"records": [...]}) of '
        f"{', '.join(OBJECT_TYPES)}, a data plan JSON, or a report CSV with the "
        f"column {REPORT_COLUMNS[0]!r}"
    )


def recognise(paths: list[Path]) -> SourceFiles:
    tagged: list[tuple[str, Path]] = []
    unrecognised: list[Path] = []
    queue = list(paths)
    while queue:
        path = queue.pop(0)
        if any(path.samefile(known) for _, known in tagged):
            continue
        if path.suffix.lower() == ".json":
            data = load_json(path)
            if isinstance(data, dict) and isinstance(data.get("records"), list):
                tagged.append(("tree", path))
            elif is_plan(data):
                tagged.append(("plan", path))
                queue.extend(plan_files(path, data))
            else:
                unrecognised.append(path)
        elif set(REPORT_COLUMNS) <= set(read_header(path)):
            tagged.append(("report", path))
        else:
            unrecognised.append(path)

    order = ("plan", "tree", "report")
    tagged.sort(key=lambda item: order.index(item[0]))
    rows_total = 0
    for kind, path in tagged:
        if kind == "tree":
            rows_total += len(load_json(path)["records"])
        elif kind == "report":
            rows_total += count_rows(path)
    return SourceFiles(files=tagged, unrecognised=unrecognised, rows_total=rows_total)


async def import_files(files: SourceFiles, run: ImportRun) -> None:
    trees = [(path, load_json(path)["records"]) for path in files.paths("tree")]
    for path, records in trees:
        report_unknown_types(path, records, run)

    links: list[tuple[str, int, str, str]] = []
    for path, records in trees:
        await run.run(
            tree_step(path, records, "Account", prepare_account, write_accounts(links))
        )
    await link_parents(links, run)

    for path, records in trees:
        await run.run(
            tree_step(path, records, "Contact", prepare_contact, write_contacts)
        )

    if any(record_type(r) == "Opportunity" for _, records in trees for r in records):
        stages = await ensure_salesforce_pipeline(run)
        for path, records in trees:
            await run.run(
                tree_step(
                    path,
                    records,
                    "Opportunity",
                    prepare_opportunity,
                    write_deals(stages),
                )
            )

    for path in files.paths("report"):
        await run.run(
            csv_step(
                path,
                prepare_report_row,
                write_report_rows,
                key=None,
            )
        )


def tree_step(
    path: Path,
    records: list[Any],
    object_type: str,
    prepare: Callable[[RowValues], dict[str, Any]],
    write: Callable[[Batch], Any],
) -> Step:
    """Build a step over the records of one type, numbered by position in the file."""
    rows = [
        (position, flatten(record))
        for position, record in enumerate(records, start=1)
        if record_type(record) == object_type
    ]
    return Step(path.name, rows, prepare, write, key_column="referenceId")


def report_unknown_types(path: Path, records: list[Any], run: ImportRun) -> None:
    """Count and report the records that no step imports."""
    for position, record in enumerate(records, start=1):
        kind = record_type(record)
        if kind in OBJECT_TYPES:
            continue
        reason = (
            f"unsupported sObject type, expected one of {', '.join(OBJECT_TYPES)}"
            if kind
            else 'missing "attributes": {"type": ...}'
        )
        run.report.errors.append(RowError(path.name, position, "type", kind, reason))
        run.report.rows_failed += 1
        run.report.rows_done += 1


def prepare_account(fields: RowValues) -> dict[str, Any]:
    return {
        "external_key": PREFIX + reference(fields, "referenceId", required=True),
        "name": fields.text("Name", required=True, max_length=limit(Account.name)),
        "phone": fields.text("Phone", max_length=limit(Account.phone)),
        "employees": fields.integer("NumberOfEmployees"),
        "industry": fields.text("Industry", max_length=limit(Account.industry)),
        "website": fields.text("Website", max_length=limit(Account.website)),
        "annual_revenue": fields.amount("AnnualRevenue"),
        "city": fields.text("BillingCity", max_length=limit(Account.city)),
        "country": fields.text("BillingCountry", max_length=limit(Account.country)),
        "parent": reference(fields, "ParentId"),
    }


def write_accounts(links: list[tuple[str, int, str, str]]) -> Callable[[Batch], Any]:
    async def write(batch: Batch) -> None:
        accepted = batch.accepted()
        rows = [{k: v for k, v in r.items() if k != "parent"} for _, r in accepted]
        batch.count(Account, await upsert(Account, rows))
        pending = [
            (batch.file, line, r["external_key"], r["parent"])
            for line, r in accepted
            if r["parent"]
        ]
        batch.after_commit.append(lambda: links.extend(pending))

    return write


async def link_parents(links: list[tuple[str, int, str, str]], run: ImportRun) -> None:
    """Set account parents once every account file is in, warning about unknown ones."""
    if not links:
        return
    missing: set[str] = set()

    async def write() -> None:
        missing.update(
            await link_account_parents(
                [(child, PREFIX + parent) for _, _, child, parent in links]
            )
        )

    await run.write_once(write)
    for file, line, child, parent in links:
        if child in missing:
            run.report.warnings.append(
                RowError(file, line, "ParentId", "@" + parent, UNKNOWN_REFERENCE)
            )


UNKNOWN_REFERENCE = "no imported record has this reference, so the link is left empty"


def prepare_contact(fields: RowValues) -> dict[str, Any]:
    return {
        "external_key": PREFIX + reference(fields, "referenceId", required=True),
        "first_name": fields.text("FirstName", max_length=limit(Contact.first_name)),
        "last_name": fields.text(
            "LastName", required=True, max_length=limit(Contact.last_name)
        ),
        "email": fields.email("Email"),
        "phone": fields.text("Phone", max_length=limit(Contact.phone)),
        "title": fields.text("Title", max_length=limit(Contact.title)),
        "account": reference(fields, "AccountId"),
    }


async def write_contacts(batch: Batch) -> None:
    accepted = batch.accepted()
    accounts = await account_ids(batch, accepted, "AccountId")
    rows = [{**r, "account": accounts.get(line)} for line, r in accepted]
    batch.count(Contact, await upsert(Contact, rows))


def prepare_opportunity(fields: RowValues) -> dict[str, Any]:
    stage = fields.choice("StageName", {stage.name: stage.name for stage in STAGES})
    close_date = fields.date("CloseDate")
    closed = stage in ("Closed Won", "Closed Lost")
    return {
        "external_key": PREFIX + reference(fields, "referenceId", required=True),
        "name": fields.text("Name", required=True, max_length=limit(Deal.name)),
        "stage": stage,
        "amount": fields.amount("Amount"),
        "close_date": close_date,
        "stage_entered_at": midnight(close_date) if closed else None,
        "account": reference(fields, "AccountId"),
    }


def write_deals(stages: PipelineStages) -> Callable[[Batch], Any]:
    async def write(batch: Batch) -> None:
        accepted = batch.accepted()
        accounts = await account_ids(batch, accepted, "AccountId")
        # ensure_pipeline has just created any standard stage that was missing.
        rows = [
            {
                **record,
                "pipeline": stages.pipeline_id,
                "stage": stages.stage_ids[record["stage"]],
                "account": accounts.get(line),
            }
            for line, record in accepted
        ]
        rejected = await rejected_stage_entries(rows)
        for index, error in rejected.items():
            line = accepted[index][0]
            batch.reject(line, "StageName", error.stage_name, error.reason)
        rows = [row for index, row in enumerate(rows) if index not in rejected]
        written = await upsert(
            Deal, rows, update={"stage_entered_at": STAGE_ENTERED_ON_CHANGE}
        )
        batch.count(Deal, written)
        if written:
            batch.pipeline_ids.add(stages.pipeline_id)

    return write


async def ensure_salesforce_pipeline(run: ImportRun) -> PipelineStages:
    result: list[PipelineStages] = []

    async def write() -> None:
        result.append(await ensure_pipeline(PIPELINE, STAGES))

    await run.write_once(write)
    stages = result[0]
    run.report.count(Pipeline._meta.tablename, created=int(stages.pipeline_created))
    run.report.count(Stage._meta.tablename, created=stages.stages_created)
    return stages


def prepare_report_row(fields: RowValues) -> dict[str, Any]:
    account = fields.text("Account: Account Name", required=True, max_length=KEY_LENGTH)
    email = fields.email("Contact: Email")
    first_name = fields.text(
        "Contact: First Name", max_length=limit(Contact.first_name)
    )
    last_name = fields.text("Contact: Last Name", max_length=limit(Contact.last_name))

    contact = None
    if email or first_name or last_name:
        key = email or f"{account}/{first_name} {last_name}".strip()
        if len(key) > KEY_LENGTH:
            fields.fail("Contact: Email", f"longer than {KEY_LENGTH} characters", key)
        contact = {
            "external_key": REPORT_PREFIX + key,
            "first_name": first_name,
            "last_name": last_name,
            "email": email,
            "title": fields.text("Contact: Title", max_length=limit(Contact.title)),
            "phone": fields.text("Contact: Phone", max_length=limit(Contact.phone)),
        }
    return {
        "account": {
            "external_key": REPORT_PREFIX + account,
            "name": account,
            "phone": fields.text("Account: Phone", max_length=limit(Account.phone)),
        },
        "contact": contact,
    }


async def write_report_rows(batch: Batch) -> None:
    """Link report rows to the tree files' accounts and contacts, by name and email.

    The accounts and contacts that no tree file has are created.
    """
    accepted = batch.accepted()
    names = {r["account"]["name"].lower() for _, r in accepted}
    known_accounts = await tree_accounts_by_name(names)

    new_accounts: dict[str, dict[str, Any]] = {}
    for _, record in accepted:
        account = record["account"]
        if account["name"].lower() not in known_accounts:
            new_accounts.setdefault(account["external_key"], account)
    written = await upsert(Account, list(new_accounts.values()), returning=("name",))
    batch.count(Account, written)
    account_ids_by_name = dict(known_accounts)
    account_ids_by_name.update({row["name"].lower(): row["id"] for row in written})

    emails = {
        r["contact"]["email"]
        for _, r in accepted
        if r["contact"] and r["contact"]["email"]
    }
    known_contacts = await other_contacts_by_email(emails)
    new_contacts: dict[str, dict[str, Any]] = {}
    for _, record in accepted:
        contact = record["contact"]
        if contact is None or (contact["email"] or "") in known_contacts:
            continue
        account_id = account_ids_by_name[record["account"]["name"].lower()]
        new_contacts.setdefault(
            contact["external_key"], {**contact, "account": account_id}
        )
    batch.count(Contact, await upsert(Contact, list(new_contacts.values())))


async def tree_accounts_by_name(names: set[str]) -> dict[str, int]:
    """Map lower-case names to accounts that a tree file created."""
    if not names:
        return {}
    rows = await Account.raw(
        "SELECT DISTINCT ON (lookup.name) lookup.name, a.id FROM account a "
        "JOIN unnest({}::varchar[]) AS lookup(name) ON lower(a.name) = lookup.name "
        "WHERE a.external_key LIKE {} ORDER BY lookup.name, a.id",
        list(names),
        prefix_pattern(PREFIX),
    )
    return {row["name"]: row["id"] for row in rows}


async def other_contacts_by_email(emails: set[str]) -> dict[str, int]:
    """Map emails to contacts that some other import or a person created.

    Contacts this report created earlier are left out, so that they are
    updated from the report again.
    """
    if not emails:
        return {}
    rows = await Contact.raw(
        "SELECT DISTINCT ON (lookup.email) lookup.email, c.id FROM contact c "
        "JOIN unnest({}::varchar[]) AS lookup(email) ON lower(c.email) = lookup.email "
        "WHERE c.external_key IS DISTINCT FROM {}::text || lookup.email "
        "ORDER BY lookup.email, coalesce(c.external_key LIKE {}, false) DESC, c.id",
        list(emails),
        REPORT_PREFIX,
        prefix_pattern(PREFIX),
    )
    return {row["email"]: row["id"] for row in rows}


async def account_ids(
    batch: Batch, accepted: list[tuple[int, dict[str, Any]]], column: str
) -> dict[int, int]:
    """Resolve each record's ``account`` reference, by line, warning when unknown."""
    keys = {PREFIX + r["account"] for _, r in accepted if r["account"]}
    found = await ids_by_key(Account, keys)
    resolved: dict[int, int] = {}
    for line, record in accepted:
        if not record["account"]:
            continue
        account_id = found.get(PREFIX + record["account"])
        if account_id is None:
            batch.warn(line, column, "@" + record["account"], UNKNOWN_REFERENCE)
        else:
            resolved[line] = account_id
    return resolved


def reference(fields: RowValues, column: str, *, required: bool = False) -> str:
    """Return a referenceId, or the referenceId a ``"@..."`` value points to."""
    value = fields.text(column, required=required, max_length=KEY_LENGTH)
    return value.removeprefix("@")


def record_type(record: Any) -> str | None:
    if not isinstance(record, dict):
        return None
    attributes = record.get("attributes")
    if not isinstance(attributes, dict):
        return None
    kind = attributes.get("type")
    return kind if isinstance(kind, str) else None


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    fields = {key: value for key, value in record.items() if key != "attributes"}
    fields["referenceId"] = record["attributes"].get("referenceId")
    return fields


def load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8-sig") as handle:
            # Integers stay text, because RowValues reads every field as
            # text. int() would reject more than 4,300 digits with a
            # ValueError, failing the whole file instead of one record.
            return json.load(handle, parse_int=str)
    except UnicodeDecodeError as error:
        raise ImportFileError(f"{path.name} is not valid UTF-8: {error}") from None
    except json.JSONDecodeError as error:
        raise ImportFileError(f"{path.name} is not valid JSON: {error}") from None


def is_plan(data: Any) -> bool:
    return (
        isinstance(data, list)
        and bool(data)
        and all(isinstance(item, dict) and "sobject" in item for item in data)
    )


def plan_files(plan: Path, data: list[dict[str, Any]]) -> list[Path]:
    """Return the tree files a data plan names, relative to the plan's folder."""
    paths = []
    for item in data:
        for name in item.get("files", []):
            path = plan.parent / str(name)
            if not path.is_file():
                raise ImportFileError(f"{plan.name} names {name}, which does not exist")
            paths.append(path)
    return paths
