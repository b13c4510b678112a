"""POST /events: verify, parse, de-duplicate, enqueue, answer. No forge calls, no git.

Answers (SPEC §5): 202 queued, 200 ignored (JSON says why), 400 malformed, 401 bad or
missing signature, 403 repository not allowlisted, 413 body over 25 MiB; 405 for another
method, 500 (JSON, logged with its traceback) when Redis fails, with nothing claimed.

It is a plain WSGI endpoint that `mount` puts in front of the Flask app, not a Flask view:
it is the one path that takes bursts (a busy organisation's pushes), and Flask's request
context, routing and response object were ~20% of an acknowledgement's CPU (issue 18).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.datastructures import EnvironHeaders
from werkzeug.wsgi import get_content_length, get_input_stream

from bot import events, logs, metrics, queueing
from bot.context import Runtime

log = logging.getLogger(__name__)
PATH = "/events"
MAX_BODY_BYTES = 25 * 1024 * 1024
Answer = tuple[int, bytes]
WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


class EventsEndpoint:
    """The WSGI app of POST /events for one Runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._thread = threading.local()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        logs.clear()  # a server thread's last request must not lend its log context
        if environ.get("REQUEST_METHOD") != "POST":
            status, body = 405, orjson.dumps({"outcome": "malformed", "error": "webhooks are POSTed to /events"})
            extra = [("Allow", "POST")]
        else:
            status, body = self._receive_or_fail(environ)
            extra = []
        start_response(f"{status} {HTTPStatus(status).phrase}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *extra])
        return [body]

    def _redis(self) -> redis.Redis:
        """This server thread's own client, on a connection of the runtime's pool that it keeps:
        taking one from the pool and giving it back was ~8% of an acknowledgement's CPU.

        A kept connection can be one Redis dropped (a restart): the command is sent once more on a
        new one. Safe for the accept script: a retry after a lost reply finds the delivery claimed
        and answers duplicate, so nothing is queued twice."""
        client = getattr(self._thread, "redis", None)
        if client is None:
            client = redis.Redis(connection_pool=self.runtime.redis.connection_pool, single_connection_client=True)
            client.connection.retry = Retry(NoBackoff(), 1)
            self._thread.redis = client
        return client

    def _receive_or_fail(self, environ: dict) -> Answer:
        try:
            return self.receive(environ)
        except redis.RedisError:
            # the detail (host, socket path) is for the log: the answer goes to whoever can see
            # the forge's delivery log
            log.exception("webhook not accepted: Redis failed")
            return 500, orjson.dumps({"outcome": "error", "error": "Redis failed (see the server's log); nothing was "
                                                                   "claimed, so the forge's redelivery will be accepted"})
        except Exception:  # noqa: BLE001 -- answered, and logged with its traceback
            log.exception("webhook not accepted: internal error")
            return 500, orjson.dumps({"outcome": "error", "error": "internal error; see the server's log"})

    def receive(self, environ: dict) -> Answer:
        rt = self.runtime
        settings = rt.settings
        headers = wsgi_headers(environ)
        source = events.source_for(headers)
        if source is None:
            marks = "; ".join(s.recognised_by for s in events.SOURCES)
            return self._answer(400, "malformed", "", error=f"not a webhook of a known forge: expected one of {marks}")
        event_name = source.event_name(headers)
        body = _body(environ)
        if body is None:
            return self._answer(413, "too_large", event_name, error="body over 25 MiB")
        problem = source.authenticate(getattr(settings, source.forge), headers, body)
        if problem:
            log.warning("webhook refused: %s (delivery %s)", problem, source.delivery_id(headers))
            return self._answer(401, "unauthorized", event_name, error=problem)
        try:
            payload = orjson.loads(body)  # half json.loads' CPU on a 25 KB pull request payload (bench/ack_profile.py)
        except orjson.JSONDecodeError as exc:
            return self._answer(400, "malformed", event_name, error=f"body is not valid JSON: {exc}")
        event_name = source.event_name(headers, payload)
        delivery = source.delivery_id(headers, payload)
        logs.bind(delivery=delivery)
        if not delivery:
            return self._answer(400, "malformed", event_name, error=f"missing delivery id ({source.delivery_named_by})")
        try:
            event = source.read(event_name, payload, delivery, settings)
        except events.MalformedEvent as exc:
            return self._answer(400, "malformed", event_name, error=str(exc))
        if isinstance(event, events.Ignored):
            return self._answer(200, "ignored", event_name, reason=event.reason)
        repo = event.repo if hasattr(event, "repo") else event.pull.repo  # type: ignore[union-attr]
        logs.update(repo=repo.id, pull=getattr(event, "pull_number", None) or event.pull.number)  # type: ignore[union-attr]
        if not settings.allows_repo(repo.id):
            return self._answer(403, "forbidden", event_name, error=f"repository {repo.id} is not in repo_allowlist")
        # One round trip: the delivery claimed (a redelivery is a duplicate), and what the event is
        # about claimed too, so the sweep for missed webhooks (bot.reconcile) never queues it again
        # (not a reason to refuse it: a reopened pull request has its old head); its job queued and
        # counted. A Redis error answers 500 with nothing claimed: the forge's redelivery is accepted.
        job_id = queueing.accept_event(self._redis(), event, settings.terraform.timeout, metrics.delivery_counters(event_name))
        if job_id is None:
            return self._answer(200, "duplicate", event_name, counted=True,
                                reason=f"delivery {delivery} was already received")
        log.info("queued job %s for %s delivery %s (%s)", job_id, event_name, delivery, repo.id)
        return self._answer(202, "queued", event_name, counted=True, job_id=job_id, job_url=rt.job_url(job_id))

    def _answer(self, status: int, outcome: str, event_name: str, counted: bool = False, **body: object) -> Answer:
        if not counted:
            try:
                metrics.count_webhook(self._redis(), event_name, outcome)
            except redis.RedisError as exc:  # a counter must not turn an answer into a 500
                log.warning("could not count the webhook: %s", exc)
        return status, orjson.dumps({"outcome": outcome, **body})


def wsgi_headers(environ: dict) -> dict[str, str]:
    """The request's headers as Werkzeug names them (`X-Github-Event`), read once."""
    return dict(EnvironHeaders(environ))


def _body(environ: dict) -> bytes | None:
    """The request body, or None when it is over MAX_BODY_BYTES (declared or sent)."""
    if (get_content_length(environ) or 0) > MAX_BODY_BYTES:
        return None
    body = get_input_stream(environ, max_content_length=None).read(MAX_BODY_BYTES + 1)
    return None if len(body) > MAX_BODY_BYTES else body


def mount(app, endpoint: WsgiApp) -> None:
    """Serve PATH with endpoint, everything else with the Flask app (Flask's own middleware hook)."""
    flask_wsgi = app.wsgi_app

    def dispatch(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == PATH:
            return endpoint(environ, start_response)
        return flask_wsgi(environ, start_response)

    app.wsgi_app = dispatch
