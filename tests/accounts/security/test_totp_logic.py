"""TOTP arithmetic, without a database."""

from __future__ import annotations

from opencodehub.accounts.security import totp


def test_window_is_one_step_either_side() -> None:
    secret = totp.new_secret()
    now = 1_700_000_000.0
    step = totp.current_step(now)
    assert totp.matching_step(secret, totp.code_at_step(secret, step), now) == step
    assert totp.matching_step(secret, totp.code_at_step(secret, step - 1), now) == step - 1
    assert totp.matching_step(secret, totp.code_at_step(secret, step + 1), now) == step + 1
    # Two steps away is refused, unless the code happens to collide with a valid one.
    for far in (step - 2, step + 2, step - 20):
        far_code = totp.code_at_step(secret, far)
        valid = {totp.code_at_step(secret, near) for near in (step - 1, step, step + 1)}
        if far_code not in valid:
            assert totp.matching_step(secret, far_code, now) is None


def test_codes_are_normalized_and_validated() -> None:
    secret = totp.new_secret()
    now = 1_700_000_000.0
    good = totp.code_at_step(secret, totp.current_step(now))
    assert totp.matching_step(secret, f"{good[:3]} {good[3:]}", now) is not None
    for bad in (
        "",
        "12345",
        "1234567",
        "abcdef",
        "\uff11\uff12\uff13\uff14\uff15\uff16",
        "12345\x00",
    ):
        assert totp.matching_step(secret, bad, now) is None


def test_provisioning_uri_and_qr() -> None:
    secret = totp.new_secret()
    uri = totp.provisioning_uri(secret, "alice", "OpenCodeHub (example.com)")
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
    svg = totp.qr_svg(uri)
    assert svg.startswith("<svg") and "<path" in svg and "<script" not in svg
    assert totp.format_secret("ABCDEFGH") == "ABCD EFGH"
