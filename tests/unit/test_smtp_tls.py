"""Email over STARTTLS with credentials, to a real aiosmtpd server with its own certificate."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from rtanalytics.adapters.notify.channels import SmtpNotifier, SmtpSettings
from rtanalytics.core.alerts import Action
from rtanalytics.core.errors import DeliveryError
from rtanalytics.ports.notifier import AlertMessage
from tests.unit.receivers import _Mailbox, free_port

MESSAGE = AlertMessage(
    "r1", "Hot", "default", "temp", {"host": "a"}, "firing", 80.0, ">", 50.0, "critical", 1_700_000_000.0
)


class Logins:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login = (auth_data.login.decode(), auth_data.password.decode())
        self.seen.append(login)
        return AuthResult(success=login == ("alerts", "s3cret"))


@pytest.fixture
def tls_server(tmp_path: Path):
    authority = trustme.CA()  # a private CA; the server's certificate is issued for 127.0.0.1
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    cert = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(cert))
    mailbox, logins, port = _Mailbox(), Logins(), free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=logins,
        auth_require_tls=True,
    )
    controller.start()
    yield port, cert, mailbox, logins
    controller.stop()


async def test_starttls_with_credentials_delivers(tls_server) -> None:
    port, cert, mailbox, logins = tls_server
    notifier = SmtpNotifier(
        SmtpSettings("127.0.0.1", port, "alerts", "s3cret", "starttls", "rta@example.com", ca_file=str(cert))
    )
    await notifier.deliver(Action("email", ("oncall@example.com",)), MESSAGE)
    assert logins.seen == [("alerts", "s3cret")]
    assert len(mailbox.messages) == 1 and mailbox.messages[0]["Subject"] == "[FIRING] Hot [host=a]"


async def test_wrong_password_and_untrusted_certificate_fail_clearly(tls_server) -> None:
    port, cert, _, _ = tls_server
    wrong = SmtpNotifier(SmtpSettings("127.0.0.1", port, "alerts", "nope", "starttls", ca_file=str(cert)))
    with pytest.raises(DeliveryError, match=r"SMTP 127\.0\.0\.1"):
        await wrong.deliver(Action("email", ("oncall@example.com",)), MESSAGE)
    untrusted = SmtpNotifier(SmtpSettings("127.0.0.1", port, "alerts", "s3cret", "starttls"))
    with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
        await untrusted.deliver(Action("email", ("oncall@example.com",)), MESSAGE)
