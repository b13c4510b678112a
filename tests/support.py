"""Test rig shared by the bot and end-to-end tests: real git repos, a real
`plankeeper serve` process, signed webhook deliveries built from the published fixtures
in tests/fixtures."""
from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Optional

import psutil
import requests
import yaml

from bot.signatures import sign_github

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"  # published webhook payloads; tests/fixtures/README.md says where from
EMBEDDED_TERRAFORM = "embedded"

GIT_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.com",
}


def fixture(forge: str, name: str) -> dict:
    return json.loads((FIXTURES / forge / f"{name}.json").read_text())


class GitRepo:
    """A work tree with a bare 'origin' next to it; the bare repo's path is the clone URL."""

    def __init__(self, base: Path, name: str = "infra"):
        self.work = base / f"{name}-work"
        self.bare = base / f"{name}.git"
        self.work.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.bare)], check=True, env=GIT_ENV)
        self.git("remote", "add", "origin", str(self.bare))

    @property
    def clone_url(self) -> str:
        return str(self.bare)

    def git(self, *args: str) -> str:
        env = dict(GIT_ENV, HOME=str(self.work))
        out = subprocess.run(["git", *args], cwd=self.work, env=env, check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def commit(self, files: dict[str, Optional[str]], message: str = "change", branch: Optional[str] = None) -> str:
        if branch:
            self.git("checkout", "-q", "-B", branch)
        for rel, text in files.items():
            path = self.work / rel
            if text is None:
                self.git("rm", "-q", rel)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            self.git("add", rel)
        self.git("commit", "-q", "-m", message)
        sha = self.git("rev-parse", "HEAD")
        self.git("push", "-q", "-f", "origin", f"HEAD:refs/heads/{branch or 'main'}")
        return sha

    def checkout(self, branch: str) -> None:
        self.git("checkout", "-q", branch)


def tf_data(name: str = "x", value: str = "hello") -> str:
    return f'resource "terraform_data" "{name}" {{\n  input = "{value}"\n}}\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real `plankeeper serve` subprocess with its own data dir and embedded Redis."""

    def __init__(self, tmp: Path, config: dict, env: Optional[dict] = None):
        self.port = config.setdefault("port", free_port())
        config.setdefault("host", "127.0.0.1")
        config.setdefault("public_url", f"http://127.0.0.1:{self.port}")
        config.setdefault("data_dir", str(tmp / "data"))
        self.config = config
        self.config_path = tmp / "plankeeper.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / "serve.log"
        self.env = dict(os.environ, **(env or {}))
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 30) -> "Server":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--config", str(self.config_path)],
            cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.time() + timeout
        wanted = self.config.get("workers", 2)
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                health = requests.get(f"{self.url}/healthz", timeout=1)
                if health.status_code == 200 and health.json().get("workers", 0) >= wanted:
                    return self
                # A web-only process (workers: 0) is up once Redis answers: /healthz says 503
                # "degraded" until some `plankeeper worker` registers on that Redis.
                if wanted == 0 and health.status_code == 503 and health.json().get("status") == "degraded":
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:]

    def stop(self, timeout: float = 60) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode if self.proc else 0

    def redis(self):
        import redis

        from bot.embedded_redis import EmbeddedRedis

        return redis.Redis.from_url(EmbeddedRedis(Path(self.config["data_dir"])).url)

    def deliver_github(self, event: str, payload: dict, secret: str, delivery: Optional[str] = None,
                       signature: Optional[str] = None) -> requests.Response:
        body = json.dumps(payload).encode()
        headers = {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "Content-Type": "application/json",
            "X-Hub-Signature-256": signature if signature is not None else sign_github(secret, body),
        }
        return requests.post(f"{self.url}/events", data=body, headers=headers, timeout=10)

    def wait_jobs_idle(self, timeout: float = 120) -> list[dict]:
        """Wait until no job is queued or running; returns the job records."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            jobs = requests.get(f"{self.url}/api/jobs?limit=200", timeout=5).json()
            if jobs and all(j.get("state") not in ("queued", "running") for j in jobs):
                return jobs
            time.sleep(0.2)
        raise AssertionError(f"jobs still running after {timeout}s: {jobs}\n{self.log()}")


def answers(url: str) -> bool:
    """Whether an HTTP server answers url at all (a 503 from /healthz counts: it is up)."""
    try:
        return requests.get(url, timeout=2).status_code in (200, 503)
    except requests.ConnectionError:
        return False


def forked_web_process(serve: psutil.Process) -> Optional[psutil.Process]:
    """The web process granian forked from `serve` (a fork: its command line is serve's)."""
    for child in serve.children():
        try:
            if child.cmdline() == serve.cmdline():
                return child
        except psutil.Error:  # one just killed, not reaped yet
            pass
    return None


def wait_for(predicate: Callable[[], object], timeout: float = 60, interval: float = 0.2, what: str = "") -> object:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def runs_under(pid: int, command: str) -> bool:
    """Whether a descendant of process `pid` (a job's work-horse) is running the shell command
    `command` (e.g. "sleep 12"), as its own argv or through `/bin/sh -c`: how a test waits
    until a job is inside a given step or provisioner, instead of sleeping a fixed time."""
    import psutil

    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    words = command.split()
    for proc in descendants:
        try:
            argv = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if argv[-len(words):] == words or argv[-1:] == [command]:
            return True
    return False


def github_pr_payload(action: str, fake, full_name: str, number: int, sender: str = "octocat") -> dict:
    """pull_request.<action> from the published fixture, pointed at the fake's repo and pull."""
    name = {"opened": "pull_request.opened", "synchronize": "pull_request.synchronize",
            "closed": "pull_request.closed", "reopened": "pull_request.reopened"}[action]
    payload = copy.deepcopy(fixture("github", name))
    repo = fake.repos[full_name]
    pull = repo.pulls[number]
    _point_repo(payload["repository"], fake, repo)
    pr = payload["pull_request"]
    pr.update(number=number, title=pull.title, draft=pull.draft, merged=pull.merged,
              merge_commit_sha=pull.merge_commit_sha, html_url=f"https://github.com/{full_name}/pull/{number}",
              state="closed" if pull.closed else "open")
    pr["user"]["login"] = pull.author
    pr["head"].update(sha=pull.head_sha, ref=pull.head_ref)
    pr["base"].update(sha=pull.base_sha, ref=pull.base_ref)
    _point_repo(pr["head"]["repo"], fake, repo)
    _point_repo(pr["base"]["repo"], fake, repo)
    payload["number"] = number
    payload["action"] = action
    payload["sender"]["login"] = sender
    payload.pop("installation", None)
    return payload


def github_comment_payload(fake, full_name: str, number: int, body: str, user: str = "octocat") -> dict:
    payload = copy.deepcopy(fixture("github", "issue_comment.created.on-pull-request"))
    repo = fake.repos[full_name]
    _point_repo(payload["repository"], fake, repo)
    payload["issue"]["number"] = number
    payload["issue"]["pull_request"]["html_url"] = f"https://github.com/{full_name}/pull/{number}"
    comment_id = fake.add_comment(full_name, number, body, user)
    payload["comment"].update(id=comment_id, body=body)
    payload["comment"]["user"]["login"] = user
    payload["comment"]["user"]["type"] = "User"
    payload["sender"]["login"] = user
    payload.pop("installation", None)
    return payload


def github_review_payload(fake, full_name: str, number: int, user: str, state: str = "approved") -> dict:
    payload = copy.deepcopy(fixture("github", "pull_request_review.submitted.approved"))
    pull = fake.repos[full_name].pulls[number]
    inner = github_pr_payload("opened", fake, full_name, number)
    payload["repository"] = inner["repository"]
    payload["pull_request"] = inner["pull_request"]
    payload["review"]["state"] = state
    payload["review"]["user"]["login"] = user
    payload["review"]["commit_id"] = pull.head_sha
    payload["review"]["id"] = fake.next_id()  # each review its own id: an approval is acted on once per id
    payload.pop("installation", None)
    return payload


def _point_repo(obj: dict, fake, repo) -> None:
    owner, name = repo.full_name.split("/")
    obj.update(full_name=repo.full_name, name=name, clone_url=repo.clone_url, default_branch=repo.default_branch,
               html_url=f"https://github.com/{repo.full_name}")
    obj["owner"]["login"] = owner


class WebhookReceiver:
    """A local HTTP server collecting the JSON posted to it as (path, body); it answers the
    statuses in `answers` first, then 200. A notification target for tests."""

    def __init__(self, answers=()):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.received: list[tuple[str, object]] = []
        self.answers = list(answers)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.received.append((self.path, body))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self.url = f"{self.base}/hook"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
