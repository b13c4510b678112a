"""A bench for the job layer without a server: a pull request on the fake GitHub backed by a
real git repo, JobContexts on a real Redis, and the queued RQ jobs run in this process."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rq import SimpleWorker
from rq.serializers import JSONSerializer

from bot import dispatch, jobs, queueing
from bot.context import JobContext, Runtime
from bot.forges.github import GitHubForge
from bot.models import CommentEvent, PullRequest, Repo
from bot.redact import Redactor
from bot.settings import GitHubSettings, Settings
from bot.state.joblog import JobLog
from tests.fakes.github import FakeGitHub
from tests.support import GitRepo, tf_data

FULL = "acme/infra"


class JobBench:
    def __init__(self, fake: FakeGitHub, redis_db, tmp_path: Path, token: str, bot: str, **settings):
        self.fake, self.tmp, self.redis = fake, tmp_path, redis_db
        base = tmp_path / "git" / "acme"
        base.mkdir(parents=True)
        self.git = GitRepo(base, "infra")
        self.git.commit({"README.md": "x\n"})
        self.head = self.git.commit({"infra/app/main.tf": tf_data()}, "change", branch="feature")
        fake.add_repo(FULL, self.git.clone_url)
        github = GitHubSettings(api_url=fake.api_url, token=token, bot_login=bot, write_interval=0)
        self.settings = Settings(data_dir=tmp_path / "data", github=github,
                                 redis_url=f"unix://{redis_db.socket_file}", **settings)
        self.rt = Runtime(self.settings, redis_db)
        self.forge = GitHubForge(fake.api_url, token=token, bot_login=bot, write_interval=0, sleep=lambda s: None)
        self.repo = Repo("github", "github.com", FULL, self.git.clone_url)

    def open_pull(self, number: int = 7, author: str = "alice") -> PullRequest:
        self.fake.add_pull(FULL, number, self.head, "feature", "main", author, files=["infra/app/main.tf"])
        self.fake.set_permission(FULL, author, "write")
        return self.forge.pull_request(self.repo, number)

    def context(self, job_id: str = "job-1") -> JobContext:
        redact = Redactor()
        return JobContext(self.settings, self.redis, self.forge, job_id, JobLog(self.redis, job_id, redact), redact)

    def comment(self, body: str, author: str, number: int = 7, job_id: str = "job-1") -> str:
        comment_id = self.fake.add_comment(FULL, number, body, author)
        event = CommentEvent("d", self.repo, number, str(comment_id), body, author)
        ctx = self.context(job_id)
        try:
            return dispatch.handle(ctx, event)
        finally:
            ctx.cleanup()

    def work(self) -> None:
        """Run every queued job (project jobs, finalizing jobs) in this process, then return."""
        jobs.init_worker(self.settings)  # this process is the worker, on the same Redis
        SimpleWorker([queueing.queue(self.redis)], connection=self.redis, serializer=JSONSerializer).work(burst=True)

    def comments(self, number: int = 7) -> list[str]:
        return [c["body"] for c in self.fake.comments(FULL, number)]

    def last_comment(self, number: int = 7) -> str:
        return self.comments(number)[-1]

    # -- helpers for the handler and engine tests ------------------------------------------

    @contextmanager
    def job(self, job_id: str = "job-1") -> Iterator[JobContext]:
        """A JobContext for calling a handler or the engine directly; its work dir is removed after."""
        ctx = self.context(job_id)
        try:
            yield ctx
        finally:
            ctx.cleanup()

    def pull(self, number: int = 7) -> PullRequest:
        """The pull request as the forge reports it now."""
        return self.forge.pull_request(self.repo, number)

    def push_commit(self, files: dict[str, str | None], number: int = 7, message: str = "more") -> str:
        """A new commit on the pull request's branch, pushed: the fake's head moves to it."""
        self.git.checkout("feature")
        sha = self.git.commit(files, message, branch="feature")
        self.fake.push(FULL, number, sha)
        return sha

    def commit_to_base(self, files: dict[str, str | None], message: str = "base moved") -> str:
        """A commit on main after the pull request branched off (the pull request lacks it)."""
        self.git.checkout("main")
        try:
            return self.git.commit(files, message, branch="main")
        finally:
            self.git.checkout("feature")

    def merge(self, number: int = 7) -> PullRequest:
        """Merge the branch into main with a real merge commit, pushed, and mark the pull request
        merged on the fake with that commit; returns the pull request as the forge reports it."""
        self.git.checkout("main")
        try:
            self.git.git("merge", "-q", "--no-ff", "-m", f"Merge pull request #{number}", "feature")
            self.git.git("push", "-q", "origin", "main")
            sha = self.git.git("rev-parse", "HEAD")
        finally:
            self.git.checkout("feature")
        self.fake.set_state(FULL, number, closed=True, merged=True)
        with self.fake.lock:
            self.fake.pull(FULL, number).merge_commit_sha = sha
        return self.pull(number)

    def statuses(self, sha: str, context: str) -> list[tuple[str, str]]:
        """(state, description) of every status the bot set on sha under context, oldest first."""
        return [(s["state"], s["description"]) for s in self.fake.statuses(FULL, sha)
                if s["context"] == context and s["creator"] == self.forge.bot_login]

    def bot_comments(self, number: int = 7) -> list[dict]:
        return [c for c in self.fake.comments(FULL, number) if c["user"] == self.forge.bot_login]
