"""The server-rendered pages over a real Redis: what the overview, job, audit and unlock pages
show, and which actions they offer with and without the UI credentials."""
from __future__ import annotations

import base64
import json
import time

from bot.models import Repo
from bot.state import audit, deployments, joblog, locks, repos
from bot.settings import UISettings
from tests.bot.ui.conftest import PASSWORD, USER

REPO = "github.com/acme/infra"
PROJECT = "infra/app::default"
HTML = {"Accept": "text/html"}


def _basic(password: str = PASSWORD) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode(), **HTML}


def _seed(r) -> None:
    locks.try_lock(r, locks.new_lock(REPO, PROJECT, 7, "https://github.com/acme/infra/pull/7", "alice"))
    now = time.time()
    joblog.record_job(r, "d-run", state="running", created_at=now - 5, started_at=now - 4, repo=REPO, pull=7,
                      title="comment", summary="")
    joblog.record_job(r, "d-old", state="failed", created_at=now - 100, started_at=now - 99, ended_at=now - 30,
                      duration="69.2", repo=REPO, pull=8, title="pull request opened", summary="failed: Checkout failed",
                      pull_url="https://github.com/acme/infra/pull/8")


def test_overview_lists_locks_jobs_and_says_no_drift_checks_yet(client, redis_server):
    _seed(redis_server)
    html = client.get("/").get_data(as_text=True)
    assert 'href="https://github.com/acme/infra/pull/7">#7</a>' in html and "@alice" in html
    assert "/locks/unlock?repo=github.com/acme/infra&amp;project=infra/app::default" in html
    assert 'class="badge state-running">running' in html and 'class="badge state-failed">failed' in html
    assert "failed: Checkout failed" in html and "1m 09s" in html
    # the comment job gets its pull request link from the lock of the same pull request
    assert 'href="https://github.com/acme/infra/pull/7">github.com/acme/infra#7' in html
    assert 'href="https://github.com/acme/infra/pull/8">github.com/acme/infra#8' in html
    assert "No drift checks yet." in html and 'href="/audit"' in html


def test_overview_shows_drift_statuses_drifted_first(client, redis_server):
    base = {"repo": REPO, "workspace": "default", "checked_at": 1700000000, "changes": [], "job_id": "d-drift"}
    redis_server.set(f"pk:drift:{REPO}:a::default", json.dumps({**base, "project": "a::default", "dir": "a",
                                                                "drifted": False, "summary": "No changes."}))
    redis_server.set(f"pk:drift:{REPO}:b::default", json.dumps({
        **base, "project": "b::default", "dir": "b", "drifted": True, "summary": "Plan: 0 to add, 1 to change",
        "changes": [{"address": "terraform_data.x", "action": "update"}]}))
    redis_server.sadd("pk:drift:other-bookkeeping", "x")  # not a status: ignored
    html = client.get("/").get_data(as_text=True)
    assert "No drift checks yet." not in html
    assert html.index("b::default") < html.index("a::default")
    assert "state-drifted" in html and "state-in_sync" in html and "(1 resource)" in html
    assert f'action="/api/drift/{REPO}/b?workspace=default"' in html
    assert "2023-11-14 22:13:20 UTC" in html


def test_read_only_overview_offers_no_writing_action(make_client, redis_server):
    _seed(redis_server)
    html = make_client().get("/").get_data(as_text=True)
    assert "read-only" in html and "Unlock…" not in html and "Sign in" not in html


def test_job_page_shows_the_log_and_a_cancel_form_while_it_runs(client, redis_server):
    _seed(redis_server)
    joblog.JobLog(redis_server, "d-run", lambda s: s.replace("s3cret", "***"))("token s3cret <b>")
    html = client.get("/jobs/d-run").get_data(as_text=True)
    assert "token *** &lt;b&gt;" in html  # redacted when written, escaped when shown
    assert 'data-next="1"' in html and 'data-final="false"' in html and "/api/jobs/d-run/events" in html
    assert 'action="/api/jobs/d-run/cancel"' in html and 'name="csrf_token"' in html
    assert client.get_cookie("pk_session") is not None  # the session the CSRF token is bound to
    finished = client.get("/jobs/d-old").get_data(as_text=True)
    assert "Cancel job" not in finished and 'data-final="true"' in finished
    assert client.get("/jobs/none").status_code == 404


