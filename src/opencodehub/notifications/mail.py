"""Notification email over SMTP (`OCH_SMTP_HOST`), from the `notification_emails` outbox.

Rows are claimed one at a time with a conditional UPDATE, so several workers never send the
same email twice; a failed send is retried with back-off and given up after a few attempts.
"""

from __future__ import annotations

import smtplib
import ssl
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from opencodehub.config import Settings
from opencodehub.core.logging import get_logger
from opencodehub.core.time import utcnow
from opencodehub.db.engine import Database
from opencodehub.notifications.models import NotificationEmail

log = get_logger("opencodehub.notifications.mail")

BATCH = 20
MAX_ATTEMPTS = 5
CLAIM_SECONDS = 300
SMTP_TIMEOUT_SECONDS = 30


def build_message(settings: Settings, row: NotificationEmail) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = row.to_address
    message["Subject"] = row.subject
    message["Message-ID"] = make_msgid(domain=settings.ssh_clone_host)
    message["X-OpenCodeHub-Reason"] = row.reason
    message["Auto-Submitted"] = "auto-generated"
    link = f"{settings.effective_base_url}{row.path}"
    message.set_content(
        f"{row.body}\n\n-- \n{row.actor_name} on OpenCodeHub: {link}\n"
        f"You are receiving this because of: {row.reason.replace('_', ' ')}.\n"
    )
    return message


def send(settings: Settings, message: EmailMessage) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_SECONDS) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        username = settings.smtp_username
        if username:
            smtp.login(username, settings.smtp_password.get_secret_value())
        smtp.send_message(message)


def _claim(session: Session, row_id: int) -> bool:
    now = utcnow()
    result = session.execute(
        update(NotificationEmail)
        .where(
            NotificationEmail.id == row_id,
            NotificationEmail.sent_at.is_(None),
            or_(
                NotificationEmail.next_attempt_at.is_(None),
                NotificationEmail.next_attempt_at <= now,
            ),
        )
        .values(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS))
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def deliver_pending(settings: Settings, database: Database) -> int:
    """Send what is due; returns how many rows were handled (sent or failed)."""
    if not settings.smtp_host:
        # No mail server: nothing will ever send these, so they are not kept.
        with database.session() as session:
            session.execute(delete(NotificationEmail))
        return 0
    now = utcnow()
    with database.session() as session:
        ids = list(
            session.scalars(
                select(NotificationEmail.id)
                .where(
                    NotificationEmail.sent_at.is_(None),
                    NotificationEmail.attempts < MAX_ATTEMPTS,
                    or_(
                        NotificationEmail.next_attempt_at.is_(None),
                        NotificationEmail.next_attempt_at <= now,
                    ),
                )
                .order_by(NotificationEmail.id)
                .limit(BATCH)
            )
        )
    handled = 0
    for row_id in ids:
        with database.session() as session:
            if not _claim(session, row_id):
                continue
            row = session.get(NotificationEmail, row_id)
            if row is None:
                continue
            try:
                send(settings, build_message(settings, row))
            except (OSError, smtplib.SMTPException) as exc:
                row.attempts += 1
                row.last_error = str(exc)[:500]
                row.next_attempt_at = utcnow() + timedelta(seconds=30 * 2**row.attempts)
                log.warning("notification email failed", email_id=row_id, error=str(exc))
            else:
                session.delete(row)
            handled += 1
    return handled
