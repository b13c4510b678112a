"""POST /events: verify, parse, de-duplicate, enqueue, answer. No forge calls, no git.

Answers (SPEC §5): 202 queued, 200 ignored (JSON says why), 400 malformed, 401 bad or
missing signature, 403 repository not allowlisted, 413 body over 25 MiB.
"""
from __future__ import annotations

import logging

import orjson
import redis
from flask import Blueprint, current_app, request

from bot import events, logs, metrics, queueing
from bot.context import Runtime

log = logging.getLogger(__name__)
blueprint = Blueprint("webhooks", __name__)
MAX_BODY_BYTES = 25 * 1024 * 1024


def _answer(status: int, outcome: str, event_name: str, counted: bool = False, **body: object):
    if not counted:
        try:
            metrics.count_webhook(current_app.config["RUNTIME"].redis, event_name, outcome)
        except redis.RedisError as exc:  # a counter must not turn an answer into a 500
            log.warning("could not count the webhook: %s", exc)
    return current_app.response_class(orjson.dumps({"outcome": outcome, **body}), status, mimetype="application/json")


@blueprint.post("/events")
def receive():
    rt: Runtime = current_app.config["RUNTIME"]
    settings = rt.settings
    headers = dict(request.headers)  # read once: each lookup below would walk the WSGI environ again
    source = events.source_for(headers)
    if source is None:
        marks = "; ".join(s.recognised_by for s in events.SOURCES)
        return _answer(400, "malformed", "", error=f"not a webhook of a known forge: expected one of {marks}")
    event_name = source.event_name(headers)
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return _answer(413, "too_large", event_name, error="body over 25 MiB")
    body = request.get_data(cache=False)
    if len(body) > MAX_BODY_BYTES:
        return _answer(413, "too_large", event_name, error="body over 25 MiB")
    problem = source.authenticate(getattr(settings, source.forge), headers, body)
    if problem:
        log.warning("webhook refused: %s (delivery %s)", problem, source.delivery_id(headers))
        return _answer(401, "unauthorized", event_name, error=problem)
    try:
        payload = orjson.loads(body)  # half json.loads' CPU on a 25 KB pull request payload (bench/ack_profile.py)
    except orjson.JSONDecodeError as exc:
        return _answer(400, "malformed", event_name, error=f"body is not valid JSON: {exc}")
    event_name = source.event_name(headers, payload)
    delivery = source.delivery_id(headers, payload)
    logs.bind(delivery=delivery)
    if not delivery:
        return _answer(400, "malformed", event_name, error=f"missing delivery id ({source.delivery_named_by})")
    try:
        event = source.read(event_name, payload, delivery, settings)
    except events.MalformedEvent as exc:
        return _answer(400, "malformed", event_name, error=str(exc))
    if isinstance(event, events.Ignored):
        return _answer(200, "ignored", event_name, reason=event.reason)
    repo = event.repo if hasattr(event, "repo") else event.pull.repo  # type: ignore[union-attr]
    logs.update(repo=repo.id, pull=getattr(event, "pull_number", None) or event.pull.number)  # type: ignore[union-attr]
    if not settings.allows_repo(repo.id):
        return _answer(403, "forbidden", event_name, error=f"repository {repo.id} is not in repo_allowlist")
    # One round trip: the delivery claimed (a redelivery is a duplicate), and what the event is
    # about claimed too, so the sweep for missed webhooks (bot.reconcile) never queues it again
    # (not a reason to refuse it: a reopened pull request has its old head); its job queued and
    # counted. A Redis error answers 500 with nothing claimed: the forge's redelivery is accepted.
    job_id = queueing.accept_event(rt.redis, event, settings.terraform.timeout, metrics.delivery_counters(event_name))
    if job_id is None:
        return _answer(200, "duplicate", event_name, counted=True, reason=f"delivery {delivery} was already received")
    log.info("queued job %s for %s delivery %s (%s)", job_id, event_name, delivery, repo.id)
    return _answer(202, "queued", event_name, counted=True, job_id=job_id, job_url=rt.job_url(job_id))

