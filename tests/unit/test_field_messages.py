"""Field error messages end with one full stop, whatever the reason quotes."""

from __future__ import annotations

import pytest

from app.email.templates import render_template
from app.errors import FieldError


def test_message_adds_full_stop() -> None:
    error = FieldError("name", "x", "must not be empty")

    assert error.message == "Name 'x' must not be empty."


def test_message_keeps_reason_own_full_stop() -> None:
    error = FieldError("file", "a.csv", "is not valid UTF-8. Save it again.")

    assert error.message == "File 'a.csv' is not valid UTF-8. Save it again."


def test_unsafe_template_message_ends_once() -> None:
    with pytest.raises(FieldError) as raised:
        render_template("{{ ''.__class__.__mro__ }}", {})

    message = raised.value.message
    assert message.endswith("unsafe.")
    assert not message.endswith("..")
