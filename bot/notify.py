"""Notifications on apply, failure and drift: Slack incoming webhooks and plain HTTP webhooks.

`notify(...)` posts to every configured notification whose `events` include the event.
It never raises: a receiver that is down or answers an error is retried twice, then logged
as a warning (with its URL masked, since Slack webhook URLs are secrets) and skipped.
Everything sent goes through the redactor first.
"""
from __future__ import annotations

import datetime
import logging
import time
from typing import Mapping, Optional, Sequence

import requests

from bot.models import OutcomeStatus, pull_ref
from bot.redact import Redactor, settings_secrets

log = logging.getLogger(__name__)
EVENTS = ("apply", "failure", "drift")
TIMEOUT_SECONDS = 5
RETRIES = 2
RETRY_DELAY_SECONDS = 0.5
MAX_TEXT = 2900  # Slack refuses section texts over 3,000 characters
MAX_FIELDS = 10  # Slack's limit per section


def notify(settings, event: str, title: str, text: str, url: str = "",
           fields: Optional[Mapping[str, object]] = None) -> int:
    """Post the event to each matching notification; returns how many receivers accepted it.

    Refuses (ValueError) only an unknown event name, which is a programming error.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}: use one of {', '.join(EVENTS)}")
    targets = [n for n in settings.notifications if event in n.events]
    if not targets:
        return 0
    redact = _redactor(settings)
    clean = {str(k): redact(str(v)) for k, v in (fields or {}).items() if v is not None and v != ""}
    title, text = redact(title), redact(text)
    delivered = 0
    for target in targets:
        body = slack_message(title, text, url, clean, event) if target.kind == "slack" else \
            http_message(event, title, text, url, clean)
        if _post(target.url, body):
            delivered += 1
    return delivered


def http_message(event: str, title: str, text: str, url: str, fields: Mapping[str, str]) -> dict:
    """The plain JSON body of an `http` notification."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"event": event, "title": title, "text": text, "url": url, "fields": dict(fields), "time": now}


def slack_message(title: str, text: str, url: str, fields: Mapping[str, str], event: str = "") -> dict:
    """A Slack incoming-webhook body: `text` for notifications, `blocks` for the message."""
    heading = f"*<{url}|{_slack_escape(title)}>*" if url else f"*{_slack_escape(title)}*"
    blocks: list[dict] = [{"type": "section", "text": {"type": "mrkdwn",
                                                       "text": _cut(f"{heading}\n{_slack_escape(text)}")}}]
    if fields:
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": _cut(f"*{_slack_escape(k)}*\n{_slack_escape(v)}", 1900)}
            for k, v in list(fields.items())[:MAX_FIELDS]]})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Plankeeper · {event}"}]})
    return {"text": _cut(f"{title}: {text}" if text else title), "blocks": blocks}


def apply_finished(settings, pull, outcomes: Sequence, job_url: str, actor: str = "") -> int:
    """Notify that an apply (by command, approval or merge-to-deploy) finished, per project."""
    applied = [o for o in outcomes if o.status is OutcomeStatus.APPLIED]
    ok = len(applied) == len(outcomes)
    state = "succeeded" if ok else "did not apply everything"
    title = f"Apply {state}: {pull.repo.id}{pull.ref}"
    lines = [f"{o.project.label}: {o.status}" + (f" ({_summary(o)})" if _summary(o) else "") for o in outcomes]
    fields = {"repository": pull.repo.id, "pull request": pull.url or pull.ref,
              "commit": (pull.merge_sha or pull.head_sha)[:12], "by": actor or pull.author}
    return notify(settings, "apply", title, "\n".join(lines), job_url, fields)


def job_failed(settings, job_id: str, repo_id: str, pull: object, reason: str, job_url: str,
               forge: str = "github") -> int:
    """Notify that a job failed (a user-facing error or an internal one); `pull` is its number,
    written as `forge` writes it."""
    ref = pull_ref(forge, pull) if pull else ""
    title = f"Job failed: {repo_id}{ref}" if repo_id else f"Job {job_id} failed"
    fields = {"repository": repo_id, "pull request": ref, "job": job_id}
    return notify(settings, "failure", title, reason, job_url, fields)


def _summary(outcome) -> str:
    result = getattr(outcome, "apply", None)
    if result is None:
        return outcome.message.splitlines()[0] if outcome.message else ""
    text = result.summary or result.error or ""
    return text.strip().splitlines()[0] if text.strip() else ""


def _post(url: str, body: dict) -> bool:
    for attempt in range(RETRIES + 1):
        if attempt:
            time.sleep(RETRY_DELAY_SECONDS * attempt)
        try:
            answer = requests.post(url, json=body, timeout=TIMEOUT_SECONDS)
        except requests.RequestException as exc:
            problem = type(exc).__name__  # its message repeats the URL, a secret
            continue
        if answer.status_code < 300:
            return True
        problem = f"HTTP {answer.status_code}"
        if answer.status_code < 500 and answer.status_code != 429:
            break  # the receiver refused this message: sending it again will not help
    log.warning("notification to %s not delivered after %d attempt(s): %s", _mask_url(url), attempt + 1, problem)
    return False


def _mask_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/***"


def _redactor(settings) -> Redactor:
    return Redactor(settings_secrets(settings) + [n.url for n in settings.notifications])


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
