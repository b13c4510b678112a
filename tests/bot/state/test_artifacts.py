"""bot/artifacts.py: plan files stored with their SHA-256, refused when tampered with."""
from __future__ import annotations

import pytest

from bot.state import artifacts, keys
from runners.models import ResourceChange

REPO = "github.com/acme/infra"


def save(redis_db, tmp_path, project="infra/app::default", content=b"plan-bytes"):
    plan = tmp_path / "plan.tfplan"
    plan.write_bytes(content)
    artifact = artifacts.PlanArtifact(REPO, 7, project, None, "terraform", "abc123", "", "Plan: 1 to add",
                                      [ResourceChange("terraform_data.x", "create")])
    return artifacts.save_plan(redis_db, artifact, plan)


def test_saved_plan_round_trips_with_its_sha256(redis_db, tmp_path):
    saved = save(redis_db, tmp_path)
    loaded = artifacts.get_plan(redis_db, REPO, 7, "infra/app::default")
    assert loaded.sha256 == saved.sha256 and len(saved.sha256) == 64
    assert loaded.changes == [ResourceChange("terraform_data.x", "create")]
    path = artifacts.write_plan_file(redis_db, loaded, tmp_path / "out")
    assert path.read_bytes() == b"plan-bytes"


def test_tampered_plan_bytes_are_refused(redis_db, tmp_path):
    saved = save(redis_db, tmp_path)
    key = keys.PLAN.format(repo=REPO, number=7, project="infra/app::default")
    redis_db.hset(key, "file", b"something else")
    with pytest.raises(artifacts.ArtifactCorrupt):
        artifacts.write_plan_file(redis_db, saved, tmp_path / "out")


def test_discard_drops_every_plan_of_the_pull_request(redis_db, tmp_path):
    save(redis_db, tmp_path, "a::default")
    save(redis_db, tmp_path, "b::default")
    assert [p.project_key for p in artifacts.pull_plans(redis_db, REPO, 7)] == ["a::default", "b::default"]
    assert artifacts.discard_pull_plans(redis_db, REPO, 7) == 2
    assert artifacts.pull_plans(redis_db, REPO, 7) == []
