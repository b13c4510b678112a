"""Structured logs: every line a JSON object carrying the bound delivery, job, repo and pull."""
from __future__ import annotations

import io
import json
import logging
import threading

import pytest

from bot import logs
from bot.models import CommentEvent, Repo


@pytest.fixture
def captured():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.setup_logging(stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.handlers[:], _ = saved
    root.setLevel(saved[1])
    logs.clear()


def test_bound_context_rides_on_every_line_of_any_logger(captured):
    event = CommentEvent("delivery-1", Repo("github", "github.com", "acme/infra", "/tmp/x"), 7, "c1", "/plan", "alice")
    logs.bind_event("d-delivery-1", event)
    logging.getLogger("bot.planning").info("planning %s", "infra/app")
    logging.getLogger("runners.terraform").warning("slow")
    first, second = captured()
    assert first["message"] == "planning infra/app" and first["level"] == "info" and first["logger"] == "bot.planning"
    for line in (first, second):
        assert (line["delivery"], line["job_id"], line["repo"], line["pull"]) == (
            "delivery-1", "d-delivery-1", "github.com/acme/infra", 7)
    assert first["time"].endswith("Z")


def test_update_adds_fields_and_clear_forgets_them(captured):
    logs.bind(delivery="d1")
    logs.update(repo="github.com/acme/infra")
    logging.getLogger("x").info("one")
    logs.clear()
    logging.getLogger("x").info("two")
    one, two = captured()
    assert one["delivery"] == "d1" and one["repo"] == "github.com/acme/infra"
    assert "delivery" not in two and "repo" not in two


def test_explicit_extra_wins_over_the_bound_context(captured):
    logs.bind(job_id="bound")
    logging.getLogger("x").info("hi", extra={"job_id": "explicit"})
    assert captured()[0]["job_id"] == "explicit"


def test_threads_keep_their_own_context(captured):
    logs.bind(job_id="main")

    def other():
        logs.bind(job_id="thread")
        logging.getLogger("x").info("from thread")

    worker = threading.Thread(target=other)
    worker.start()
    worker.join()
    logging.getLogger("x").info("from main")
    by_message = {line["message"]: line["job_id"] for line in captured()}
    assert by_message == {"from thread": "thread", "from main": "main"}


def test_unknown_context_fields_are_refused():
    with pytest.raises(ValueError, match="token"):
        logs.bind(token="x")


def test_exceptions_are_kept_in_the_line(captured):
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("x").exception("failed")
    line = captured()[0]
    assert line["level"] == "error" and "RuntimeError: boom" in line["exception"]


def test_values_orjson_cannot_write_still_make_a_line(captured):
    logging.getLogger("bot.x").info("huge %s", 1, extra={"pull": 2**70})
    logging.getLogger("bot.x").info("object %s", 2, extra={"repo": object()})
    huge, obj = captured()
    assert huge["pull"] == 2**70 and huge["message"] == "huge 1"
    assert obj["repo"].startswith("<object object")
