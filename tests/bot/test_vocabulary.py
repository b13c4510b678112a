"""Forge vocabulary (SPEC §8): a GitHub pull request is `#12`, a GitLab merge request `!12`, in
every message that names one."""
from __future__ import annotations

from bot import notify
from bot.handlers.plan import locked_message
from bot.models import PullRequest, Repo, pull_ref
from bot.settings import GitHubSettings, GitLabSettings, Notification, Settings
from bot.state import locks
from tests.support import WebhookReceiver

GITLAB = Repo("gitlab", "gitlab.example.com", "acme/infra", "https://gitlab.example.com/acme/infra.git")
GITHUB = Repo("github", "github.com", "acme/infra", "https://github.com/acme/infra.git")


def test_pull_ref_by_forge() -> None:
    assert (pull_ref("gitlab", 12), pull_ref("github", 12), pull_ref("", 3)) == ("!12", "#12", "#3")
    assert PullRequest(GITLAB, 7, "alice", "a" * 40, "f", "main").ref == "!7"
    assert PullRequest(GITHUB, 7, "alice", "a" * 40, "f", "main").ref == "#7"


def test_the_lock_holder_is_named_as_its_forge_writes_it() -> None:
    held = locks.new_lock(GITLAB.id, "infra/app::default", 1, "https://gitlab.example.com/acme/infra/-/merge_requests/1",
                          "bob")
    assert locked_message(held, "gitlab").startswith(
        "🔒 This project is locked by [!1](https://gitlab.example.com/acme/infra/-/merge_requests/1) (@bob).")
    assert "[#1](" in locked_message(held, "github")


def test_notification_titles_name_a_merge_request_with_a_bang() -> None:
    receiver = WebhookReceiver()
    try:
        settings = Settings(notifications=(Notification(kind="http", url=receiver.url),))
        pull = PullRequest(GITLAB, 7, "alice", "a" * 40, "f", "main")
        notify.apply_finished(settings, pull, [], "http://pk/jobs/1")
        notify.job_failed(settings, "job-2", GITLAB.id, 7, "boom", "http://pk/jobs/2", forge="gitlab")
        titles = [body["title"] for _, body in receiver.received]
        assert titles == ["Apply succeeded: gitlab.example.com/acme/infra!7", "Job failed: gitlab.example.com/acme/infra!7"]
        assert receiver.received[1][1]["fields"]["pull request"] == "!7"
    finally:
        receiver.close()


def test_the_forge_of_a_repository_id_by_its_host() -> None:
    settings = Settings(github=GitHubSettings(api_url="https://ghe.acme.io/api/v3"),
                        gitlab=GitLabSettings(url="https://gitlab.acme.io"))
    assert settings.forge_for("ghe.acme.io/acme/infra") == "github"
    assert settings.forge_for("gitlab.acme.io/group/sub/infra") == "gitlab"
    assert settings.forge_for("elsewhere.io/acme/infra") == ""
    assert Settings().forge_for("github.com/acme/infra") == "github"