def test_audit_page_filters_and_links_to_the_job(client, redis_server):
    audit.record(redis_server, "apply", user="alice", repo=REPO, pull=7, project=PROJECT, commit="abcdef1234",
                 result="success", job_id="d-apply")
    audit.record(redis_server, "unlock", user="admin", repo=REPO, pull=7, project=PROJECT, result="ok")
    html = client.get("/audit?action=apply").get_data(as_text=True)
    assert html.count('class="audit-row"') == 1 and "abcdef1" in html and 'href="/jobs/d-apply"' in html
    assert "format=jsonl" in html and "action=apply" in html.split("Export JSON lines")[0].rsplit("href=", 1)[1]
    assert client.get("/audit?user=nobody").get_data(as_text=True).count('class="audit-row"') == 0
    bad = client.get("/audit?since=31/12/2024").get_data(as_text=True)
    assert "use YYYY-MM-DD" in bad


def test_unlock_confirmation_asks_to_sign_in_then_offers_the_form(client, redis_server):
    _seed(redis_server)
    url = f"/locks/unlock?repo={REPO}&project={PROJECT}"
    anonymous = client.get(url, headers=HTML)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
    assert client.get(url, headers=_basic("wrong")).status_code == 401
    page = client.get(url, headers=_basic())
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="confirm-unlock"' in html and f'value="{PROJECT}"' in html
    assert "Signed in as <b>admin</b>" in html
    assert client.get(f"/locks/unlock?repo={REPO}&project=other::default", headers=_basic()).status_code == 404


def test_unlock_confirmation_on_a_read_only_ui_explains_how_to_enable_it(make_client, redis_server):
    _seed(redis_server)
    for ui in (UISettings(), UISettings(api_token="only-a-token")):
        page = make_client(ui).get(f"/locks/unlock?repo={REPO}&project={PROJECT}", headers=HTML)
        html = page.get_data(as_text=True)
        assert page.status_code == 403 and 'id="confirm-unlock"' not in html and "ui.username" in html


def test_login_redirects_only_inside_the_site(client):
    assert client.get("/login", headers=HTML).status_code == 401
    assert client.get("/login?next=/audit", headers=_basic()).headers["Location"] == "/audit"
    assert client.get("/login?next=//evil.example", headers=_basic()).headers["Location"] == "/"
    assert client.get("/login?next=https://evil.example", headers=_basic()).headers["Location"] == "/"


def test_notice_shows_only_known_messages(client):
    assert "Lock released" in client.get("/?notice=unlocked").get_data(as_text=True)
    assert 'class="notice"' not in client.get("/?notice=pwned").get_data(as_text=True)


def test_jobs_page_pages(client, redis_server):
    for i in range(30):
        joblog.record_job(redis_server, f"d-{i:02d}", state="succeeded", created_at=1000 + i, repo=REPO, pull=7)
    first = client.get("/jobs").get_data(as_text=True)
    assert first.count('class="job-row"') == 25 and "offset=25" in first and "d-29" in first
    second = client.get("/jobs?offset=25").get_data(as_text=True)
    assert second.count('class="job-row"') == 5 and "d-00" in second and "Newer" in second


def test_job_page_links_a_run_to_its_project_jobs_and_back(client, redis_server):
    joblog.record_job(redis_server, "d-abc", state="succeeded", created_at=100, repo=REPO, pull=7, title="comment")
    joblog.record_job(redis_server, "d-abc-apply-p0", state="running", created_at=101, repo=REPO, pull=7,
                      title="apply infra/app", event="project")
    joblog.record_job(redis_server, "d-abcd", state="queued", created_at=102, repo=REPO, pull=8)  # not a child
    parent = client.get("/jobs/d-abc").get_data(as_text=True)
    assert 'href="/jobs/d-abc-apply-p0">apply infra/app</a>' in parent and 'href="/jobs/d-abcd"' not in parent
    child = client.get("/jobs/d-abc-apply-p0").get_data(as_text=True)
    assert 'Part of job <a class="mono" href="/jobs/d-abc">d-abc</a> (comment)' in child


