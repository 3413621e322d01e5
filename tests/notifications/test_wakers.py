"""Mailers are woken when a transaction that queued emails commits."""

from __future__ import annotations

from opencodehub.notifications import service


def test_a_waker_that_fails_does_not_keep_the_others_asleep() -> None:
    woken: list[str] = []

    def gone() -> None:
        raise RuntimeError("Event loop is closed")

    removers = [
        service.add_email_waker(gone),
        service.add_email_waker(lambda: woken.append("second")),
    ]
    try:
        service._wake_mailers()
    finally:
        for remove in removers:
            remove()
    assert woken == ["second"]
