"""What a process holds once: settings and one Redis connection."""
from __future__ import annotations

from dataclasses import dataclass

import redis

from bot.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis

    @classmethod
    def connect(cls, settings: Settings) -> "Runtime":
        """Connect to settings.redis_url (serve sets it to the embedded Redis' socket)."""
        if not settings.redis_url:
            raise RuntimeError("redis_url is not set: start the embedded Redis first (plankeeper serve)")
        return cls(settings, redis.Redis.from_url(settings.redis_url, health_check_interval=30))

    def job_url(self, job_id: str) -> str:
        return f"{self.settings.public_url.rstrip('/')}/jobs/{job_id}"
