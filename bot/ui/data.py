"""What the pages and the API show, read from Redis and shaped for display: no Flask here."""
from __future__ import annotations

import datetime
import json
import time
from typing import Iterable, Optional

import redis

from bot.models import JobState, pull_ref
from bot.state import deployments, joblog, locks, repos
from bot.state import keys

FINAL_STATES = tuple(state.value for state in JobState if state.is_final)
AUDIT_FILTERS = ("repo", "user", "project", "action")


def fmt_time(stamp: object) -> str:
    """A Unix time as `2024-05-01 12:03:04 UTC`; '' when missing or not a number."""
    try:
        value = float(stamp)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return datetime.datetime.fromtimestamp(value, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return ""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours // 24}d {hours % 24}h"


def _float(value: object) -> Optional[float]:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def job_duration(job: dict, now: Optional[float] = None) -> Optional[float]:
    """Seconds the job ran (so far, while it runs); None before it started."""
    if _float(job.get("duration")) is not None:
        return _float(job.get("duration"))
    started = _float(job.get("started_at"))
    if started is None:
        return None
    ended = _float(job.get("ended_at")) or (now or time.time())
    return ended - started


def pull_urls(jobs: Iterable[dict], held: Iterable[locks.Lock]) -> dict[tuple[str, str], str]:
    """(repo, pull number) -> pull request URL, from whatever records carry one."""
    urls = {(lock.repo_id, str(lock.pull_number)): lock.pull_url for lock in held if lock.pull_url}
    for job in jobs:
        if job.get("pull_url"):
            urls.setdefault((job.get("repo", ""), job.get("pull", "")), job["pull_url"])
    return urls


def job_rows(jobs: list[dict], urls: dict[tuple[str, str], str]) -> list[dict]:
    """Jobs with display fields: duration, times, pull request link, final or not."""
    now = time.time()
    rows = []
    for job in jobs:
        row = dict(job)
        row["duration_text"] = fmt_duration(job_duration(job, now))
        row["created_text"] = fmt_time(job.get("created_at") or job.get("started_at"))
        row["pull_link"] = job.get("pull_url") or urls.get((job.get("repo", ""), job.get("pull", "")), "")
        row["final"] = job.get("state") in FINAL_STATES
        rows.append(row)
    return rows


def lock_rows(held: list[locks.Lock]) -> list[dict]:
    return [{"repo_id": lock.repo_id, "project_key": lock.project_key, "dir": lock.dir,
             "workspace": lock.workspace, "pull_number": lock.pull_number, "pull_url": lock.pull_url,
             "user": lock.user, "since": fmt_time(lock.since)} for lock in held]


def drift_statuses(r: redis.Redis) -> list[dict]:
    """Per-project drift status stored by the drift checks (JSON under pk:drift:<repo>:<project>)."""
    statuses = []
    for key in r.scan_iter(match=keys.DRIFT_STATUS_PATTERN, count=500):
        try:
            raw = r.get(key)
            status = json.loads(raw) if raw else None
        except (redis.ResponseError, ValueError):
            continue  # another kind of drift bookkeeping (a set, a lock...), not a status
        if isinstance(status, dict) and "drifted" in status:
            status["checked_text"] = fmt_time(status.get("checked_at"))
            statuses.append(status)
    return sorted(statuses, key=lambda s: (not s.get("drifted"), str(s.get("repo")), str(s.get("project"))))


def parse_day(text: Optional[str], end_of_day: bool = False) -> Optional[float]:
    """`YYYY-MM-DD` (UTC) as a Unix time, its last second with end_of_day; None when blank.

    Raises ValueError naming the expected format for anything else.
    """
    if not text:
        return None
    try:
        day = datetime.datetime.strptime(text.strip(), "%Y-%m-%d").replace(tzinfo=datetime.timezone.utc)
    except ValueError as exc:
        raise ValueError(f"bad date {text!r}: use YYYY-MM-DD") from exc
    return day.timestamp() + (86400 - 0.001 if end_of_day else 0)


def _matches(entry: dict, filters: dict[str, str]) -> bool:
    for key, wanted in filters.items():
        value = entry.get(key, "")
        if key == "project":
            if wanted not in value.split(",") and wanted not in [v.split("::")[0] for v in value.split(",")]:
                return False
        elif value.lower() != wanted.lower():
            return False
    return True


def audit_page(r: redis.Redis, filters: dict, since: Optional[float] = None, until: Optional[float] = None,
               before: Optional[str] = None, limit: int = 50) -> tuple[list[dict], Optional[str]]:
    """Newest-first audit entries matching the filters and date range, and the `before` of the next page.

    `project` matches one of an entry's projects (`dir::workspace`) or its dir; the others match
    exactly (case-insensitive). Paging uses stream ids, whose first part is the time in ms.
    """
    wanted = {k: str(v) for k, v in filters.items() if k in AUDIT_FILTERS and v}
    end = f"({before}" if before else (str(int(until * 1000)) if until is not None else "+")
    start = str(int(since * 1000)) if since is not None else "-"
    found: list[dict] = []
    while True:
        batch = r.xrevrange(keys.AUDIT, max=end, min=start, count=500)
        for entry_id, raw in batch:
            entry = {k.decode(): v.decode() for k, v in raw.items()}
            entry["id"] = entry_id.decode()
            if _matches(entry, wanted):
                if len(found) == limit:
                    return found, found[-1]["id"]
                found.append(entry)
        if len(batch) < 500:
            return found, None
        end = f"({batch[-1][0].decode()}"


def audit_rows(entries: list[dict]) -> list[dict]:
    return [dict(e, time_text=fmt_time(e.get("time"))) for e in entries]



def child_jobs(r: redis.Redis, job: dict, limit: int = 1000) -> list[dict]:
    """The jobs a job started (a run's per-project and finalizing jobs: ids `<job id>-...`), oldest first."""
    since = _float(job.get("created_at")) or _float(job.get("started_at")) or 0.0
    ids = [i.decode() for i in r.zrangebyscore(keys.JOBS, since, "+inf", start=0, num=limit)]
    prefix = f"{job['id']}-"
    children = [joblog.get_job(r, i) for i in ids if i.startswith(prefix)]
    return [c for c in children if c]


def parent_job(r: redis.Redis, job_id: str) -> Optional[dict]:
    """The job that started this one, when its id extends an existing job's id."""
    parts = job_id.split("-")
    for cut in range(len(parts) - 1, max(len(parts) - 4, 1), -1):
        parent = joblog.get_job(r, "-".join(parts[:cut]))
        if parent:
            return parent
    return None


# -- deployments ------------------------------------------------------------------------------

def deployment_repo_ids(r: redis.Redis, repo: str = "") -> list[str]:
    """Repositories with deployments; with `repo` (host/owner/name or owner/name), those it names."""
    known = sorted(m.decode() for m in r.smembers(keys.DEPLOYMENT_REPOS))
    wanted = repo.strip().strip("/").lower()
    if not wanted:
        return known
    return [k for k in known if wanted in (k.lower(), k.split("/", 1)[-1].lower())]


def find_deployments(r: redis.Redis, repo: str = "", dir: str = "", workspace: str = "",
                     limit: int = 500) -> list[deployments.Deployment]:
    """Deployments newest first, filtered by repository, project dir and workspace (blank: any)."""
    directory = dir.strip().strip("/") or ("." if dir.strip() else "")
    found: list[deployments.Deployment] = []
    for repo_id in deployment_repo_ids(r, repo):
        found += deployments.history(r, repo_id, limit=limit, dir=directory or None,
                                     workspace=workspace.strip() or None)
    return sorted(found, key=lambda d: d.time, reverse=True)[:limit]


def deployment_row(d: deployments.Deployment, forge: str = "") -> dict:
    """A deployment for display; `ref` writes its pull request as the forge does (`!12` on GitLab)."""
    return {**d.to_json(), "time_text": fmt_time(d.time), "short_commit": d.commit[:7],
            "short_plan": d.plan_sha256[:12], "succeeded": d.succeeded,
            "ref": pull_ref(forge, d.pull)}


def deployment_repos(r: redis.Redis, repo: str = "", per_project: int = 25, limit: int = 1000) -> list[dict]:
    """Per repository, per project: the live commit (and the deployment that made it live when
    recorded) and the project's deployments, newest first (at most per_project of them)."""
    shown = []
    forges = {repo_id: known.forge for repo_id, known in repos.known_repos(r).items()}
    for repo_id in deployment_repo_ids(r, repo):
        forge = forges.get(repo_id, "")
        by_project: dict[str, list[deployments.Deployment]] = {}
        for d in deployments.history(r, repo_id, limit=limit):
            by_project.setdefault(d.project, []).append(d)
        projects = []
        for key in sorted(by_project):
            entries = by_project[key]
            live = deployments.last_applied(r, repo_id, key)
            made_live = next((d for d in entries if d.succeeded and d.commit == live), None)
            projects.append({"key": key, "dir": entries[0].dir, "workspace": entries[0].workspace,
                             "live_commit": live or "", "live": deployment_row(made_live, forge) if made_live else None,
                             "history": [deployment_row(d, forge) for d in entries[:per_project]],
                             "more": max(0, len(entries) - per_project)})
        shown.append({"repo": repo_id, "projects": projects})
    return shown

