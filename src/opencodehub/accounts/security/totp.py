"""Time-based one-time passwords (RFC 6238) as authenticator apps implement them.

Pure functions: no database. A code is checked against the current 30-second step and one step
either side (clocks drift), and the matching step is returned so the caller can refuse any code
of that step or an earlier one afterwards (replay protection).
"""

from __future__ import annotations

import hmac
import io
import re
import time

import pyotp

INTERVAL = 30
DIGITS = 6
VALID_WINDOW = 1  # steps either side of now
_CODE_RE = re.compile(r"\A[0-9]{6}\Z")


def new_secret() -> str:
    return pyotp.random_base32()  # 160 bits, RFC 4226's recommended length


def normalize_code(code: str) -> str:
    """Apps show codes as `123 456`; people paste them with spaces or a dash."""
    return re.sub(r"[\s-]", "", code or "")


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // INTERVAL)


def code_at_step(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL).generate_otp(step)


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step (within ±VALID_WINDOW of now) whose code `code` is, or None."""
    code = normalize_code(code)
    if not _CODE_RE.match(code):
        return None
    step = current_step(now)
    found = None
    # Every candidate is compared, in constant time, so timing does not tell which step matched.
    for candidate in range(step - VALID_WINDOW, step + VALID_WINDOW + 1):
        if hmac.compare_digest(code_at_step(secret, candidate), code):
            found = candidate
    return found


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL).provisioning_uri(
        name=account, issuer_name=issuer
    )


def qr_svg(data: str) -> str:
    """An inline SVG QR code, made on the server: the secret never goes to a third party."""
    import segno  # only the enrolment page draws codes; not loaded at start-up

    buffer = io.BytesIO()
    segno.make(data, error="m").save(  # light modules drawn: readable on a dark theme too
        buffer,
        kind="svg",
        scale=4,
        border=2,
        dark="#000",
        light="#fff",
        xmldecl=False,
        svgns=True,
        svgclass="qr-code",
    )
    return buffer.getvalue().decode()


def format_secret(secret: str) -> str:
    """The secret in groups of four, as people type it into an app by hand."""
    return " ".join(secret[index : index + 4] for index in range(0, len(secret), 4))
