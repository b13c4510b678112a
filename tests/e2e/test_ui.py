"""End to end in a headless Chromium against a live `plankeeper serve`: locks listed and unlocked
from the UI (refused without credentials), a running job's log tailing live, the audit page
showing the apply, notifications received by a local HTTP server. Screenshots go to
test-artifacts/ for a human look."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.conftest import WEBHOOK_SECRET
from tests.support import ROOT, WebhookReceiver, github_comment_payload, github_pr_payload, wait_for

pytestmark = pytest.mark.e2e
REPO = "acme/infra"
REPO_ID = f"github.com/{REPO}"
USER, PASSWORD, TOKEN = "admin", "ui-secret-pass", "ui-api-token-123"
UI = {"ui": {"username": USER, "password": PASSWORD, "api_token": TOKEN}}
ARTIFACTS = ROOT / "test-artifacts"
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run")
TICKER = 'for i in 1 2 3 4 5; do echo tick $i; sleep 1; done'


def root_module(state: Path, command: str = "") -> str:
    provisioner = f'  provisioner "local-exec" {{\n    command = "{command}"\n  }}\n' if command else ""
    return (f'terraform {{\n  backend "local" {{\n    path = "{state}"\n  }}\n}}\n'
            f'resource "terraform_data" "ticker" {{\n  input = "v1"\n{provisioner}}}\n')


def open_pull(fake, repo, tmp_path: Path, command: str = "", number: int = 7) -> str:
    state = tmp_path / "state" / "app.tfstate"
    state.parent.mkdir(exist_ok=True)
    base = repo.commit({"README.md": "infra\n"}, "initial")
    head = repo.commit({"infra/app/main.tf": root_module(state, command)}, "add app", branch=f"feature-{number}")
    repo.checkout("main")
    fake.add_repo(REPO, repo.clone_url)
    fake.add_pull(REPO, number, head, f"feature-{number}", "main", "alice", files=["infra/app/main.tf"],
                  base_sha=base)
    fake.set_permission(REPO, "alice", "write")
    return head


def deliver_opened(server, fake, number: int = 7) -> str:
    answer = server.deliver_github("pull_request", github_pr_payload("opened", fake, REPO, number), WEBHOOK_SECRET)
    assert answer.status_code == 202, answer.text
    return answer.json()["job_id"]


def deliver_comment(server, fake, body: str, number: int = 7) -> str:
    answer = server.deliver_github("issue_comment", github_comment_payload(fake, REPO, number, body, "alice"),
                                   WEBHOOK_SECRET)
    assert answer.status_code == 202, answer.text
    return answer.json()["job_id"]


def _child(server, job_id: str, marker: str) -> str:
    """The id of the job `job_id` started whose id continues with `marker`, once it exists."""
    jobs = requests.get(f"{server.url}/api/jobs?limit=50", timeout=5).json()
    return next((j["id"] for j in jobs if j["id"].startswith(job_id + marker)), "")


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_argument("--window-size=1400,900")
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def screenshot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"ui-{name}.png"))


def text_of(driver, by: str, value: str) -> str:
    """An element's text, or "" while the page is being replaced (a form's submit navigates:
    the element found may be gone before its text is read)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return driver.find_element(by, value).text
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def sign_in(driver, server) -> None:
    """Basic auth by URL once; Chromium then resends the credentials to the whole origin."""
    host = server.url.split("://", 1)[1]
    driver.get(f"http://{USER}:{PASSWORD}@{host}/login?next=/")
    driver.get(f"{server.url}/")  # the redirect right after the challenge goes out without them
    assert "Signed in as" in driver.find_element("css selector", "header .who").text


def test_plan_lock_is_listed_and_unlocked_from_the_ui(fake_github, git_repo, serve_factory, browser, tmp_path):
    from selenium.webdriver.common.by import By

    open_pull(fake_github, git_repo, tmp_path)
    server = serve_factory(UI)
    deliver_opened(server, fake_github)
    server.wait_jobs_idle()
    browser.get(server.url + "/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#locks tr.lock-row")
    assert len(rows) == 1 and REPO_ID in rows[0].text and "infra/app" in rows[0].text and "@alice" in rows[0].text
    assert rows[0].find_element(By.LINK_TEXT, "#7").get_attribute("href").endswith(f"{REPO}/pull/7")
    screenshot(browser, "overview")
    # without the credentials the API refuses, and the lock stays
    refused = requests.post(f"{server.url}/api/locks/unlock", json={"repo": REPO_ID, "project": "infra/app::default"},
                            timeout=5)
    assert refused.status_code == 401 and "UI credentials" in refused.json()["error"]
    sign_in(browser, server)
    browser.find_element(By.CSS_SELECTOR, "#locks a.unlock").click()
    assert "Unlock infra/app" in browser.find_element(By.TAG_NAME, "h1").text
    screenshot(browser, "unlock-confirm")
    browser.find_element(By.ID, "confirm-unlock").click()
    wait_for(lambda: "Lock released" in text_of(browser, By.TAG_NAME, "main"), 10, what="unlock notice")
    assert browser.find_elements(By.CSS_SELECTOR, "#locks tr.lock-row") == []
    assert "No project is locked." in browser.find_element(By.ID, "locks").text
    assert requests.get(f"{server.url}/api/locks", timeout=5).json() == []
    entry = requests.get(f"{server.url}/api/audit?action=unlock", timeout=5).json()[0]
    assert entry["user"] == USER and entry["project"] == "infra/app::default" and entry["pull"] == "7"


