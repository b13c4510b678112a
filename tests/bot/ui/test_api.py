"""The JSON API over a real Redis: reads, paging, the live log stream, and writing actions
refused or allowed by the UI credentials (bearer token, or basic auth plus a CSRF token)."""
from __future__ import annotations

import base64
import json
import threading
import time

from bot.state import artifacts, audit, deployments, joblog, keys, locks
from bot.settings import UISettings
from tests.bot.ui.conftest import PASSWORD, TOKEN, USER, csrf_from

REPO = "github.com/acme/infra"
PROJECT = "infra/app::default"


def _lock(r, number=7, project=PROJECT):
    return locks.try_lock(r, locks.new_lock(REPO, project, number, f"https://github.com/acme/infra/pull/{number}",
                                            "alice"))


def _basic(user=USER, password=PASSWORD) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _bearer(token=TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_locks_are_listed_with_their_holder(client, redis_server):
    _lock(redis_server)
    [listed] = client.get("/api/locks").get_json()
    assert listed["repo_id"] == REPO and listed["project_key"] == PROJECT and listed["pull_number"] == 7
    assert listed["user"] == "alice" and listed["pull_url"].endswith("/pull/7")


def test_unlock_with_the_api_token_releases_the_lock_discards_the_plan_and_audits(client, redis_server, tmp_path):
    _lock(redis_server)
    plan_file = tmp_path / "plan.tfplan"
    plan_file.write_bytes(b"plan")
    artifacts.save_plan(redis_server, artifacts.PlanArtifact(
        repo_id=REPO, pull_number=7, project_key=PROJECT, project_name=None, engine="terraform", head_sha="a" * 40,
        sha256="", summary="Plan: 1 to add, 0 to change, 0 to destroy."), plan_file)
    assert artifacts.get_plan(redis_server, REPO, 7, PROJECT) is not None
    answer = client.post("/api/locks/unlock", json={"repo": REPO, "project": PROJECT}, headers=_bearer())
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["unlocked"]["pull_number"] == 7
    assert locks.all_locks(redis_server) == []
    assert artifacts.get_plan(redis_server, REPO, 7, PROJECT) is None
    [entry] = audit.entries(redis_server, filters={"action": "unlock"})
    assert entry["user"] == "api-token" and entry["project"] == PROJECT and entry["pull"] == "7"


def test_unlock_of_a_free_project_is_404(client):
    answer = client.post("/api/locks/unlock", json={"repo": REPO, "project": PROJECT}, headers=_bearer())
    assert answer.status_code == 404 and "not locked" in answer.get_json()["error"]


def test_read_only_ui_refuses_every_writing_action_and_says_how_to_enable_it(make_client, redis_server):
    client = make_client()
    _lock(redis_server)
    for headers in ({}, _bearer(), _basic()):
        answer = client.post("/api/locks/unlock", json={"repo": REPO, "project": PROJECT}, headers=headers)
        assert answer.status_code == 403 and "ui.username" in answer.get_json()["error"]
    joblog.record_job(redis_server, "d-1", state="running", created_at=time.time(), repo=REPO, pull=7)
    assert client.post("/api/jobs/d-1/cancel", headers=_bearer()).status_code == 403
    assert len(locks.all_locks(redis_server)) == 1


def test_wrong_credentials_get_401_with_a_basic_challenge(client, redis_server):
    _lock(redis_server)
    for headers in ({}, _bearer("wrong"), _basic(password="wrong")):
        answer = client.post("/api/locks/unlock", json={"repo": REPO, "project": PROJECT}, headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert len(locks.all_locks(redis_server)) == 1


def test_token_only_ui_does_not_challenge_for_basic_auth(make_client, redis_server):
    client = make_client(UISettings(api_token=TOKEN))
    _lock(redis_server)
    answer = client.post("/api/locks/unlock", json={"repo": REPO, "project": PROJECT})
    assert answer.status_code == 401 and "WWW-Authenticate" not in answer.headers
    assert "Bearer" in answer.get_json()["error"]


def test_basic_auth_needs_the_csrf_token_of_the_same_session(client, redis_server):
    _lock(redis_server)
    page = client.get(f"/locks/unlock?repo={REPO}&project={PROJECT}", headers=_basic())
    token = csrf_from(page.get_data(as_text=True))
    form = {"repo": REPO, "project": PROJECT}
    assert client.post("/api/locks/unlock", data=form, headers=_basic()).status_code == 403  # no token
    other = client.application.test_client()  # another browser: its own session cookie
    assert other.post("/api/locks/unlock", data={**form, "csrf_token": token}, headers=_basic()).status_code == 403
    assert client.post("/api/locks/unlock", data={**form, "csrf_token": token + "x"},
                       headers=_basic()).status_code == 403
    assert len(locks.all_locks(redis_server)) == 1
    done = client.post("/api/locks/unlock", data={**form, "csrf_token": token, "next": "/"}, headers=_basic())
    assert done.status_code == 303 and done.headers["Location"].endswith("/?notice=unlocked")
    assert locks.all_locks(redis_server) == []
    assert audit.entries(redis_server, filters={"action": "unlock"})[0]["user"] == USER


def test_cancel_of_a_queued_job_dequeues_it_and_sets_the_cancel_key(client, redis_server):
    from rq import Queue
    from rq.serializers import JSONSerializer

    Queue("plankeeper", connection=redis_server, serializer=JSONSerializer).enqueue_call(
        "bot.jobs.handle_event", args=({},), job_id="d-queued")
    joblog.record_job(redis_server, "d-queued", state="queued", created_at=time.time(), repo=REPO, pull=7)
    answer = client.post("/api/jobs/d-queued/cancel", headers=_bearer())
    assert answer.status_code == 200 and answer.get_json()["state"] == "cancelled"
    assert joblog.get_job(redis_server, "d-queued")["state"] == "cancelled"
    assert float(redis_server.get(keys.CANCEL.format(repo=REPO, number=7))) <= time.time()
    assert audit.entries(redis_server, filters={"action": "cancel"})[0]["job_id"] == "d-queued"


def test_cancel_of_a_finished_job_is_409_and_of_an_unknown_one_404(client, redis_server):
    joblog.record_job(redis_server, "d-done", state="succeeded", created_at=time.time(), repo=REPO, pull=7)
    assert client.post("/api/jobs/d-done/cancel", headers=_bearer()).status_code == 409
    assert client.post("/api/jobs/d-none/cancel", headers=_bearer()).status_code == 404
    assert redis_server.get(keys.CANCEL.format(repo=REPO, number=7)) is None


def test_jobs_are_paged_newest_first(client, redis_server):
    for i in range(5):
        joblog.record_job(redis_server, f"d-{i}", state="succeeded", created_at=1000 + i, repo=REPO, pull=7)
    first = client.get("/api/jobs?limit=2")
    assert [j["id"] for j in first.get_json()] == ["d-4", "d-3"] and first.headers["X-Next-Offset"] == "2"
    last = client.get("/api/jobs?limit=2&offset=4")
    assert [j["id"] for j in last.get_json()] == ["d-0"] and "X-Next-Offset" not in last.headers
    assert client.get("/api/jobs/d-2").get_json()["state"] == "succeeded"
    assert client.get("/api/jobs/nope").status_code == 404
    assert client.get("/api/jobs?limit=x").status_code == 400


def test_job_log_reads_from_an_offset(client, redis_server):
    joblog.record_job(redis_server, "d-1", state="running", created_at=1)
    log = joblog.JobLog(redis_server, "d-1", lambda s: s)
    for word in ("one", "two", "three"):
        log(word)
    body = client.get("/api/jobs/d-1/log?start=1").get_json()
    assert body["start"] == 1 and body["next"] == 3 and body["state"] == "running"
    assert [line.split(" ", 1)[1] for line in body["lines"]] == ["two", "three"]


def _events(text: str) -> list[tuple[str, str, str]]:
    """(event, id, data) of each server-sent event in a stream."""
    found = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in fields:
            found.append((fields["event"], fields.get("id", ""), fields.get("data", "")))
    return found


def test_events_stream_new_lines_until_the_job_is_final(client, redis_server):
    joblog.record_job(redis_server, "d-1", state="running", created_at=1)
    log = joblog.JobLog(redis_server, "d-1", lambda s: s)
    log("before")

    def produce():  # a fake worker whose lines come while the stream is open (the thing under test)
        for word in ("tick 1", "tick 2"):
            time.sleep(0.7)  # longer than the API's 0.5 s poll: each line arrives in a later poll
            log(word)
        joblog.record_job(redis_server, "d-1", state="succeeded")
        log("done: after final")  # the worker's closing line comes just after the state

    writer = threading.Thread(target=produce)
    writer.start()
    started = time.time()
    events = _events(client.get("/api/jobs/d-1/events?start=1").get_data(as_text=True))
    writer.join()
    lines = [json.loads(data).split(" ", 1)[1] for kind, _, data in events if kind == "line"]
    assert lines == ["tick 1", "tick 2", "done: after final"]  # "before" was already shown
    assert [i for kind, i, _ in events if kind == "line"] == ["2", "3", "4"]
    assert events[-1] == ("end", "", json.dumps({"state": "succeeded"}))
    assert time.time() - started < 10


def test_events_resume_from_last_event_id(client, redis_server):
    joblog.record_job(redis_server, "d-1", state="failed", created_at=1)
    log = joblog.JobLog(redis_server, "d-1", lambda s: s)
    for word in ("a", "b", "c"):
        log(word)
    events = _events(client.get("/api/jobs/d-1/events", headers={"Last-Event-ID": "2"}).get_data(as_text=True))
    assert [json.loads(d).split(" ", 1)[1] for k, _, d in events if k == "line"] == ["c"]
    assert client.get("/api/jobs/none/events").status_code == 404


def _audit(r, n: int) -> None:
    for i in range(n):
        audit.record(r, "apply" if i % 2 else "command", user="alice" if i < 4 else "bob", repo=REPO, pull=7,
                     project="infra/app::default,infra/db::default" if i == 5 else PROJECT, result=f"r{i}")


def test_audit_filters_and_pages(client, redis_server):
    _audit(redis_server, 6)
    bob = client.get("/api/audit?user=BOB").get_json()
    assert [e["result"] for e in bob] == ["r5", "r4"]
    assert [e["result"] for e in client.get("/api/audit?project=infra/db").get_json()] == ["r5"]
    assert [e["result"] for e in client.get("/api/audit?action=apply&user=alice").get_json()] == ["r3", "r1"]
    page = client.get("/api/audit?limit=4")
    assert [e["result"] for e in page.get_json()] == ["r5", "r4", "r3", "r2"]
    rest = client.get(f"/api/audit?limit=4&before={page.headers['X-Next-Before']}")
    assert [e["result"] for e in rest.get_json()] == ["r1", "r0"] and "X-Next-Before" not in rest.headers


def test_audit_date_range_and_json_lines_export(client, redis_server):
    _audit(redis_server, 3)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert len(client.get(f"/api/audit?since={today}&until={today}").get_json()) == 3
    assert client.get("/api/audit?until=2000-01-01").get_json() == []
    assert client.get("/api/audit?since=2999-01-01").get_json() == []
    bad = client.get("/api/audit?since=yesterday")
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.get_json()["error"]
    export = client.get("/api/audit?format=jsonl&action=command")
    assert export.mimetype == "application/x-ndjson"
    rows = [json.loads(line) for line in export.get_data(as_text=True).splitlines()]
    assert [r["result"] for r in rows] == ["r2", "r0"] and all(r["repo"] == REPO for r in rows)


def _deployed(r, repo=REPO, project=PROJECT, when=1.0, via="comment", result="success", commit="c1" * 20):
    return deployments.record(r, deployments.Deployment(
        repo=repo, project=project, commit=commit, pull=7, user="alice", result=result, plan_sha256="ab" * 32,
        via=via, job_id="job-1-apply-p0", pull_url=f"https://{repo}/pull/7", time=when))


def test_deployments_are_listed_newest_first_in_the_spec_shape(client, redis_server):
    first = _deployed(redis_server, when=100.0)
    second = _deployed(redis_server, when=200.0, via="merge", result="failed: apply")
    listed = client.get("/api/deployments").get_json()
    assert [d["id"] for d in listed] == [second.id, first.id]
    assert listed[1] == {"id": first.id, "repo": REPO, "dir": "infra/app", "workspace": "default",
                         "project": PROJECT, "commit": "c1" * 20, "pull": 7, "user": "alice", "time": 100.0,
                         "result": "success", "plan_sha256": "ab" * 32, "via": "comment",
                         "job_id": "job-1-apply-p0", "pull_url": f"https://{REPO}/pull/7"}
    assert listed[0]["via"] == "merge" and listed[0]["result"] == "failed: apply"


def test_deployments_filter_by_repository_dir_and_workspace(client, redis_server):
    other = "gitlab.com/acme/net"
    a = _deployed(redis_server, when=1.0)
    b = _deployed(redis_server, project="infra/app::prod", when=2.0)
    c = _deployed(redis_server, project=".::default", when=3.0)
    d = _deployed(redis_server, repo=other, when=4.0)

    def ids(query: str) -> list[str]:
        answer = client.get(f"/api/deployments{query}")
        assert answer.status_code == 200
        return [x["id"] for x in answer.get_json()]

    assert ids("") == [d.id, c.id, b.id, a.id]
    assert ids(f"?repo={REPO}") == ids("?repo=acme/infra") == [c.id, b.id, a.id]  # full id or owner/name
    assert ids(f"?repo={other}") == [d.id] and ids("?repo=acme/nothing") == []
    assert ids("?dir=infra/app") == ids("?dir=infra/app/") == [d.id, b.id, a.id]
    assert ids("?dir=.") == [c.id]
    assert ids("?workspace=prod") == [b.id]
    assert ids(f"?repo={REPO}&dir=infra/app&workspace=default") == [a.id]
    assert ids("?limit=2") == [d.id, c.id]


def test_a_project_filter_finds_entries_beyond_the_newest_of_other_projects(redis_server):
    old = _deployed(redis_server, project="old::default", when=1.0)
    for i in range(30):
        _deployed(redis_server, when=10.0 + i)
    assert [x.id for x in deployments.history(redis_server, REPO, project="old::default", limit=5)] == [old.id]
    assert len(deployments.history(redis_server, REPO, limit=5)) == 5
    # read in batches: the paging over the stream finds it too
    found = deployments._repo_history(redis_server, REPO, lambda d: d.project == "old::default", 5, batch_size=4)
    assert [x.id for x in found] == [old.id]

