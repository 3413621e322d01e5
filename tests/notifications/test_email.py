"""Notification email through a real SMTP server (aiosmtpd, started by the test): sent after
the commit by the background job, to everyone concerned except the actor."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from email import message_from_bytes
from email.message import Message

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient

from opencodehub.accounts.models import User
from opencodehub.app import create_app
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from tests.conftest import auth_header, free_port

API = "/api/v3"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append(message_from_bytes(envelope.content))  # type: ignore[attr-defined]
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.mark.slow
def test_comment_emails_watchers_but_not_the_actor(
    settings: Settings,
    db: Database,
    smtp: tuple[Inbox, int],
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    inbox, port = smtp
    mail_settings = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_starttls": False,
            "smtp_from": "OpenCodeHub <hub@example.com>",
        }
    )
    alice, bob = make_user("alice"), make_user("bob")
    alice_h, bob_h = auth_header(make_token(alice)), auth_header(make_token(bob))
    with TestClient(create_app(mail_settings, db)) as client:
        client.post(f"{API}/user/repos", json={"name": "proj"}, headers=alice_h)
        client.put(f"{API}/repos/alice/proj/subscription", json={"subscribed": True}, headers=bob_h)
        made = client.post(
            f"{API}/repos/alice/proj/issues",
            json={"title": "Disk full <b>", "body": "It is **full**"},
            headers=alice_h,
        )
        assert made.status_code == 201
        deadline = time.monotonic() + 20
        while not inbox.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(inbox.messages) == 1
        message = inbox.messages[0]
        assert message["To"] == "bob@example.com"
        assert message["From"] == "OpenCodeHub <hub@example.com>"
        assert message["Subject"] == "[alice/proj] Disk full <b> (Issue #1)"
        assert message["X-OpenCodeHub-Reason"] == "subscribed"
        text = message.get_payload(decode=True).decode()
        assert "It is **full**" in text and "/alice/proj/issues/1" in text

        # bob comments: alice (the author) is emailed; bob, the actor, is not.
        client.post(
            f"{API}/repos/alice/proj/issues/1/comments", json={"body": "Cleaned up"}, headers=bob_h
        )
        deadline = time.monotonic() + 20
        while len(inbox.messages) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [m["To"] for m in inbox.messages] == ["bob@example.com", "alice@example.com"]
        assert "Cleaned up" in inbox.messages[1].get_payload(decode=True).decode()
