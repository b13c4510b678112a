"""Repositories seen in events, so that server-wide drift schedules know what to check."""
from __future__ import annotations

import json

import redis

from bot.models import Repo
from bot.state import keys


def remember_repo(r: redis.Redis, repo: Repo) -> None:
    r.hset(keys.REPOS, repo.id, json.dumps(repo.__dict__))


def known_repos(r: redis.Redis) -> dict[str, Repo]:
    """Every repository recorded by remember_repo, by id."""
    return {k.decode(): Repo.from_dict(json.loads(v)) for k, v in r.hgetall(keys.REPOS).items()}
