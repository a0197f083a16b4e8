"""Delivering one notice to every target of a rule. ``deliver`` never raises: each target's result
is ``"ok"`` or the error it gave, so a failing notifier is recorded and logged, and nothing else
(least of all a run) is affected by it.

requests and smtplib are imported when an alert is sent: most processes never send one, and
the scheduling process should not pay for them at start-up (idle memory)."""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from lexyjobs.alerts.rules import AlertRule
from lexyjobs.config import Settings
from lexyjobs.context import JobFailed
from lexyjobs.kinds import expand_env
from lexyjobs.masking import Redactor

TIMEOUT_SECONDS = 10.0
SIGNATURE_HEADER = "X-Lexyjobs-Signature"
PROBLEM_CHARS = 300   # a target's error as recorded, cut after masking (a cut secret could not be found)
ANSWER_CHARS = 4000   # of a refusing target's answer, before masking and cutting
HEADLINES = {"failed": "failed", "recovered": "recovered", "stale": "is stale", "missed": "missed a fire"}


@dataclass(frozen=True)
class Notice:
    event: str                      # failed | recovered | stale | missed
    job: str
    title: str
    text: str                       # one or two human sentences
    at: datetime
    run_id: int | None = None
    url: str | None = None          # the run (or job) in the panel, when LEXYJOBS_BASE_URL is set
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return f"[lexyjobs] {self.title} {HEADLINES[self.event]}"

    def payload(self) -> dict[str, Any]:
        """The webhook's JSON body."""
        return {"event": self.event, "job": self.job, "title": self.title, "run_id": self.run_id,
                "message": self.text, "at": self.at.isoformat(), "url": self.url, "details": self.details}

    def plain(self) -> str:
        """Slack and email text: the subject line, the sentences and the link."""
        return "\n".join(line for line in (self.subject, self.text, self.url) if line)


def deliver(notice: Notice, rule: AlertRule, settings: Settings) -> dict[str, str]:
    """Send ``notice`` to each of ``rule``'s targets; per target, "ok" or what went wrong."""
    return {target: answer.text if not answer.ok else "ok" for target, answer in answers(notice, rule, settings).items()}


@dataclass(frozen=True)
class Answer:
    """What a target answered: ``ok`` and its reply (``HTTP 200 OK: …``, ``SMTP 250 …``), or the
    error; masked, and cut to ``PROBLEM_CHARS``."""

    ok: bool
    text: str


def answers(notice: Notice, rule: AlertRule, settings: Settings) -> dict[str, Answer]:
    """Send ``notice`` to each of ``rule``'s targets; per target, what it answered."""
    senders: dict[str, Callable[[], str]] = {}
    if rule.webhook:
        senders["webhook"] = lambda: send_webhook(notice, rule.webhook or "", rule.webhook_secret)
    if rule.slack:
        senders["slack"] = lambda: send_slack(notice, rule.slack or "")
    if rule.email:
        senders["email"] = lambda: send_email(notice, rule.email, settings)
    results = {}
    redactor = _redactor(rule)
    for target, send in senders.items():
        try:
            results[target] = Answer(True, redactor.text(send())[:PROBLEM_CHARS])
        except (OSError, JobFailed, ValueError) as exc:  # requests' and smtplib's errors are OSErrors
            results[target] = Answer(False, redactor.text(_problem(exc))[:PROBLEM_CHARS])  # mask before cutting
    return results


def _redactor(rule: AlertRule) -> Redactor:
    """Masks the rule's target URLs (a Slack URL is a token), the variables they reference and
    lexyjobs' own secrets, in every encoded form (an answer may echo a percent-encoded URL)."""
    targets = {"webhook": rule.webhook, "webhook_secret": rule.webhook_secret, "slack": rule.slack}
    literal = [value for value in (rule.webhook, rule.webhook_secret, rule.slack) if value and "${" not in value]
    return Redactor([*literal, *Redactor.for_config(targets).secrets])


def signature(body: bytes, secret: str) -> str:
    """The webhook signature header's value: ``sha256=`` + hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send_webhook(notice: Notice, url: str, secret: str | None) -> str:
    body = json.dumps(notice.payload()).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "lexyjobs-alerts"}
    if secret:
        headers[SIGNATURE_HEADER] = signature(body, expand_env(secret))
    return _post(expand_env(url), body, headers)


def send_slack(notice: Notice, url: str) -> str:
    body = json.dumps({"text": notice.plain()}).encode()
    return _post(expand_env(url), body, {"Content-Type": "application/json", "User-Agent": "lexyjobs-alerts"})


def send_email(notice: Notice, to: tuple[str, ...], settings: Settings) -> str:
    """Mail ``notice``; the server's reply to the message (``SMTP 250 …``). Any refused
    recipient is an error (smtplib's ``sendmail`` would pass it over)."""
    import smtplib
    from email.message import EmailMessage
    from email.utils import parseaddr

    if not settings.smtp_host:
        raise ValueError("LEXYJOBS_SMTP_HOST is not set")
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = notice.subject, settings.smtp_from, ", ".join(to)
    message.set_content(notice.plain() + "\n")
    tls = settings.smtp_tls
    port = settings.smtp_port or {"ssl": 465, "starttls": 587}.get(tls, 25)
    smtp_class = smtplib.SMTP_SSL if tls == "ssl" else smtplib.SMTP
    with smtp_class(settings.smtp_host, port, timeout=TIMEOUT_SECONDS) as smtp:
        if tls == "starttls":
            smtp.starttls()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password or "")
        smtp.ehlo_or_helo_if_needed()
        sender = parseaddr(settings.smtp_from)[1]
        code, reply = smtp.mail(sender)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        for address in to:
            code, reply = smtp.rcpt(address)
            if code not in (250, 251):
                raise smtplib.SMTPRecipientsRefused({address: (code, reply)})
        code, reply = smtp.data(message.as_bytes())
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)
    return f"SMTP {code} {reply.decode(errors='replace')}".strip()


def _post(url: str, body: bytes, headers: dict[str, str]) -> str:
    """POST; the answer (``HTTP 200 OK: <the body's first bytes>``), or ValueError on a status
    outside 2xx."""
    import requests

    response = requests.post(url, data=body, headers=headers, timeout=TIMEOUT_SECONDS, allow_redirects=False)
    answer = f"HTTP {response.status_code} {response.reason}: {response.text[:ANSWER_CHARS]}".rstrip(": ")
    if not 200 <= response.status_code < 300:
        raise ValueError(answer)
    return answer


def _problem(exc: BaseException) -> str:
    """What went wrong, without the URL (it may hold a token, as Slack's do)."""
    import smtplib

    import requests

    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "; ".join(f"SMTP refused {address}: {code} {_text(reply)}" for address, (code, reply) in exc.recipients.items())
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"SMTP {exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, requests.ConnectionError):
        return "could not connect"
    if isinstance(exc, requests.Timeout):
        return f"no answer within {TIMEOUT_SECONDS:g}s"
    if isinstance(exc, (JobFailed, ValueError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply
