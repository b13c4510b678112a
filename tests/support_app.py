"""The bot as a GitHub App in tests: one RSA key pair per test process, a FakeGitHub that is that
App's GitHub, and `check_run` webhooks (Apply, Re-run) built from the published fixtures."""
from __future__ import annotations

import copy
import functools

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.github import FakeGitHub
from tests.fakes.github_payloads import check_run_json, repo_json
from tests.support import _point_repo, fixture

APP_ID, INSTALLATION_ID, APP_SLUG = 4242, 77, "plankeeper"
APP_LOGIN = f"{APP_SLUG}[bot]"


@functools.lru_cache(maxsize=1)
def app_keys() -> tuple[str, str]:
    """(private PEM, public PEM) of the test App."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def app_github(token: str | None = None) -> FakeGitHub:
    """A FakeGitHub (not started) that takes the test App's JWTs, and `token` too when given."""
    return FakeGitHub(token=token, app_id=APP_ID, app_public_key=app_keys()[1], app_slug=APP_SLUG,
                      installation_id=INSTALLATION_ID)


def check_run_payload(fake: FakeGitHub, full_name: str, run_id: int, action: str, sender: str,
                      identifier: str = "apply") -> dict:
    """A `check_run` webhook for a check run on the fake: `requested_action` (a button, from
    check_run.requested_action.json) or `rerequested` (Re-run, from check_run.rerequested.json)."""
    name = {"requested_action": "check_run.requested_action", "rerequested": "check_run.rerequested"}[action]
    payload = copy.deepcopy(fixture("github", name))
    repo = fake.repos[full_name]
    run = fake.find_check_run(full_name, run_id)
    assert run is not None, f"no check run {run_id} on {full_name}"
    base = repo_json(full_name, repo.clone_url, repo.default_branch, fake.api_url, repo.web)
    payload["check_run"] = check_run_json(base, run, fake.check_run_pulls(repo, run["head_sha"]))
    _point_repo(payload["repository"], fake, repo)
    payload["installation"] = {"id": fake.installation_id, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNzc="}
    payload["sender"]["login"] = sender
    if action == "requested_action":
        payload["requested_action"] = {"identifier": identifier}
    return payload


def check_suite_payload(fake: FakeGitHub, full_name: str, number: int, sender: str) -> dict:
    """`check_suite` `rerequested` (Re-run all checks) of the App's suite on a pull request's head,
    from check_suite.rerequested.json."""
    payload = copy.deepcopy(fixture("github", "check_suite.rerequested"))
    repo = fake.repos[full_name]
    pull = repo.pulls[number]
    suite = payload["check_suite"]
    suite.update(head_sha=pull.head_sha, after=pull.head_sha, head_branch=pull.head_ref)
    suite["app"]["id"] = fake.app_id
    for listed in suite["pull_requests"]:
        listed["number"] = number
        listed["head"].update(sha=pull.head_sha, ref=pull.head_ref)
    _point_repo(payload["repository"], fake, repo)
    payload["installation"]["id"] = fake.installation_id
    payload["sender"]["login"] = sender
    return payload
