"""Structured JSON-lines logging; job context (delivery, job, repo, pull) rides on records.

`bind(...)` sets the context of the current request or job (a contextvar, so threads of the
web server and work horses of the workers each have their own); `ContextFilter`, installed
on the handler by `setup_logging`, copies it onto every record, whichever logger made it.
"""
from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Optional

import orjson

CONTEXT_FIELDS = ("delivery", "job_id", "repo", "pull")

_context: contextvars.ContextVar[dict] = contextvars.ContextVar("plankeeper_log_context", default={})


def bind(**fields: object) -> None:
    """Replace the log context of the current request or job with `fields` (None values dropped).

    Unknown field names are refused with ValueError, so a typo cannot silently lose context.
    """
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"unknown log context fields: {sorted(unknown)}")
    _context.set({k: v for k, v in fields.items() if v is not None and v != ""})


def update(**fields: object) -> None:
    """Add fields to the current context (e.g. the repo once the payload is parsed)."""
    merged = dict(_context.get())
    merged.update(fields)
    bind(**merged)


def clear() -> None:
    """Forget the context: called before each web request, whose thread served others before."""
    _context.set({})


def current() -> dict:
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Copies the bound context onto each record, without overriding explicit `extra=` values."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(entry, default=str).decode()  # a sixth of json.dumps' time, on every webhook
        except TypeError:  # an int over 64 bits
            return json.dumps(entry, default=str)


def setup_logging(level: int = logging.INFO, stream: Optional[object] = None) -> logging.Handler:
    """Send every log record to stderr (or `stream`) as one JSON line with the bound context."""
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # JsonFormatter writes none of what LogRecord would look up for every line (the caller's file
    # and line, the thread, process and multiprocessing names): the logging HOWTO's "Optimization"
    # switches: a quarter of a log line's CPU, and a line is written for every webhook.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    return handler


def bind_event(job_id: str, event: object) -> None:
    """Bind the context of a job handling a queued event (duck-typed: any bot.models event)."""
    pull = getattr(event, "pull", None)
    repo = getattr(event, "repo", None) or getattr(pull, "repo", None)
    number = getattr(event, "pull_number", None) or getattr(pull, "number", None)
    bind(delivery=getattr(event, "delivery_id", None), job_id=job_id, repo=getattr(repo, "id", None), pull=number)
