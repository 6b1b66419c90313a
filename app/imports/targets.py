"""The fields a mapped CSV import can write for each record type, the
presets for known export shapes, and the checks of a mapping.

A mapping sends each CSV header to one field of the target type, or to ""
to ignore the column. Presets are mappings for the column names of HubSpot,
Salesforce report (contacts, accounts and opportunities) and Maven exports,
found by the headers a file has.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from app.access.permissions import Access
from app.errors import FieldError
from app.imports import hubspot, maven, salesforce, tickets
from app.imports.writer import StageSpec
from app.tickets.tables import CHANNELS, PRIORITIES, STATUSES

IGNORE = ""
TARGET_LABELS = {
    "deal": "Deals",
    "ticket": "Tickets",
    "account": "Accounts",
    "contact": "Contacts",
}


@dataclass(frozen=True)
class TargetField:
    """A field a column can be mapped to.

    ``kind`` is how the text is parsed: text, amount, integer, date,
    email, choice (of ``choices``, also accepting the labels of known
    sources), or a link to another record: account (by name or domain),
    user (by email or name), contact (by email), pipeline and stage (by
    name). ``rule_field`` is the field of the role's field rules that
    governs it, when there is one.
    """

    name: str
    label: str
    kind: str = "text"
    required: bool = False
    max_length: int | None = None
    choices: Mapping[str, str] = field(default_factory=dict)
    # The stored value of an empty choice, the column's default.
    default: str | None = None
    rule_field: str | None = None


def choices(values: Iterable[str], *labels: Mapping[str, str]) -> dict[str, str]:
    """Accept each value itself, its label in title case and the labels of
    other systems, mapped to the stored value."""
    accepted = {value: value for value in values}
    accepted.update({value.replace("_", " ").title(): value for value in values})
    for extra in labels:
        accepted.update(extra)
    return accepted


EXTERNAL_ID = TargetField(
    "external_id",
    "Source id (re-importing updates the same record)",
    max_length=150,
)
FIELDS: dict[str, tuple[TargetField, ...]] = {
    "deal": (
        EXTERNAL_ID,
        TargetField("name", "Name", max_length=300, rule_field="name"),
        TargetField("stage", "Stage", kind="stage", required=True, rule_field="stage"),
        TargetField("pipeline", "Pipeline", kind="pipeline"),
        TargetField("amount", "Amount", kind="amount", rule_field="amount"),
        TargetField("close_date", "Close date", kind="date", rule_field="close_date"),
        TargetField("account", "Account (name or domain)", kind="account"),
        TargetField("contact", "Contact (email)", kind="contact"),
        TargetField("owner", "Owner (email or name)", kind="user", rule_field="owner"),
    ),
    "ticket": (
        EXTERNAL_ID,
        TargetField(
            "subject", "Subject", required=True, max_length=300, rule_field="subject"
        ),
        TargetField("description", "Description", rule_field="description"),
        TargetField(
            "status",
            "Status",
            kind="choice",
            choices=choices(STATUSES, hubspot.TICKET_STATUSES, tickets.STATUSES),
            default="new",
            rule_field="status",
        ),
        TargetField(
            "priority",
            "Priority",
            kind="choice",
            choices=choices(PRIORITIES, hubspot.TICKET_PRIORITIES, tickets.PRIORITIES),
            default="medium",
            rule_field="priority",
        ),
        TargetField(
            "channel",
            "Channel",
            kind="choice",
            choices=choices(CHANNELS, hubspot.TICKET_CHANNELS, tickets.CHANNELS),
            default="web",
            rule_field="channel",
        ),
        TargetField("type", "Type", max_length=60, rule_field="type"),
        TargetField("requester", "Requester (contact email)", kind="contact"),
        TargetField("account", "Account (name or domain)", kind="account"),
        TargetField(
            "assignee", "Assignee (email or name)", kind="user", rule_field="assignee"
        ),
    ),
    "account": (
        EXTERNAL_ID,
        TargetField("name", "Name", required=True, max_length=200, rule_field="name"),
        TargetField("domain", "Domain", max_length=200, rule_field="domain"),
        TargetField("industry", "Industry", max_length=120, rule_field="industry"),
        TargetField("employees", "Employees", kind="integer", rule_field="employees"),
        TargetField(
            "annual_revenue",
            "Annual revenue",
            kind="amount",
            rule_field="annual_revenue",
        ),
        TargetField("year_established", "Year established", kind="integer"),
        TargetField("phone", "Phone", max_length=60, rule_field="phone"),
        TargetField("website", "Website", max_length=300, rule_field="website"),
        TargetField("city", "City", max_length=120, rule_field="city"),
        TargetField("country", "Country", max_length=120, rule_field="country"),
        TargetField("owner", "Owner (email or name)", kind="user", rule_field="owner"),
    ),
    "contact": (
        EXTERNAL_ID,
        TargetField(
            "first_name", "First name", max_length=120, rule_field="first_name"
        ),
        TargetField(
            "last_name",
            "Last name",
            required=True,
            max_length=120,
            rule_field="last_name",
        ),
        TargetField("email", "Email", kind="email", rule_field="email"),
        TargetField("phone", "Phone", max_length=60, rule_field="phone"),
        TargetField("title", "Title", max_length=200, rule_field="title"),
        TargetField(
            "lifecycle_stage",
            "Lifecycle stage",
            max_length=60,
            rule_field="lifecycle_stage",
        ),
        TargetField(
            "account", "Account (name or domain)", kind="account", rule_field="account"
        ),
        TargetField("owner", "Owner (email or name)", kind="user", rule_field="owner"),
    ),
}


def target_fields(target: str, access: Access | None = None) -> tuple[TargetField, ...]:
    """Return the fields of ``target`` that ``access`` may write, or all of them."""
    if target not in FIELDS:
        raise FieldError("target", target, f"must be one of {', '.join(FIELDS)}")
    fields = FIELDS[target]
    if access is None:
        return fields
    return tuple(
        item
        for item in fields
        if item.rule_field is None or access.can_write(target, item.rule_field)
    )


@dataclass(frozen=True)
class Preset:
    """A mapping for the files of one known export shape.

    A file matches when its header has every column of ``detect``. Deals of
    a preset with ``stages`` go to pipelines created with those stages when
    they do not exist yet. ``key_prefix`` keys the records as the source's
    own importer does, so both update the same records.
    """

    name: str
    label: str
    target: str
    detect: tuple[str, ...]
    mapping: Mapping[str, str]
    key_prefix: str
    stages: tuple[StageSpec, ...] = ()
    pipeline: str | None = None
    # Without a mapped source id, the value of this column keys the record.
    key_column: str | None = None
    # Date formats accepted besides ISO dates, strptime pattern -> label.
    date_formats: Mapping[str, str] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "hubspot-companies",
            "HubSpot companies",
            "account",
            hubspot.FORMATS["companies"],
            {
                "Company ID": "external_id",
                "Company Name": "name",
                "Company Domain Name": "domain",
                "Industry": "industry",
                "Number of Employees": "employees",
                "Annual Revenue": "annual_revenue",
                "Phone Number": "phone",
                "Website": "website",
                "City": "city",
                "Country": "country",
                "Company Owner": "owner",
            },
            hubspot.PREFIX,
        ),
        Preset(
            "hubspot-contacts",
            "HubSpot contacts",
            "contact",
            hubspot.FORMATS["contacts"],
            {
                "Contact ID": "external_id",
                "First Name": "first_name",
                "Last Name": "last_name",
                "Email": "email",
                "Phone Number": "phone",
                "Job Title": "title",
                "Lifecycle Stage": "lifecycle_stage",
                "Contact Owner": "owner",
                "Associated Company Domain": "account",
            },
            hubspot.PREFIX,
        ),
        Preset(
            "hubspot-deals",
            "HubSpot deals",
            "deal",
            hubspot.FORMATS["deals"],
            {
                "Deal ID": "external_id",
                "Deal Name": "name",
                "Deal Stage": "stage",
                "Pipeline": "pipeline",
                "Amount": "amount",
                "Close Date": "close_date",
                "Deal Owner": "owner",
                "Associated Company Domain": "account",
                "Associated Contact Email": "contact",
            },
            hubspot.PREFIX,
            stages=hubspot.STAGES,
        ),
        Preset(
            "hubspot-tickets",
            "HubSpot tickets",
            "ticket",
            hubspot.FORMATS["tickets"],
            {
                "Ticket ID": "external_id",
                "Ticket Name": "subject",
                "Ticket Description": "description",
                "Ticket Status": "status",
                "Ticket Priority": "priority",
                "Ticket Source": "channel",
                "Ticket Owner": "assignee",
                "Associated Company Domain": "account",
                "Associated Contact Email": "requester",
            },
            hubspot.PREFIX,
        ),
        Preset(
            "salesforce-report",
            "Salesforce report of accounts and contacts",
            "contact",
            (*salesforce.REPORT_COLUMNS, "Contact: Last Name"),
            {
                "Account: Account Name": "account",
                "Contact: First Name": "first_name",
                "Contact: Last Name": "last_name",
                "Contact: Title": "title",
                "Contact: Phone": "phone",
                "Contact: Email": "email",
            },
            salesforce.REPORT_PREFIX,
        ),
        Preset(
            "salesforce-accounts",
            "Salesforce report of accounts",
            "account",
            salesforce.REPORT_COLUMNS,
            {
                "Account: Account Name": "name",
                "Account: Industry": "industry",
                "Account: Employees": "employees",
                "Account: Annual Revenue": "annual_revenue",
                "Account: Phone": "phone",
                "Account: Website": "website",
                "Account: Billing City": "city",
                "Account: Billing Country": "country",
                "Account: Account Owner": "owner",
            },
            salesforce.REPORT_PREFIX,
            # Keyed by name, as the report importer keys accounts, so that
            # both update the same records.
            key_column="Account: Account Name",
        ),
        Preset(
            "salesforce-opportunities",
            "Salesforce report of opportunities",
            "deal",
            salesforce.OPPORTUNITY_REPORT_COLUMNS,
            {
                "Opportunity: Opportunity ID": "external_id",
                "Opportunity: Opportunity Name": "name",
                "Opportunity: Stage": "stage",
                "Opportunity: Amount": "amount",
                "Opportunity: Close Date": "close_date",
                "Opportunity: Opportunity Owner": "owner",
                "Account: Account Name": "account",
            },
            salesforce.REPORT_PREFIX,
            stages=salesforce.STAGES,
            pipeline=salesforce.PIPELINE,
            date_formats=salesforce.REPORT_DATE_FORMATS,
        ),
        Preset(
            "maven-accounts",
            "Maven accounts",
            "account",
            maven.FORMATS["accounts"],
            {
                "account": "name",
                "sector": "industry",
                "year_established": "year_established",
                "revenue": "annual_revenue",
                "employees": "employees",
                "office_location": "country",
            },
            f"{maven.SOURCE}:",
            key_column="account",
        ),
        Preset(
            "maven-deals",
            "Maven sales pipeline",
            "deal",
            maven.FORMATS["sales_pipeline"],
            {
                "opportunity_id": "external_id",
                "sales_agent": "owner",
                "account": "account",
                "deal_stage": "stage",
                "close_date": "close_date",
                "close_value": "amount",
            },
            f"{maven.SOURCE}:",
            stages=maven.STAGES,
            pipeline=maven.PIPELINE,
        ),
        Preset(
            "support-tickets",
            "Customer support tickets",
            "ticket",
            tickets.FORMATS["tickets"],
            {
                "Ticket ID": "external_id",
                "Customer Email": "requester",
                "Ticket Type": "type",
                "Ticket Subject": "subject",
                "Ticket Description": "description",
                "Ticket Status": "status",
                "Ticket Priority": "priority",
                "Ticket Channel": "channel",
            },
            f"{tickets.SOURCE}:",
        ),
    )
}


def detect_preset(headers: Iterable[str]) -> Preset | None:
    """Return the preset whose detecting columns the header has, the most
    specific first."""
    present = set(headers)
    matches = [preset for preset in PRESETS.values() if set(preset.detect) <= present]
    if not matches:
        return None
    return max(matches, key=lambda preset: len(preset.detect))


def header_key(headers: Iterable[str]) -> str:
    """Digest of a header set, ignoring order, case and outer spaces."""
    names = sorted({name.strip().casefold() for name in headers if name.strip()})
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def guess_mapping(target: str, headers: list[str]) -> dict[str, str]:
    """Map each header whose name is a field's name or label, else ignore it."""
    by_name: dict[str, str] = {}
    for item in FIELDS[target]:
        for alias in (item.name, item.name.replace("_", " "), item.label):
            by_name.setdefault(alias.casefold(), item.name)
        by_name.setdefault(item.label.split(" (")[0].casefold(), item.name)
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for header in headers:
        guess = by_name.get(header.strip().casefold(), IGNORE)
        if guess and guess in used:
            guess = IGNORE
        used.add(guess)
        mapping[header] = guess
    return mapping


