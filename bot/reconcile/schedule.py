"""When to sweep for missed webhooks: a thread in every `serve` process (see bot.reconcile).
Imports no forge client: the sweeps themselves run in workers (bot.reconcile.sweep)."""
from __future__ import annotations

import hashlib
import logging
import re
import threading
import time

from bot import queueing
from bot.context import Runtime
from bot.drift.schedule import candidate_repos
from bot.models import Repo
from bot.settings import Settings
from bot.state import keys

log = logging.getLogger(__name__)
START_GRACE = 2.0  # a sweep queued this long before a process came up still covers it
START_RETRY_SECONDS = 5.0  # the start sweep is retried this often until it is queued (Redis restarting)
SWEEP_STEP_SECONDS = 100  # a sweep job's timeout is this times queueing.JOB_TIMEOUT_STEPS

_CLAIM_SWEEP = """
local last = redis.call('GET', KEYS[1])
if not last or tonumber(last) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


def claim_sweep(r, not_before: float, now: float) -> bool:
    """True for exactly one caller while no sweep was queued at or after `not_before`; records
    `now` as the last sweep's time."""
    return bool(r.eval(_CLAIM_SWEEP, 1, keys.RECONCILE_LAST_SWEEP, f"{not_before:.3f}", f"{now:.3f}"))


def sweep_targets(settings: Settings, r) -> list[Repo]:
    """Repositories to sweep: seen in a webhook, or in `repos:` with a literal id; allowlisted,
    on a forge this server has credentials for."""
    configured = {name for name, section in settings.forges().items() if section.configured}
    return [repo for repo_id, repo in sorted(candidate_repos(settings, r).items())
            if repo.forge in configured and settings.allows_repo(repo_id)]


def enqueue_sweeps(rt: Runtime, now: float) -> list[str]:
    """Queue one sweep job per repository; returns their job ids."""
    queued = []
    for repo in sweep_targets(rt.settings, rt.redis):
        digest = hashlib.sha256(repo.id.encode()).hexdigest()[:12]
        slug = re.sub(r"[^A-Za-z0-9_-]", "_", repo.full_name)[:60]
        queued.append(queueing.enqueue_reconcile(
            rt.redis, {"repo": dict(repo.__dict__)}, SWEEP_STEP_SECONDS, job_id=f"reconcile-{slug}-{digest}-{now:.0f}",
            repo=repo.id, pull="", title="reconcile: missed webhooks", event="reconcile"))
    return queued


class Reconciler:
    """Queues the sweeps of this server: one at start, then one per `reconcile.interval`
    (aligned on the clock, so every web process asks at the same moments and one wins)."""

    def __init__(self, rt: Runtime):
        self.rt = rt

    def tick(self, not_before: float, now: float | None = None) -> list[str]:
        """Queue a sweep of every repository unless one was queued at or after not_before."""
        now = time.time() if now is None else now
        if not claim_sweep(self.rt.redis, not_before, now):
            return []
        queued = enqueue_sweeps(self.rt, now)
        log.info("reconcile: queued %d repository sweep(s) for missed webhooks", len(queued))
        return queued

    def run(self, stop: threading.Event) -> None:
        """Sweep at start (retrying until Redis takes it), then every interval until stop is set."""
        started = time.time()
        while not stop.is_set():
            try:
                self.tick(started - START_GRACE)
                break
            except Exception:
                log.exception("reconcile: could not queue the start sweep; retrying in %.0f s", START_RETRY_SECONDS)
                stop.wait(START_RETRY_SECONDS)
        interval = self.rt.settings.reconcile.interval
        while interval > 0 and not stop.wait(interval - time.time() % interval + 0.05):
            try:
                self.tick(time.time() // interval * interval)
            except Exception:
                log.exception("reconcile: could not queue the sweep; retrying next interval")


def sweep_soon(settings: Settings) -> list[str]:
    """Queue a sweep now unless one was queued in the last START_GRACE seconds: after the
    embedded Redis came back, for the webhooks answered 500 while it was away."""
    return Reconciler(Runtime.connect(settings)).tick(time.time() - START_GRACE)


def start_thread(settings: Settings) -> tuple[threading.Thread, threading.Event]:
    """Run a Reconciler in a daemon thread of this process; set the event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=Reconciler(Runtime.connect(settings)).run, args=(stop,),
                              name="reconciler", daemon=True)
    thread.start()
    return thread, stop