def _deploy(r, project: str, commit: str, when: float, result: str = "success", via: str = "comment",
            repo: str = REPO, pull: int = 7) -> deployments.Deployment:
    return deployments.record(r, deployments.Deployment(
        repo=repo, project=project, commit=commit, pull=pull, user="alice", result=result, plan_sha256="ab" * 32,
        via=via, job_id=f"job-{int(when)}-p0", pull_url=f"https://github.com/acme/infra/pull/{pull}" if pull else "",
        time=when))


def test_deployments_page_shows_the_live_commit_and_history_per_project(client, redis_server):
    _deploy(redis_server, PROJECT, "a" * 40, 1700000000)
    _deploy(redis_server, PROJECT, "b" * 40, 1700000100, result="failed: apply", via="merge", pull=8)
    _deploy(redis_server, "net::prod", "c" * 40, 1700000200, via="drift", pull=0)
    _deploy(redis_server, PROJECT, "d" * 40, 1700000300, repo="github.com/acme/other")
    html = client.get("/deployments?repo=github.com/acme/infra", headers=HTML).get_data(as_text=True)
    assert 'class="active">Deployments</a>' in html.replace('href="/deployments" ', "")
    assert "github.com/acme/other" in html and "dddddd" not in html  # the picker names it; its rows are not here
    app = html[html.index('data-project="infra/app::default"'):html.index('data-project="net::prod"')]
    # live: the successful apply of aaaaaaa, not the later failed one
    assert '<span class="mono" title="' + "a" * 40 + '">aaaaaaa</span>' in app.split("</p>")[0]
    assert "via comment" in app.split("</p>")[0] and 'href="https://github.com/acme/infra/pull/7">#7</a>' in app
    rows = app[app.index("<tbody>"):]
    assert rows.index("bbbbbbb") < rows.index("aaaaaaa")  # newest first
    assert "failed: apply" in app and 'href="https://github.com/acme/infra/pull/8">#8</a>' in app
    assert 'href="/jobs/job-1700000000-p0">log</a>' in app and "2023-11-14 22:13:20 UTC" in app
    assert app.count('<td class="actions">') == 2  # the place for per-deployment actions (Roll back)
    net = html[html.index('data-project="net::prod"'):]
    assert "via drift" in net and "ccccccc" in net and '<span class="muted">none</span>' in net


def test_deployments_page_writes_a_gitlab_merge_request_as_such(client, redis_server):
    repos.remember_repo(redis_server, Repo("gitlab", "gitlab.example.com", "acme/net", "https://x/acme/net.git"))
    _deploy(redis_server, PROJECT, "a" * 40, 1.0, repo="gitlab.example.com/acme/net", pull=12)
    html = client.get("/deployments", headers=HTML).get_data(as_text=True)
    assert '>!12</a>' in html and '>#12</a>' not in html


def test_deployments_page_lists_every_repository_or_says_there_are_none(client, redis_server):
    assert "No deployments yet" in client.get("/deployments", headers=HTML).get_data(as_text=True)
    _deploy(redis_server, PROJECT, "a" * 40, 1.0)
    _deploy(redis_server, PROJECT, "d" * 40, 2.0, repo="github.com/acme/other")
    html = client.get("/deployments", headers=HTML).get_data(as_text=True)
    assert 'data-repo="github.com/acme/infra"' in html and 'data-repo="github.com/acme/other"' in html
    assert 'href="/deployments?repo=github.com/acme/other"' in html
    missing = client.get("/deployments?repo=acme/none", headers=HTML).get_data(as_text=True)
    assert "No deployment of acme/none is recorded." in missing

