"""What goes on the wire for an outgoing message."""

from __future__ import annotations

from email.message import EmailMessage

from app.mail import envelope


def test_envelope_keeps_long_urls_and_hides_bcc() -> None:
    link = "https://crm.example.test/unsubscribe/" + "x" * 120
    message = EmailMessage()
    message["From"] = "Switchboard <news@example.test>"
    message["To"] = "Ada <ada@example.test>"
    message["Cc"] = "bob@example.test"
    message["Bcc"] = "audit@example.test"
    message["Subject"] = "News"
    message["List-Unsubscribe"] = f"<{link}>"
    message.set_content("Hello")

    sender, recipients, data = envelope(message)

    assert sender == "news@example.test"
    assert recipients == ["ada@example.test", "bob@example.test", "audit@example.test"]
    assert f"List-Unsubscribe: <{link}>\r\n".encode() in data
    assert b"audit@example.test" not in data
    assert message["Bcc"] == "audit@example.test"