def test_read_only_ui_refuses_to_unlock(fake_github, git_repo, serve_factory, browser, tmp_path):
    from selenium.webdriver.common.by import By

    open_pull(fake_github, git_repo, tmp_path)
    server = serve_factory()
    deliver_opened(server, fake_github)
    server.wait_jobs_idle()
    browser.get(server.url + "/")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#locks tr.lock-row")) == 1
    assert browser.find_elements(By.CSS_SELECTOR, "#locks a.unlock") == []  # no button to press
    assert "read-only" in browser.find_element(By.CSS_SELECTOR, "header .who").text
    browser.get(f"{server.url}/locks/unlock?repo={REPO_ID}&project=infra/app::default")
    assert "ui.username" in browser.find_element(By.ID, "read-only").text
    assert browser.find_elements(By.ID, "confirm-unlock") == []
    screenshot(browser, "unlock-read-only")
    answer = requests.post(f"{server.url}/api/locks/unlock", json={"repo": REPO_ID, "project": "infra/app::default"},
                           headers={"Authorization": "Bearer guessed"}, timeout=5)
    assert answer.status_code == 403 and "read-only" in answer.json()["error"]
    assert len(requests.get(f"{server.url}/api/locks", timeout=5).json()) == 1


def test_running_apply_tails_live_and_lands_in_the_audit_log(fake_github, git_repo, serve_factory, browser,
                                                             tmp_path, receiver):
    from selenium.webdriver.common.by import By

    open_pull(fake_github, git_repo, tmp_path, TICKER)
    server = serve_factory({**UI, "defaults": {"apply_requirements": []},
                            "notifications": [{"kind": "http", "url": receiver.url, "events": ["apply"]}]})
    deliver_opened(server, fake_github)
    server.wait_jobs_idle()
    job_id = deliver_comment(server, fake_github, "/apply")
    project_job = wait_for(lambda: _child(server, job_id, "-apply-p"), 60, what="the project's apply job")
    log_url = f"{server.url}/api/jobs/{project_job}/log"
    wait_for(lambda: any("applying plan" in line for line in requests.get(log_url, timeout=5).json()["lines"]),
             60, interval=0.1, what="the apply to start")
    browser.get(f"{server.url}/jobs/{job_id}")  # where the comment links to
    browser.find_element(By.CSS_SELECTOR, "ul.children").find_element(By.PARTIAL_LINK_TEXT, "apply infra/app").click()
    assert browser.current_url.endswith(f"/jobs/{project_job}")
    loaded_with = browser.find_element(By.ID, "log").text
    assert "tick 5" not in loaded_with, "the apply finished before the page loaded: nothing to tail"
    assert "running" in browser.find_element(By.ID, "job-state").text
    wait_for(lambda: "tick 2" in text_of(browser, By.ID, "log"), 60, what="tick 2 in the live log")
    screenshot(browser, "job-running")
    wait_for(lambda: "tick 5" in text_of(browser, By.ID, "log"), 60, what="tick 5 in the live log")
    wait_for(lambda: "succeeded" in text_of(browser, By.ID, "job-state"), 60, what="the final state")
    wait_for(lambda: "applied" in text_of(browser, By.ID, "job-summary"), 10, what="the summary")
    assert browser.find_element(By.ID, "job-duration").text.endswith("s")
    text = browser.find_element(By.ID, "log").text
    assert text.index("tick 1") < text.index("tick 5") and "Apply complete!" in text
    assert text.count("tick 3") == 1  # every line exactly once, despite the tail and the initial render
    screenshot(browser, "job-finished")
    browser.get(f"{server.url}/jobs/{job_id}")
    assert "succeeded" in browser.find_element(By.CSS_SELECTOR, "ul.children").text
    screenshot(browser, "job-coordinator")
    server.wait_jobs_idle()
    browser.get(f"{server.url}/audit?action=apply")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.audit-row")
    assert len(rows) == 1 and "alice" in rows[0].text and "success" in rows[0].text and "infra/app" in rows[0].text
    screenshot(browser, "audit")
    browser.get(f"{server.url}/deployments?repo={REPO_ID}")
    [row] = browser.find_elements(By.CSS_SELECTOR, "tr.deployment-row")
    assert "comment" in row.text and "@alice" in row.text and "success" in row.text
    assert row.find_element(By.LINK_TEXT, "#7").get_attribute("href").endswith(f"{REPO}/pull/7")
    assert row.find_element(By.LINK_TEXT, "log").get_attribute("href").endswith(f"/jobs/{project_job}")
    assert "Live:" in browser.find_element(By.CSS_SELECTOR, ".deploy-project p.live").text
    screenshot(browser, "deployments")
    browser.get(server.url + "/")
    screenshot(browser, "overview-after-apply")
    assert browser.find_element(By.ID, "jobs").find_elements(By.CSS_SELECTOR, f'a[href="/jobs/{job_id}"]')
    wait_for(lambda: receiver.received, 10, what="the apply notification")
    note = receiver.received[0][1]
    assert note["event"] == "apply" and note["title"] == f"Apply succeeded: {REPO_ID}#7"
    assert note["url"].endswith(f"/jobs/{job_id}") and "applied" in note["text"]
