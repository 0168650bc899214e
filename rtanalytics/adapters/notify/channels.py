"""Notifier adapters: SMTP email, Slack incoming webhooks and generic webhooks, and the
dispatcher that picks one by action type. Failures become DeliveryError (the service retries)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage

import attrs
import httpx

from rtanalytics.adapters.notify import messages
from rtanalytics.core.alerts import Action
from rtanalytics.core.errors import DeliveryError
from rtanalytics.ports.notifier import AlertMessage


@attrs.frozen
class SmtpSettings:
    host: str
    port: int = 25
    user: str | None = None
    password: str | None = None
    tls: str = "none"  # none | starttls | ssl
    sender: str = "rtanalytics@localhost"
    timeout_s: float = 10.0
    ca_file: str | None = None  # a private CA to trust for the server's certificate


class SmtpNotifier:
    """Email through an SMTP server (smtplib in a worker thread: it blocks)."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    async def deliver(self, action: Action, message: AlertMessage) -> None:
        email = EmailMessage()
        email["From"] = self.settings.sender
        email["To"] = ", ".join(action.targets)
        email["Subject"] = messages.subject(message)
        email.set_content(messages.text(message))
        try:
            await asyncio.to_thread(self._send, email)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"SMTP {self.settings.host}:{self.settings.port}: {exc}") from exc

    def _send(self, email: EmailMessage) -> None:
        s = self.settings
        context = ssl.create_default_context(cafile=s.ca_file)
        if s.tls == "ssl":
            server: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s, context=context)
        else:
            server = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
        with server:
            if s.tls == "starttls":
                server.starttls(context=context)
            if s.user:
                server.login(s.user, s.password or "")
            server.send_message(email)


class HttpNotifier:
    """Slack incoming webhooks and generic JSON webhooks over HTTP."""

    def __init__(self, client: httpx.AsyncClient | None = None, timeout_s: float = 10.0) -> None:
        self._client = client or httpx.AsyncClient(timeout=timeout_s)

    async def deliver(self, action: Action, message: AlertMessage) -> None:
        payload = messages.slack(message) if action.type == "slack" else messages.webhook(message)
        url = action.targets[0]
        try:
            response = await self._client.post(url, json=payload)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{action.type} {url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300:
            raise DeliveryError(f"{action.type} {url}: HTTP {response.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()


class DispatchNotifier:
    """The Notifier the service uses: each action goes to the adapter for its type."""

    def __init__(self, smtp: SmtpNotifier | None, http: HttpNotifier) -> None:
        self.smtp = smtp
        self.http = http

    async def deliver(self, action: Action, message: AlertMessage) -> None:
        if action.type == "email":
            if self.smtp is None:
                raise DeliveryError("email: no SMTP server configured (RTA_SMTP_HOST)")
            await self.smtp.deliver(action, message)
        else:
            await self.http.deliver(action, message)

    async def aclose(self) -> None:
        await self.http.aclose()
