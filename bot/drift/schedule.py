"""Cron ticks for drift checks: each due check is queued exactly once per tick, however many
`plankeeper serve` processes share one Redis.

Every serve process runs a `Scheduler` thread that wakes each minute; for each minute and
each due target it claims `pk:drift-tick:<repo>:<scope>:<minute>` with SET NX, and only the
claimant enqueues. We use this rather than RQ 3's cron scheduler because the targets change
at run time (repos appear with their first webhook, repo configs add per-project
schedules), which RQ's cron registers statically from code at start; and because a claim
per tick keeps working when one server is down (another one claims the tick) without a
scheduler lock to hand over. A server that was asleep catches up on the minutes it missed
(up to CATCH_UP_MINUTES); the claims keep those ticks single too.
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Optional

from croniter import croniter

from bot import queueing
from bot.context import Runtime
from bot.drift.status import ACTOR, project_schedules
from bot.models import Repo
from bot.settings import Settings
from bot.state import keys
from bot.state.repos import known_repos

log = logging.getLogger(__name__)
TICK_TTL = 2 * 24 * 3600
CATCH_UP_MINUTES = 10
ALL_PROJECTS = "*"


@dataclass(frozen=True)
class Target:
    """A scheduled check: a repository (every project, or the listed project keys) on a cron."""

    repo: Repo
    schedule: str
    projects: tuple[str, ...] = ()

    @property
    def scope(self) -> str:
        return ",".join(self.projects) or ALL_PROJECTS


def repo_from_id(repo_id: str, settings: Settings) -> Optional[Repo]:
    """A Repo for a server-side `repos:` id never seen in an event: forge from the host, the
    forge's HTTPS clone URL, default branch `main`. None when the host is no configured forge's."""
    host, _, full_name = repo_id.partition("/")
    forge = settings.forge_for(repo_id)
    if not full_name or not forge:
        return None
    clone_url, html_url = getattr(settings, forge).repo_urls(full_name)
    return Repo(forge=forge, host=host, full_name=full_name, clone_url=clone_url, html_url=html_url)


def candidate_repos(settings: Settings, r) -> dict[str, Repo]:
    """Repositories seen in events, plus `repos:` entries with an exact id."""
    repos = known_repos(r)
    for entry in settings.repos:
        if not entry.id.startswith("/") and entry.id not in repos:
            repo = repo_from_id(entry.id, settings)
            if repo:
                repos[entry.id] = repo
    return repos


def targets(settings: Settings, r) -> list[Target]:
    """Every scheduled check: server-side `drift.schedule` per repo, and per-project
    schedules last read from each repo's config."""
    found = []
    for repo_id, repo in sorted(candidate_repos(settings, r).items()):
        schedule = settings.repo_settings(repo_id).drift.schedule
        if schedule:
            found.append(Target(repo, schedule))
        for project_key, entry in sorted(project_schedules(r, repo_id).items()):
            if entry.get("schedule") and croniter.is_valid(entry["schedule"]):
                found.append(Target(repo, entry["schedule"], (project_key,)))
    return found


def claim(r, target: Target, minute: datetime) -> bool:
    """True for exactly one caller per (target, minute), across every process."""
    key = keys.DRIFT_TICK.format(repo=target.repo.id, scope=target.scope, minute=minute.strftime("%Y%m%dT%H%M"))
    return bool(r.set(key, f"{time.time():.3f}", nx=True, ex=TICK_TTL))


def enqueue_check(rt: Runtime, repo: Repo, projects: tuple[str, ...] = (), trigger: str = "schedule",
                  actor: str = ACTOR, job_id: Optional[str] = None) -> str:
    """Queue a drift check of repo (every project when projects is empty); returns the job id."""
    payload = {"repo": repo.__dict__, "projects": list(projects), "trigger": trigger, "actor": actor}
    title = f"drift check ({trigger})" + (f": {', '.join(projects)}" if projects else "")
    return queueing.enqueue_drift_check(rt.redis, payload, rt.settings.terraform.timeout,
                                        job_id=job_id or f"drift-{uuid.uuid4().hex[:16]}",
                                        repo=repo.id, pull="", title=title, event="drift")


def _job_id(target: Target, minute: datetime) -> str:
    digest = hashlib.sha256(f"{target.repo.id}:{target.scope}".encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9_-]", "_", target.repo.full_name)[:60]
    return f"drift-{slug}-{digest}-{minute:%Y%m%d%H%M}"


class Scheduler:
    """Ticks once a minute; `tick(now)` is the unit tests' handle on it."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.last: Optional[datetime] = None

    def tick(self, now: datetime) -> list[str]:
        """Queue every check due in the minutes since the last tick (just `now`'s minute on
        the first one); returns the ids of the jobs this scheduler queued."""
        minute = now.astimezone(timezone.utc).replace(second=0, microsecond=0, tzinfo=None)
        start = minute if self.last is None else max(self.last + timedelta(minutes=1),
                                                     minute - timedelta(minutes=CATCH_UP_MINUTES - 1))
        self.last = max(minute, self.last or minute)
        queued = []
        due_targets = targets(self.rt.settings, self.rt.redis)
        while start <= minute:
            for target in due_targets:
                if croniter.match(target.schedule, start) and claim(self.rt.redis, target, start):
                    queued.append(enqueue_check(self.rt, target.repo, target.projects, job_id=_job_id(target, start)))
                    log.info("drift check of %s (%s) queued for %s", target.repo.id, target.scope, start)
            start += timedelta(minutes=1)
        return queued

    def run(self, stop: threading.Event) -> None:
        """Tick at the start of every minute until stop is set; errors are logged, never fatal."""
        while not stop.is_set():
            try:
                self.tick(datetime.now(timezone.utc))
            except Exception:
                log.exception("drift scheduler tick failed; retrying next minute")
            stop.wait(60.5 - time.time() % 60)


def start_thread(settings: Settings) -> tuple[threading.Thread, threading.Event]:
    """Run a Scheduler in a daemon thread of this process; set the event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=Scheduler(Runtime.connect(settings)).run, args=(stop,),
                              name="drift-scheduler", daemon=True)
    thread.start()
    return thread, stop
