"""Import Maven Analytics' "CRM + Sales Opportunities" files into the CRM tables.

The four files are products.csv, sales_teams.csv, accounts.csv and
sales_pipeline.csv, recognised by their headers. Accounts are keyed by name.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

from app.accounts.tables import Account
from app.auth.tables import Team, TeamMember, User
from app.deals.service import rejected_stage_entries
from app.deals.tables import Deal, Pipeline, Product, Stage
from app.imports.fields import RowValues, key_limit, limit, midnight
from app.imports.report import RowError
from app.imports.runner import (
    Batch,
    ImportRun,
    SourceFiles,
    csv_step,
    describe_formats,
    recognise_csv,
)
from app.imports.writer import (
    STAGE_ENTERED_ON_CHANGE,
    PipelineStages,
    StageSpec,
    ensure_pipeline,
    ids_by_key,
    link_account_parents,
    upsert,
    users_by_email,
)

SOURCE = "maven"
FORMATS = {
    "products": ("product", "series", "sales_price"),
    "sales_teams": ("sales_agent", "manager", "regional_office"),
    "accounts": (
        "account",
        "sector",
        "year_established",
        "revenue",
        "employees",
        "office_location",
        "subsidiary_of",
    ),
    "sales_pipeline": (
        "opportunity_id",
        "sales_agent",
        "product",
        "account",
        "deal_stage",
        "engage_date",
        "close_date",
        "close_value",
    ),
}
PIPELINE = "Maven sales"
STAGES = (
    StageSpec("Prospecting", "open", 10),
    StageSpec("Engaging", "open", 40),
    StageSpec("Won", "won", 100),
    StageSpec("Lost", "lost", 0),
)
# The maximum length of a source id that still fits external_key after "maven:".
KEYED_NAME_LENGTH = key_limit(f"{SOURCE}:")
# Sales agents and managers have no email in the files. Addresses under the
# reserved .example domain identify them without reaching anyone.
EMAIL_DOMAIN = "maven.example"


SUFFIXES = (".csv",)


def recognise(paths: list[Path]) -> SourceFiles:
    return recognise_csv(paths, FORMATS)


def describe() -> str:
    return describe_formats(FORMATS)


async def import_files(files: SourceFiles, run: ImportRun) -> None:
    for path in files.paths("products"):
        await import_products(path, run)
    for path in files.paths("sales_teams"):
        await import_teams(path, run)
    for path in files.paths("accounts"):
        await import_accounts(path, run)

    pipeline_paths = files.paths("sales_pipeline")
    if pipeline_paths:
        stages = await ensure_maven_pipeline(run)
        products = await load_products()
        for path in pipeline_paths:
            await import_deals(path, run, stages, products)


async def import_products(path: Path, run: ImportRun) -> None:
    def prepare(fields: RowValues) -> dict[str, Any]:
        return {
            "name": fields.text(
                "product", required=True, max_length=limit(Product.name)
            ),
            "series": fields.text("series", max_length=limit(Product.series)),
            "price": fields.amount("sales_price"),
        }

    async def write(batch: Batch) -> None:
        rows = [record for _, record in batch.accepted()]
        batch.count(Product, await upsert(Product, rows, conflict=("name",)))

    await run.run(
        csv_step(
            path,
            prepare,
            write,
            key="name",
            key_column="product",
        )
    )


async def import_teams(path: Path, run: ImportRun) -> None:
    """Create one team per manager, with the manager and their agents as users."""

    def prepare(fields: RowValues) -> dict[str, Any]:
        agent = fields.text("sales_agent", required=True, max_length=limit(User.name))
        manager = fields.text("manager", required=True, max_length=limit(User.name))
        region = fields.text("regional_office", max_length=limit(Team.region))
        team = team_name(manager)
        if len(team) > limit(Team.name):
            fields.fail("manager", f"longer than {limit(Team.name) - 5} characters")
        for column, name in (("sales_agent", agent), ("manager", manager)):
            if name and email_for(name) is None:
                fields.fail(column, "contains no letters or digits to build an email")
        return {"agent": agent, "manager": manager, "team": team, "region": region}

    async def write(batch: Batch) -> None:
        records = [record for _, record in batch.accepted()]
        regions = {record["team"]: record["region"] for record in records}
        team_rows = await upsert(
            Team,
            [{"name": name, "region": region} for name, region in regions.items()],
            conflict=("name",),
        )
        batch.count(Team, team_rows)
        team_ids = {row["name"]: row["id"] for row in team_rows}

        people: dict[str, dict[str, Any]] = {}
        for record in records:
            team_id = team_ids[record["team"]]
            for name, role in (
                (record["agent"], "sales_rep"),
                (record["manager"], "sales_manager"),
            ):
                email = email_for(name)
                assert email is not None
                people[email] = {
                    "email": email,
                    "name": name,
                    "role": role,
                    "team": team_id,
                    "password_hash": None,
                }
        user_rows = await upsert(
            User,
            list(people.values()),
            conflict=("email",),
            # An admin may have changed a role or set a password since.
            insert_only=("role", "password_hash"),
        )
        batch.count(User, user_rows)

        user_ids = {row["email"]: row["id"] for row in user_rows}
        members = {
            (person["team"], user_ids[email]) for email, person in people.items()
        }
        member_rows = await upsert(
            TeamMember,
            [{"team": team, "user": user} for team, user in sorted(members)],
            conflict=("team", "user"),
        )
        batch.count(TeamMember, member_rows, created_only=True)

    await run.run(
        csv_step(
            path,
            prepare,
            write,
            key="agent",
            key_column="sales_agent",
        )
    )


async def import_accounts(path: Path, run: ImportRun) -> None:
    links: list[tuple[int, str, str, str]] = []

    def prepare(fields: RowValues) -> dict[str, Any]:
        name = fields.text("account", required=True, max_length=KEYED_NAME_LENGTH)
        parent = fields.text("subsidiary_of")
        if parent and parent == name:
            fields.fail("subsidiary_of", "an account cannot be its own parent", parent)
        return {
            "external_key": account_key(name),
            "name": name,
            "industry": fields.text("sector", max_length=limit(Account.industry)),
            "year_established": fields.integer("year_established"),
            # NOTE: the files do not state the unit of revenue, so it is
            # stored as given.
            "annual_revenue": fields.amount("revenue"),
            "employees": fields.integer("employees"),
            "country": fields.text(
                "office_location", max_length=limit(Account.country)
            ),
            "parent": parent,
        }

    async def write(batch: Batch) -> None:
        accepted = batch.accepted()
        rows = [
            {key: value for key, value in record.items() if key != "parent"}
            for _, record in accepted
        ]
        batch.count(Account, await upsert(Account, rows))

        pending = [
            (
                line,
                record["external_key"],
                account_key(record["parent"]),
                record["parent"],
            )
            for line, record in accepted
            if record["parent"]
        ]
        batch.after_commit.append(lambda: links.extend(pending))

    await run.run(
        csv_step(
            path,
            prepare,
            write,
            key_column="account",
        )
    )

    # Parents are linked after every batch of the file is in, because a
    # subsidiary may come before its parent.
    if not links:
        return
    missing: set[str] = set()

    async def link() -> None:
        missing.update(
            await link_account_parents(
                [(child, parent) for _, child, parent, _ in links]
            )
        )

    await run.write_once(link)
    for line, child, _, parent in links:
        if child in missing:
            run.report.warnings.append(
                RowError(
                    path.name,
                    line,
                    "subsidiary_of",
                    parent,
                    "unknown account, so the parent is left empty",
                )
            )


async def ensure_maven_pipeline(run: ImportRun) -> PipelineStages:
    result: list[PipelineStages] = []

    async def write() -> None:
        result.append(await ensure_pipeline(PIPELINE, STAGES))

    await run.write_once(write)
    stages = result[0]
    run.report.count(Pipeline._meta.tablename, created=int(stages.pipeline_created))
    run.report.count(Stage._meta.tablename, created=stages.stages_created)
    return stages


async def load_products() -> dict[str, dict[str, Any]]:
    """Map each product's normalised name to its id, name and price."""
    rows = await Product.raw("SELECT id, name, price FROM product ORDER BY id")
    products: dict[str, dict[str, Any]] = {}
    for row in rows:
        products.setdefault(normalise(row["name"]), row)
    return products