def preset_mapping(preset: Preset, headers: list[str]) -> dict[str, str]:
    return {header: preset.mapping.get(header, IGNORE) for header in headers}


def validate_mapping(
    target: str,
    headers: list[str],
    mapping: Mapping[str, str],
    access: Access | None = None,
) -> list[FieldError]:
    """Return every problem of ``mapping``, each naming the field at fault.

    A header of the file that ``mapping`` leaves out is ignored. Problems
    are a header the file does not have, an unknown field or one the
    user's role may not write, a field mapped from two columns and a
    required field mapped from none.
    """
    fields = {item.name: item for item in target_fields(target)}
    allowed = {item.name for item in target_fields(target, access)}
    errors: list[FieldError] = []
    sources: dict[str, list[str]] = {}
    for header, name in mapping.items():
        if header not in headers:
            errors.append(FieldError(header, name, "is not a column of the file"))
            continue
        if name == IGNORE:
            continue
        if name not in fields:
            errors.append(
                FieldError(
                    name,
                    header,
                    f"is not a field of {TARGET_LABELS[target].lower()}",
                )
            )
            continue
        if name not in allowed:
            errors.append(FieldError(name, header, "is read-only for your role"))
            continue
        sources.setdefault(name, []).append(header)
    for name, columns in sources.items():
        if len(columns) > 1:
            errors.append(
                FieldError(
                    name,
                    ", ".join(columns),
                    f"is mapped from {len(columns)} columns; map it from one",
                )
            )
    for item in fields.values():
        if item.required and item.name not in sources:
            errors.append(FieldError(item.name, "", "is required: map a column to it"))
    return errors
