"""Pure parts of email handling: file names, subjects, digests and HTML text."""

from __future__ import annotations

import datetime as dt

import pytest

from app.email.outbound import chain, reply_subject
from app.email.parsing import (
    body_digest,
    html_to_text,
    message_ids,
    parse_message,
    safe_filename,
)

FILENAMES = {
    "../../etc/passwd": "passwd",
    "C:\\Users\\x\\evil.exe": "evil.exe",
    "re\x00port\x1f.pdf": "report.pdf",
    "...": "attachment-3.bin",
    "": "attachment-3.bin",
    "a" * 300 + ".txt": "a" * 196 + ".txt",
}


@pytest.mark.parametrize(("raw", "expected"), FILENAMES.items())
def test_safe_filename(raw: str, expected: str) -> None:
    assert safe_filename(raw, 3, "application/octet-stream") == expected


def test_safe_filename_forwarded_message() -> None:
    assert safe_filename(None, 2, "message/rfc822") == "attachment-2.eml"


def test_safe_filename_raw_utf8_bytes() -> None:
    raw = "ciële.txt".encode().decode("ascii", "surrogateescape")

    assert safe_filename(raw, 1, "text/plain") == "ciële.txt"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Printer on fire", "Re: [#T-7] Printer on fire"),
        ("Re: [#T-7] Printer on fire", "Re: [#T-7] Printer on fire"),
        ("RE: AW: Printer", "Re: [#T-7] Printer"),
        ("", "Re: [#T-7]"),
    ],
)
def test_reply_subject(subject: str, expected: str) -> None:
    assert reply_subject(7, subject) == expected


def test_references_chain_keeps_first_and_newest() -> None:
    ids = " ".join(f"id{number}@x" for number in range(30))

    result = chain(ids, "new@x")

    assert len(result) == 20
    assert result[0] == "id0@x"
    assert result[-1] == "new@x"
    assert result[-2] == "id29@x"


def test_message_ids_in_order_without_repeats() -> None:
    header = "<a@x> junk <b@y>\r\n <a@x>"

    assert message_ids(header) == ["a@x", "b@y"]


def test_body_digest_ignores_line_endings() -> None:
    lf = b"Subject: x\n\nline one\nline two\n"
    crlf = b"Subject: x\r\nReceived: by relay\r\n\r\nline one\r\nline two\r\n\r\n"

    assert body_digest(lf) == body_digest(crlf)
    assert body_digest(lf) != body_digest(b"Subject: x\n\nline one\n")


def test_html_to_text_drops_scripts_and_keeps_blocks() -> None:
    markup = (
        "<html><head><title>T</title><style>p{}</style></head><body>"
        "<p>One &amp; two</p><script>alert(1)</script><div>Three<br>Four</div>"
        "</body></html>"
    )

    assert html_to_text(markup) == "One & two\n\nThree\nFour"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ("Priority: urgent\r\n", "urgent"),
        ("Priority: URGENT\r\n", "urgent"),
        ("Priority: non-urgent\r\n", ""),
        ("X-Priority: 1\r\n", "urgent"),
        ("X-Priority: 1 (Highest)\r\n", "urgent"),
        ("X-Priority: 2 (High)\r\n", "high"),
        ("X-Priority: 3 (Normal)\r\n", ""),
        ("X-Priority: 5\r\n", ""),
        ("X-Priority: 10\r\n", ""),
        ("Importance: high\r\n", "high"),
        ("Importance: low\r\n", ""),
        ("Importance: high\r\nX-Priority: 1\r\n", "urgent"),
        ("", ""),
    ],
)
def test_priority_headers_map_to_ticket_priority(headers: str, expected: str) -> None:
    raw = (
        "From: Ada <ada@example.com>\r\nTo: help@example.org\r\n"
        f"Subject: Down\r\n{headers}\r\nThe site is down.\r\n"
    ).encode()

    parsed = parse_message(raw, dt.datetime.now(dt.UTC), "example.org")

    assert parsed.priority == expected
