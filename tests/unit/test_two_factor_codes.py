import time

import pyotp

from app.auth.two_factor import (
    hash_recovery_code,
    matching_step,
    new_recovery_codes,
    new_secret,
)
from app.mail import smtp_options


def test_current_code_matches_its_step_once() -> None:
    secret = new_secret()
    now = time.time()
    totp = pyotp.TOTP(secret)

    matched = matching_step(secret, totp.at(now), 0, now)

    assert matched == int(now // 30)
    assert matching_step(secret, totp.at(now), matched, now) is None


def test_codes_outside_the_window_are_rejected() -> None:
    secret = new_secret()
    now = time.time()
    totp = pyotp.TOTP(secret)

    assert matching_step(secret, totp.at(now - 120), 0, now) is None
    assert matching_step(secret, "12345", 0, now) is None
    assert matching_step(secret, "abcdef", 0, now) is None


def test_recovery_codes_are_distinct_and_hash_ignores_format() -> None:
    codes = new_recovery_codes()

    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert all(len(code) == 19 for code in codes)
    assert hash_recovery_code(codes[0]) == hash_recovery_code(
        " " + codes[0].upper().replace("-", "") + " "
    )


def test_smtp_options_read_credentials_and_tls() -> None:
    plain = smtp_options("smtp://127.0.0.1:2525")
    secure = smtp_options("smtps://user%40example.com:p%40ss@127.0.0.1")

    assert plain["port"] == 2525
    assert plain["use_tls"] is False
    assert plain["username"] is None
    assert secure["port"] == 465
    assert secure["use_tls"] is True
    assert secure["username"] == "user@example.com"
    assert secure["password"] == "p@ss"
