"""Sensitive contact fields: ciphertext in PostgreSQL, plaintext on pages,
imports that encrypt, and key rotation while a web server serves pages."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

from app.comments.tables import Comment
from app.contacts.queries import get_contact
from app.contacts.tables import Contact
from app.encryption.columns import get_keyring, set_keyring
from app.encryption.keyring import Keyring, key_id_of, new_key_entry
from app.encryption.rotation import count_by_key, rotate_all
from app.imports.writer import upsert
from tests.browserless import Session
from tests.factories import make_deal, make_pipeline, make_user
from tests.servers import ROOT, web_server

HTML = {"accept": "text/html"}
ROTATED_CONTACTS = 3000


async def admin_session(server) -> Session:
    user = await make_user(role="admin")
    session = Session(server.url)
    await session.sign_in(user.email)
    return session


async def stored_columns(contact_id: int) -> dict[str, Any]:
    rows = await Contact.raw(
        "SELECT phone, personal_notes FROM contact WHERE id = {}", contact_id
    )
    return rows[0]


async def new_contact() -> int:
    rows = await Contact.insert(
        Contact(first_name="Grace", last_name=uuid.uuid4().hex[:10])
    ).returning(Contact.id)
    return rows[0]["id"]


def edit(**fields: str) -> dict[str, str]:
    """A contact form post that changes ``fields`` from empty."""
    data = {f"base_{name}": "" for name in fields}
    data.update(fields)
    return data


async def test_page_edit_stores_ciphertext(server) -> None:
    contact_id = await new_contact()
    session = await admin_session(server)
    notes = "Prefers calls after 4 pm.\nDaughter: Ruth."

    saved = await session.post(
        f"/contacts/{contact_id}", edit(phone="+1 555 0142", personal_notes=notes)
    )
    stored = await stored_columns(contact_id)
    page = await session.get(f"/contacts/{contact_id}", headers=HTML)

    assert saved.status_code == 200, saved.text[:300]
    assert "Saved." in saved.text
    assert stored["phone"].startswith("enc1:test:")
    assert stored["personal_notes"].startswith("enc1:test:")
    assert "555" not in stored["phone"]
    assert "Ruth" not in stored["personal_notes"]
    assert page.status_code == 200
    assert "+1 555 0142" in page.text
    assert 'href="tel:+15550142"' in page.text
    assert "Daughter: Ruth." in page.text
    await session.close()


async def test_events_hold_no_sensitive_values(server) -> None:
    contact_id = await new_contact()
    session = await admin_session(server)

    await session.post(f"/contacts/{contact_id}", edit(phone="+1 555 0199"))
    rows = await Contact.raw(
        "SELECT changes::text AS changes FROM event "
        "WHERE record_type = 'contact' AND record_id = {}",
        contact_id,
    )

    assert len(rows) == 1
    assert '"phone"' in rows[0]["changes"]
    assert "[encrypted]" in rows[0]["changes"]
    assert "555" not in rows[0]["changes"]
    await session.close()


async def test_conflict_compares_plaintext(server) -> None:
    contact_id = await new_contact()
    first = await admin_session(server)
    second = await admin_session(server)

    await first.post(f"/contacts/{contact_id}", edit(phone="+1 555 0001"))
    same = await second.post(f"/contacts/{contact_id}", edit(phone="+1 555 0001"))
    other = await second.post(f"/contacts/{contact_id}", edit(phone="+1 555 0002"))

    assert "data-conflict" not in same.text
    assert 'data-conflict="phone"' in other.text
    assert "+1 555 0001" in other.text
    assert (await get_contact(contact_id))["phone"] == "+1 555 0001"
    await first.close()
    await second.close()


async def test_plaintext_from_before_encryption_is_read() -> None:
    contact_id = await new_contact()
    await Contact.raw("UPDATE contact SET phone = '555 0100' WHERE id = {}", contact_id)

    contact = await get_contact(contact_id)

    assert contact["phone"] == "555 0100"


async def test_import_writer_encrypts_and_sanitises() -> None:
    key = f"test:{uuid.uuid4().hex}"
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline)

    written = await upsert(
        Contact,
        [
            {
                "external_key": key,
                "first_name": "Imported",
                "last_name": "Person",
                "phone": "+44 20 7946 0000",
                "personal_notes": "Met at the fair",
            }
        ],
    )
    await upsert(
        Comment,
        [
            {
                "external_key": key,
                "deal": deal_id,
                "body": "Called <script>alert(1)</script>back\n\nNo answer",
            }
        ],
    )
    stored = await stored_columns(written[0]["id"])
    contact = await get_contact(written[0]["id"])
    comment = await Comment.raw("SELECT body FROM comment WHERE external_key = {}", key)

    assert key_id_of(stored["phone"]) == "test"
    assert key_id_of(stored["personal_notes"]) == "test"
    assert contact["phone"] == "+44 20 7946 0000"
    assert contact["personal_notes"] == "Met at the fair"
    assert comment[0]["body"] == "<p>Called back</p><p>No answer</p>"


async def test_too_long_notes_are_rejected(server) -> None:
    contact_id = await new_contact()
    session = await admin_session(server)

    response = await session.post(
        f"/contacts/{contact_id}", edit(personal_notes="x" * 5001)
    )

    assert response.status_code == 422
    assert "Personal notes" in response.text
    assert "longer than 5000 characters" in response.text
    assert (await stored_columns(contact_id))["personal_notes"] == ""
    await session.close()


def test_keys_generate_prints_entry() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "keys", "generate", "--id", "next"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    keyring = Keyring.parse(result.stdout.strip())
    assert keyring.current_id == "next"


def test_keys_generate_rejects_bad_id() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "keys", "generate", "--id", "no spaces"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert "key id 'no spaces' is invalid" in result.stderr


async def seed_contacts(count: int) -> list[dict[str, Any]]:
    """Insert ``count`` contacts through the import writer, returning ids and phones."""
    prefix = uuid.uuid4().hex[:8]
    rows = [
        {
            "external_key": f"rotation:{prefix}:{index}",
            "first_name": "Rotated",
            "last_name": f"{prefix}-{index}",
            "phone": f"+1 555 {index:06d}",
            "personal_notes": f"note {index}",
        }
        for index in range(count)
    ]
    written = await upsert(Contact, rows)
    return [
        {"id": row["id"], "phone": source["phone"]}
        for row, source in zip(written, rows, strict=True)
    ]


async def test_rotation_under_load_keeps_reads_working() -> None:
    test_entry = os.environ["CRM_ENCRYPTION_KEYS"]
    old_entry = new_key_entry("old")
    new_entry = new_key_entry("new")
    rotating = f"{new_entry},{old_entry},{test_entry}"

    set_keyring(Keyring.parse(old_entry))
    try:
        contacts = await seed_contacts(ROTATED_CONTACTS)
        set_keyring(Keyring.parse(rotating))
        with web_server({"CRM_ENCRYPTION_KEYS": rotating}) as server:
            report = await read_and_edit_while_rotating(server, contacts, rotating)
        counts = await count_by_key()
        edited_now = [await get_contact(item["id"]) for item in report["edited"]]
    finally:
        # Put every value back under the run's own key for the tests after this.
        await rotate_all(Keyring.parse(f"{test_entry},{new_entry},{old_entry}"))
        set_keyring(None)

    print(
        f"\nrotation of {ROTATED_CONTACTS * 2:,}+ values took "
        f"{report['rotation_seconds']:.2f} s; {report['reads']} page reads meanwhile, "
        f"median {report['median_ms']:.0f} ms, max {report['max_ms']:.0f} ms"
    )
    assert report["returncode"] == 0, report["output"]
    assert "Every encrypted value is under key 'new'" in report["output"]
    assert "contact.phone:" in report["output"]
    assert report["failures"] == []
    assert report["reads"] >= 20
    assert set(counts["contact.phone"]) == {"new"}
    assert set(counts["contact.personal_notes"]) == {"new"}
    for item, contact in zip(report["edited"], edited_now, strict=True):
        assert contact["phone"] == item["phone"]
    assert get_keyring().current_id == "test"


async def read_and_edit_while_rotating(
    server, contacts: list[dict[str, Any]], keys: str
) -> dict[str, Any]:
    session = await admin_session(server)
    failures: list[str] = []
    latencies: list[float] = []
    edited: list[dict[str, Any]] = []
    rotating = asyncio.Event()
    rotating.set()

    # An edit still in flight when a read starts may land before or after it,
    # so that read may show either phone; once the edit has answered, only the
    # new one.
    sent: dict[int, str] = {}
    saved: dict[int, str] = {}

    def phones_of(item: dict[str, Any]) -> set[str]:
        if item["id"] in saved:
            return {saved[item["id"]]}
        return {item["phone"], sent.get(item["id"], item["phone"])}

    async def read_pages() -> None:
        while rotating.is_set():
            item = random.choice(contacts)
            allowed = phones_of(item)
            started = time.monotonic()
            response = await session.get(f"/contacts/{item['id']}", headers=HTML)
            latencies.append(time.monotonic() - started)
            allowed |= phones_of(item)
            if response.status_code != 200 or not any(
                phone in response.text for phone in allowed
            ):
                failures.append(f"contact {item['id']}: {response.status_code}")

    async def edit_some() -> None:
        for item in random.sample(contacts, 20):
            phone = item["phone"].replace("+1", "+2")
            sent[item["id"]] = phone
            response = await session.post(
                f"/contacts/{item['id']}",
                {"phone": phone, "base_phone": item["phone"]},
            )
            if response.status_code != 200 or "Saved." not in response.text:
                failures.append(f"edit of contact {item['id']}: {response.status_code}")
            saved[item["id"]] = phone
            edited.append({"id": item["id"], "phone": phone})
            await asyncio.sleep(0.05)

    readers = [asyncio.create_task(read_pages()) for _ in range(4)]
    editor = asyncio.create_task(edit_some())
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "keys",
        "rotate",
        "--batch-size",
        "100",
        cwd=ROOT,
        env={**os.environ, "CRM_ENCRYPTION_KEYS": keys},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    rotation_seconds = time.monotonic() - started
    await editor
    rotating.clear()
    await asyncio.gather(*readers)
    await session.close()
    return {
        "returncode": process.returncode,
        "output": output.decode(),
        "failures": failures,
        "reads": len(latencies),
        "median_ms": statistics.median(latencies) * 1000,
        "max_ms": max(latencies) * 1000,
        "rotation_seconds": rotation_seconds,
        "edited": edited,
    }