async def import_deals(
    path: Path,
    run: ImportRun,
    stages: PipelineStages,
    products: dict[str, dict[str, Any]],
) -> None:
    kinds = {stage.name: stage.kind for stage in STAGES}
    stage_names = {name: name for name in stages.stage_ids}

    def prepare(fields: RowValues) -> dict[str, Any] | None:
        opportunity = fields.text(
            "opportunity_id", required=True, max_length=KEYED_NAME_LENGTH
        )
        agent = fields.text("sales_agent")
        account = fields.text("account")
        stage = fields.choice("deal_stage", stage_names)
        engage_date = fields.date("engage_date")
        close_date = fields.date("close_date")
        close_value = fields.amount("close_value")

        product_name = fields.text("product")
        product = products.get(normalise(product_name)) if product_name else None
        if product_name and product is None:
            fields.fail("product", "unknown product, not in products.csv", product_name)
        if agent and email_for(agent) is None:
            fields.fail("sales_agent", "contains no letters or digits", agent)
        if stage is None or fields.errors:
            return None

        amount = close_value
        if amount is None and kinds.get(stage, "open") == "open" and product:
            # Open deals have no close_value yet, so their amount is the
            # expected value: the product's list price.
            amount = product["price"]

        entered = None
        if kinds.get(stage) in ("won", "lost"):
            entered = close_date
        elif engage_date is not None:
            entered = engage_date

        label = product["name"] if product else "no product"
        name = f"{account or 'No account'} \N{EN DASH} {label}"
        return {
            "external_key": f"{SOURCE}:{opportunity}",
            "name": name[: limit(Deal.name)],
            "pipeline": stages.pipeline_id,
            "stage": stages.stage_ids[stage],
            "product": product["id"] if product else None,
            "amount": amount,
            "close_date": close_date,
            "engage_date": engage_date,
            "stage_entered_at": midnight(entered),
            "account_name": account,
            "agent_name": agent,
        }

    async def write(batch: Batch) -> None:
        accepted = batch.accepted()
        account_ids = await ids_by_key(
            Account,
            {account_key(r["account_name"]) for _, r in accepted if r["account_name"]},
        )
        users = await users_by_email(
            {email_for(r["agent_name"]) or "" for _, r in accepted if r["agent_name"]}
        )

        rows = []
        lines = []
        for line, record in accepted:
            account_id = None
            if record["account_name"]:
                account_id = account_ids.get(account_key(record["account_name"]))
                if account_id is None:
                    batch.reject(
                        line,
                        "account",
                        record["account_name"],
                        "unknown account, not in accounts.csv",
                    )
                    continue
            user = None
            if record["agent_name"]:
                user = users.get(email_for(record["agent_name"]) or "")
                if user is None:
                    batch.reject(
                        line,
                        "sales_agent",
                        record["agent_name"],
                        "unknown sales agent, not in sales_teams.csv",
                    )
                    continue

            row = {
                key: value
                for key, value in record.items()
                if key not in ("account_name", "agent_name")
            }
            row["account"] = account_id
            row["owner"] = user["id"] if user else None
            row["team"] = user["team"] if user else None
            rows.append(row)
            lines.append(line)

        rejected = await rejected_stage_entries(rows)
        for index, error in rejected.items():
            batch.reject(lines[index], "deal_stage", error.stage_name, error.reason)
        rows = [row for index, row in enumerate(rows) if index not in rejected]

        written = await upsert(
            Deal, rows, update={"stage_entered_at": STAGE_ENTERED_ON_CHANGE}
        )
        batch.count(Deal, written)
        if written:
            batch.pipeline_ids.add(stages.pipeline_id)

    await run.run(
        csv_step(
            path,
            prepare,
            write,
            key_column="opportunity_id",
        )
    )


def account_key(name: str) -> str:
    return f"{SOURCE}:{name}"


def team_name(manager: str) -> str:
    return f"{manager} team"


def email_for(name: str) -> str | None:
    """Build ``first.last@maven.example`` from a person's name, or None."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    parts = re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", ascii_name.lower())
    if not parts:
        return None
    return ".".join(parts) + "@" + EMAIL_DOMAIN


def normalise(product: str) -> str:
    """Fold case and drop spaces, so that "GTXPro" matches "GTX Pro"."""
    return "".join(product.split()).casefold()
