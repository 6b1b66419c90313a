"""The crm command line against the test run's database."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.auth.tables import User
from app.deals.tables import Deal
from tests.conftest import datasets_dir
from tests.factories import unique
from tests.servers import ROOT


def crm(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_migrate_twice_is_a_no_op() -> None:
    first = crm("migrate")
    second = crm("migrate")

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "Database is up to date." in second.stdout


async def test_createuser_reads_password_from_stdin() -> None:
    result = crm(
        "createuser",
        "Lee@Test.Example",
        "--name",
        "Lee Park",
        "--role",
        "support_lead",
        stdin="a long enough password\n",
    )

    assert result.returncode == 0, result.stderr
    user = (
        await User.select(User.role, User.name)
        .where(User.email == "lee@test.example")
        .first()
    )
    assert user == {"role": "support_lead", "name": "Lee Park"}


def test_createuser_rejects_short_password() -> None:
    result = crm(
        "createuser",
        "short@test.example",
        "--name",
        "Short",
        "--role",
        "admin",
        stdin="abc\n",
    )

    assert result.returncode != 0
    assert "Password" in result.stderr
    assert "at least 8 characters" in result.stderr


def test_createuser_rejects_unknown_role() -> None:
    result = crm(
        "createuser",
        "x@test.example",
        "--name",
        "X",
        "--role",
        "wizard",
        stdin="long password\n",
    )

    assert result.returncode != 0
    assert "wizard" in result.stderr


def test_bad_database_url_names_the_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": "mysql://nowhere/db",
            "REDIS_URL": "redis://127.0.0.1:6379",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "DATABASE_URL='mysql://nowhere/db' is invalid" in result.stderr


@pytest.mark.datasets
def test_import_command_reports_counts() -> None:
    folder = datasets_dir("salesforce_sample")

    result = crm("import", "salesforce", str(folder))

    assert result.returncode == 0, result.stderr
    assert "deal" in result.stdout


def test_import_command_reports_row_errors(tmp_path) -> None:
    path = tmp_path / "hubspot_deals.csv"
    path.write_text(
        "Deal ID,Deal Name,Deal Stage,Pipeline,Amount,Close Date,Create Date,"
        "Deal Owner,Deal Type,Closed Lost Reason,Associated Company Domain,"
        "Associated Contact Email\n"
        "D-1,Good deal,Closed Won,Sales Pipeline,100,2025-01-01,2024-01-01,,,,,\n"
        "D-2,Bad deal,Closed Won,Sales Pipeline,lots,2025-01-01,2024-01-01,,,,,\n"
    )

    result = crm("import", "hubspot", str(path))

    assert result.returncode == 0, result.stderr
    assert "hubspot_deals.csv" in result.stderr
    assert "lots" in result.stderr
    assert ":3" in result.stderr


async def test_import_command_rejects_unreadable_amounts(tmp_path) -> None:
    prefix = unique("CLI").replace(" ", "-")
    lines = [
        f"{prefix}-{number},Deal {number},Closed Won,Sales Pipeline,{amount},"
        "2025-01-01,2024-01-01,,,,,"
        for number, amount in enumerate(["100", "1e30", "NaN", "Infinity"], start=1)
    ]
    path = tmp_path / "hubspot_deals.csv"
    path.write_text(
        "Deal ID,Deal Name,Deal Stage,Pipeline,Amount,Close Date,Create Date,"
        "Deal Owner,Deal Type,Closed Lost Reason,Associated Company Domain,"
        "Associated Contact Email\n" + "\n".join(lines) + "\n"
    )

    result = crm("import", "hubspot", str(path))

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for line, value in ((3, "1e30"), (4, "NaN"), (5, "Infinity")):
        assert f"hubspot_deals.csv:{line} Amount '{value}': not an amount" in (
            result.stderr
        )
    stored = await Deal.select(Deal.external_key).where(
        Deal.external_key.like(f"hubspot:{prefix}-%")
    )
    assert [row["external_key"] for row in stored] == [f"hubspot:{prefix}-1"]
