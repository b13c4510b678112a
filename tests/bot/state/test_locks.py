"""bot/locks.py against a real Redis."""
from __future__ import annotations

import threading

from bot.state import locks


def lock_for(pull: int, project: str = "infra/app::default") -> locks.Lock:
    return locks.new_lock("github.com/acme/infra", project, pull, f"https://example/pull/{pull}", f"user{pull}")


def test_first_pull_request_takes_the_lock_and_others_see_the_holder(redis_db):
    assert locks.try_lock(redis_db, lock_for(7)).pull_number == 7
    held = locks.try_lock(redis_db, lock_for(8))
    assert held.pull_number == 7 and held.user == "user7"


def test_relocking_by_the_holder_keeps_the_original_record(redis_db):
    first = locks.try_lock(redis_db, lock_for(7))
    again = locks.try_lock(redis_db, lock_for(7))
    assert again.since == first.since


def test_only_the_holder_releases(redis_db):
    locks.try_lock(redis_db, lock_for(7))
    assert locks.release(redis_db, "github.com/acme/infra", "infra/app::default", 8) is False
    assert locks.get_lock(redis_db, "github.com/acme/infra", "infra/app::default").pull_number == 7
    assert locks.release(redis_db, "github.com/acme/infra", "infra/app::default", 7) is True
    assert locks.get_lock(redis_db, "github.com/acme/infra", "infra/app::default") is None


def test_release_pull_releases_every_project_it_holds_and_nothing_else(redis_db):
    locks.try_lock(redis_db, lock_for(7, "a::default"))
    locks.try_lock(redis_db, lock_for(7, "b::staging"))
    locks.try_lock(redis_db, lock_for(8, "c::default"))
    assert locks.release_pull(redis_db, "github.com/acme/infra", 7) == ["a::default", "b::staging"]
    assert [lock.project_key for lock in locks.all_locks(redis_db)] == ["c::default"]


def test_concurrent_takers_get_exactly_one_holder(redis_db):
    winners: list[int] = []

    def take(pull: int) -> None:
        if locks.try_lock(redis_db, lock_for(pull)).pull_number == pull:
            winners.append(pull)

    threads = [threading.Thread(target=take, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


def test_lock_dir_and_workspace_come_from_the_project_key(redis_db):
    lock = lock_for(7, "stacks/net::prod")
    assert (lock.dir, lock.workspace) == ("stacks/net", "prod")


def test_force_unlock_removes_whoever_holds_it(redis_db):
    locks.try_lock(redis_db, lock_for(9))
    removed = locks.force_unlock(redis_db, "github.com/acme/infra", "infra/app::default")
    assert removed.pull_number == 9 and locks.all_locks(redis_db) == []
