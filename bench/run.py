"""Plankeeper benchmark suite: prints a table and writes bench/results.json.

Run: python3 bench/run.py [--runs 5] [--only ack,e2e,...]   (about 15 minutes on 2 cores)
     python3 bench/run.py --only trees,replan   (some figures; the others stay in results.json)

Every figure is the median of --runs runs (>= 5); comparisons are measured side by side in
the same run. Real parts: `plankeeper serve` subprocesses with their embedded Redis, the
embedded Terraform, real git; only GitHub is the fake of tests/fakes (write_interval 0).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench.webhook_load import make_delivery, send  # noqa: E402
from bot.engines import runner_for  # noqa: E402
from bot.settings import TerraformSettings  # noqa: E402
from bot.settings_loader import load_settings  # noqa: E402
from runners.embedded_terraform import embedded_argv  # noqa: E402
from runners.git import RepoCache  # noqa: E402
from runners.models import Project  # noqa: E402
from runners.workspace import check_symlinks, create_workspace  # noqa: E402
from runners.worktrees import WorkTrees  # noqa: E402
from tests.conftest import GITHUB_TOKEN, WEBHOOK_SECRET  # noqa: E402
from tests.fakes.github import FakeGitHub  # noqa: E402
from tests.support import GIT_ENV, GitRepo, Server, forked_web_process, github_pr_payload, tf_data  # noqa: E402

REPO = "acme/infra"
JOB_SECONDS = 1.0  # the least a job holds a work tree: one embedded Terraform plan takes longer
RESULTS = ROOT / "bench" / "results.json"


def median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def server_config(fake: FakeGitHub, workers: int, **extra) -> dict:
    return {"workers": workers, "defaults": {"autoplan": True},
            "github": {"api_url": fake.api_url, "token": GITHUB_TOKEN, "webhook_secret": WEBHOOK_SECRET,
                       "bot_login": "plankeeper-bot", "write_interval": 0},
            "terraform": {"binary": "embedded", "timeout": 300}, **extra}


class Lab:
    """One fake GitHub and one repository with N project directories."""

    def __init__(self, base: Path, projects: int = 16):
        self.base, self.projects = base, projects
        self.fake = FakeGitHub(token=GITHUB_TOKEN, login="plankeeper-bot").start()
        self.repo = GitRepo(base / "git")
        self.base_sha = self.repo.commit({"README.md": "infra\n"}, "initial")
        self.fake.add_repo(REPO, self.repo.clone_url)
        self.number = 0
        self.plugin_cache = base / "plugins"

    def pull(self, projects: int, tag: str) -> int:
        """A new pull request changing the first `projects` project directories."""
        self.number += 1
        files = {f"stacks/p{i:02d}/main.tf": tf_data(f"r{i}", f"{tag}-{self.number}") for i in range(projects)}
        self.repo.checkout("main")
        head = self.repo.commit(files, f"pr {self.number}", branch=f"f{self.number}")
        self.repo.checkout("main")
        self.repo.git("update-ref", f"refs/pull/{self.number}/head", head)  # as GitHub publishes it
        self.fake.add_pull(REPO, self.number, head, f"f{self.number}", "main", "alice", files=list(files),
                           base_sha=self.base_sha)
        self.fake.set_permission(REPO, "alice", "write")
        return self.number

    def final_comment(self, number: int) -> str:
        for c in self.fake.comments(REPO, number):
            if c["body"].startswith("**Plankeeper plan**") and "still running" not in c["body"]:
                return c["body"]
        return ""

    def writes(self) -> int:
        return sum(1 for method, path in self.fake.requests if method in ("POST", "PATCH", "PUT", "DELETE"))


def start_server(lab: Lab, name: str, workers: int, **extra) -> Server:
    directory = lab.base / name
    directory.mkdir()
    return Server(directory, server_config(lab.fake, workers, **extra)).start(timeout=60)


def plan_via_bot(lab: Lab, server: Server, projects: int, tag: str, sample=None) -> tuple[float, int]:
    """Seconds from the webhook to the final plan comment, and forge write calls it made."""
    number = lab.pull(projects, tag)
    before = lab.writes()
    payload = github_pr_payload("opened", lab.fake, REPO, number)
    started = time.perf_counter()
    assert server.deliver_github("pull_request", payload, WEBHOOK_SECRET).status_code == 202
    while not lab.fake.wait_until(lambda: lab.final_comment(number), 0.02 if sample else 1.0):
        if sample:
            sample()
        if time.perf_counter() - started > 900:
            raise RuntimeError(f"no final plan comment on #{number}:\n{server.log()}")
    elapsed = time.perf_counter() - started
    server.wait_jobs_idle(timeout=300)  # the last status and outdated markings land after the comment
    assert f"{projects} with changes" in lab.final_comment(number), lab.final_comment(number)
    writes = lab.writes() - before
    lab.fake.set_state(REPO, number, closed=True)  # closing releases its locks for the next pull request
    server.deliver_github("pull_request", github_pr_payload("closed", lab.fake, REPO, number), WEBHOOK_SECRET)
    server.wait_jobs_idle(timeout=300)
    return elapsed, writes


def plan_by_hand(lab: Lab, work: Path, projects: int = 1, project_dirs: tuple[str, ...] = (), number: int = 0) -> float:
    """git clone + terraform init + plan of a pull request's projects (the last one's stacks/p00.. by
    default), one after another, as a person would run them (the same binary and plugin cache the bot uses)."""
    if work.exists():
        shutil.rmtree(work)
    env = dict(GIT_ENV, HOME=str(lab.base), TF_IN_AUTOMATION="1", TF_PLUGIN_CACHE_DIR=str(lab.plugin_cache))
    lab.plugin_cache.mkdir(exist_ok=True)
    pull = lab.fake.pull(REPO, number or lab.number)
    started = time.perf_counter()
    subprocess.run(["git", "clone", "-q", lab.repo.clone_url, str(work)], check=True, env=env)
    subprocess.run(["git", "checkout", "-q", pull.head_sha], cwd=work, check=True, env=env)
    tf = embedded_argv()
    for rel in project_dirs or tuple(f"stacks/p{i:02d}" for i in range(projects)):
        project = work / rel
        subprocess.run([*tf, "init", "-input=false", "-no-color"], cwd=project, check=True, env=env,
                       stdout=subprocess.DEVNULL)
        subprocess.run([*tf, "plan", "-input=false", "-no-color", "-out=tfplan", "-detailed-exitcode"],
                       cwd=project, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def web_processes(serve: psutil.Process) -> list[psutil.Process]:
    """serve and the web process granian forks from it."""
    web = forked_web_process(serve)
    return [serve, *([web] if web else [])]


def rss_tree(proc: psutil.Process) -> tuple[int, int]:
    """(serve's and its web process' RSS, sum of its worker subtrees' RSS) in bytes."""
    web = web_processes(proc)
    workers = 0
    for child in proc.children(recursive=True):
        try:
            if child not in web and "redis-server" not in " ".join(child.cmdline()):
                workers += child.memory_info().rss
        except psutil.Error:
            pass
    return sum(p.memory_info().rss for p in web), workers


def cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in processes)


# -- the figures ----------------------------------------------------------------------------

def bench_ack(lab: Lab, runs: int) -> dict:
    """One web process (`workers: 0`): 2,000 deliveries at 50 in flight, then 300 one at a time with
    the CPU time of serve and its web process per ack (psutil; the embedded Redis is not counted)."""
    server = start_server(lab, "ack", 0)
    web = web_processes(psutil.Process(server.proc.pid))
    number = lab.pull(1, "ack")
    payload = github_pr_payload("synchronize", lab.fake, REPO, number)
    p50, p99, worst, sequential, walls, cpu = [], [], [], [], [], []
    try:
        send(server.url, [make_delivery("pull_request", payload, WEBHOOK_SECRET) for _ in range(200)], 10)  # warm
        for _ in range(runs):
            result = send(server.url, [make_delivery("pull_request", payload, WEBHOOK_SECRET) for _ in range(2000)], 50)
            assert not result.errors and result.statuses == {202: 2000}, (result.errors[:3], result.statuses)
            ms = result.percentiles_ms()
            p50.append(ms["p50"]), p99.append(ms["p99"]), worst.append(ms["max"]), walls.append(result.wall)
            before = cpu_seconds(web)
            one = send(server.url, [make_delivery("pull_request", payload, WEBHOOK_SECRET) for _ in range(300)], 1)
            cpu.append((cpu_seconds(web) - before) / 300 * 1000)
            sequential.append(one.percentiles_ms()["p50"])
    finally:
        server.stop()
    return {"deliveries": 2000, "concurrency": 50, "p50_ms": median(p50), "p99_ms": median(p99),
            "max_ms": median(worst), "throughput_per_s": round(2000 / median(walls), 1),
            "sequential_p50_ms": median(sequential), "cpu_per_ack_ms": round(median(cpu), 2)}


def bench_e2e(lab: Lab, runs: int) -> dict:
    """Webhook to final plan comment on `serve` with 2 workers, ÷ the same clone + init + plan by
    hand; one project, then four. Each by-hand run right after the bot's, with the same commit."""
    server = start_server(lab, "e2e", 2)
    figures: dict[str, list[float]] = {"bot_1": [], "hand_1": [], "bot_4": [], "hand_4": []}
    try:
        for count in (1, 4):  # the first plans fill the mirror and the plugin cache: not timed
            plan_via_bot(lab, server, count, f"warm{count}")
            plan_by_hand(lab, lab.base / "by-hand", count)
        for i in range(runs):
            for count in (1, 4):
                figures[f"bot_{count}"].append(plan_via_bot(lab, server, count, f"e2e{count}-{i}")[0])
                figures[f"hand_{count}"].append(plan_by_hand(lab, lab.base / "by-hand", count))
    finally:
        server.stop()
    out = {k: median(v) for k, v in figures.items()}
    return {"workers": 2, **out, "ratio_1": round(out["bot_1"] / out["hand_1"], 2),
            "ratio_4": round(out["bot_4"] / out["hand_4"], 2)}


def bench_checkout(base: Path, runs: int) -> dict:
    """RepoCache: first checkout (mirror clone) vs the next one after a small push."""
    repo = GitRepo(base / "big", "big")
    files = {f"modules/m{i:03d}/f{j}.tf": f"# {i}-{j}\n" + "x" * 4000 + "\n" for i in range(150) for j in range(10)}
    repo.commit(files, "big")
    first, second, fetched = [], [], []
    for i in range(runs):
        cache = RepoCache(base / f"cache{i}", dict(os.environ))
        sha = repo.commit({"stacks/a/main.tf": tf_data(value=f"a{i}")}, f"a{i}")
        started = time.perf_counter()
        cache.checkout(repo.clone_url, sha, base / f"w{i}a")
        first.append(time.perf_counter() - started)
        before = _objects(cache)
        sha = repo.commit({"stacks/a/main.tf": tf_data(value=f"b{i}")}, f"b{i}")
        started = time.perf_counter()
        cache.checkout(repo.clone_url, sha, base / f"w{i}b")
        second.append(time.perf_counter() - started)
        fetched.append(_objects(cache) - before)
    return {"files": len(files), "first_s": median(first), "second_s": median(second),
            "ratio": round(median(second) / median(first), 2), "objects_fetched_second": int(median(fetched))}


def _objects(cache: RepoCache) -> int:
    mirror = next(cache.cache_dir.glob("*.git"))
    out = subprocess.run(["git", "count-objects", "-v"], cwd=mirror, capture_output=True, text=True).stdout
    counts = dict(line.split(": ") for line in out.splitlines())
    return int(counts["count"]) + int(counts["in-pack"])


def bench_trees(base: Path, runs: int) -> dict:
    """A pull request's kept work tree (runners.worktrees): its first checkout on a machine (the
    mirror fetched, a work tree made) vs the next commit's (fetch, then only the changed files
    written). Both until the job could plan: lease, fetch, check out, symlink check."""
    repo = GitRepo(base / "trees-repo", "big")
    files = {f"modules/m{i:03d}/f{j}.tf": f"# {i}-{j}\n" + "x" * 4000 + "\n" for i in range(150) for j in range(10)}
    repo.commit(files, "big")
    first, second, released, written = [], [], [], []
    for i in range(runs):
        trees = WorkTrees(base / f"trees{i}", RepoCache(base / f"trees-cache{i}", dict(os.environ)))
        for attempt, times in enumerate((first, second)):
            sha = repo.commit({"stacks/a/main.tf": tf_data(value=f"{i}-{attempt}")}, f"{i}-{attempt}")
            work = base / f"trees-job{i}-{attempt}"
            work.mkdir()
            kept = _file_versions(trees.slot("github.com/acme/big", "pull-1") / "tree")
            started = time.perf_counter()
            lease = trees.lease("github.com/acme/big", "pull-1", work / "repo")
            trees.check_out(lease, repo.clone_url, sha)
            check_symlinks(lease.tree, skip=[f"{d}/.terraform" for d in lease.kept])
            times.append(time.perf_counter() - started)
            assert lease.reused == (attempt == 1)
            if lease.reused:
                now = _file_versions(lease.tree)
                written.append(sum(1 for path, version in now.items() if kept.get(path) != version))
            lease.ready = True
            # the job's work (a plan) before it gives the tree back: git compares the index's file
            # times by the second, and a tree given back within the second it was written in would
            # be read whole at the next checkout
            time.sleep(JOB_SECONDS)
            started = time.perf_counter()
            trees.release(lease)
            released.append(time.perf_counter() - started)
    return {"files": len(files), "first_s": median(first), "second_s": median(second),
            "ratio": round(median(second) / median(first), 2), "release_s": median(released),
            "files_written_second": int(statistics.median(written))}


def _file_versions(tree: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every file in the work tree but git's own: a file written anew differs."""
    versions = {}
    for directory, dirs, files in os.walk(tree):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in files:
            path = os.path.join(directory, name)
            if name != ".git":
                info = os.lstat(path)
                versions[os.path.relpath(path, tree)] = (info.st_ino, info.st_mtime_ns)
    return versions


def module_heavy_files(modules: int = 30) -> dict[str, str]:
    """A root calling `modules` local modules, each with two resources and a nested module."""
    files = {"stacks/heavy/main.tf": "".join(f'module "m{i:02d}" {{\n  source = "../../modules/m{i:02d}"\n'
                                             f'  name   = "m{i:02d}"\n}}\n\n' for i in range(modules))}
    for i in range(modules):
        files[f"modules/m{i:02d}/main.tf"] = (
            'variable "name" {}\n\nmodule "inner" {\n  source = "../inner"\n}\n\n'
            'resource "terraform_data" "a" {\n  input = var.name\n}\n\n'
            'resource "terraform_data" "b" {\n  input = "${var.name}-b"\n}\n')
    files["modules/inner/main.tf"] = 'resource "terraform_data" "i" {\n  input = "inner"\n}\n'
    return files


class Replan:
    """One pull request per root on the lab's repository, re-planned in its kept work tree with
    the runner a job uses (bot.engines.runner_for: sandbox, CLI config, init records)."""

    def __init__(self, lab: Lab, name: str, project_dir: str, files: dict[str, str]):
        self.lab, self.name, self.project_dir, self.files = lab, name, project_dir, files
        lab.number += 1
        self.number, self.branch = lab.number, f"replan-{name}"
        lab.repo.checkout("main")
        self.head = lab.repo.commit(files, f"{name} root", branch=self.branch)
        lab.repo.checkout("main")
        lab.fake.add_pull(REPO, self.number, self.head, self.branch, "main", "alice", files=list(files),
                          base_sha=lab.base_sha)
        data = lab.base / f"replan-{name}"
        self.settings = dataclasses.replace(load_settings(None, {}), data_dir=data,
                                            terraform=TerraformSettings(binary="embedded", timeout=300))
        self.trees = WorkTrees(data / "trees", RepoCache(data / "git-cache", dict(os.environ)))
        self.jobs = 0

    def push(self, tag: str) -> None:
        """A plan-only change: the value of the root's own resource."""
        path = f"{self.project_dir}/extra.tf"
        self.lab.repo.checkout(self.branch)
        self.head = self.lab.repo.commit({path: tf_data("extra", tag)}, tag, branch=self.branch)
        self.lab.repo.checkout("main")
        self.lab.fake.push(REPO, self.number, self.head)

    def plan(self) -> tuple[float, str]:
        """Seconds from taking the kept tree to the plan's result (the comment and the release of
        the tree come after), and the init note."""
        self.jobs += 1
        workspace = create_workspace(self.settings.data_dir / "work", f"job{self.jobs}")
        started = time.perf_counter()
        lease = self.trees.lease("github.com/acme/infra", f"pull-{self.number}", workspace.resolve("repo"))
        self.trees.check_out(lease, self.lab.repo.clone_url, self.head)
        check_symlinks(lease.tree, skip=[f"{d}/.terraform" for d in lease.kept])
        lease.ready = True
        project_dir = lease.tree / self.project_dir
        runner = runner_for(Project(self.project_dir), self.settings, workspace, project_dir=project_dir,
                            init_records=lease.records)
        result = runner.plan(project_dir, "default", workspace.resolve("out"))
        elapsed = time.perf_counter() - started
        assert result.ok and result.has_changes, (result.error, result.output[-2000:])
        self.trees.release(lease)
        workspace.cleanup()
        return elapsed, result.init_note


def bench_replan(lab: Lab, runs: int) -> dict:
    """A second plan on the same pull request (kept tree updated in place, init skipped) vs the
    same clone + init + plan by hand, for a provider-free root and a module-heavy one."""
    out: dict = {}
    roots = (("provider_free", "stacks/light", {"stacks/light/main.tf": tf_data("x", "light"),
                                                 "stacks/light/extra.tf": tf_data("extra", "initial")}),
             ("module_heavy", "stacks/heavy", {**module_heavy_files(), "stacks/heavy/extra.tf": tf_data("extra", "a")}))
    for name, project_dir, files in roots:
        replan = Replan(lab, name, project_dir, files)
        first, note = replan.plan()  # the pull request's first plan: makes the tree, runs init
        assert note == "init ran: first init in this work tree", note
        plan_by_hand(lab, lab.base / "by-hand", project_dirs=(project_dir,), number=replan.number)  # warm the page cache
        bot, hand, notes = [], [], set()
        for i in range(runs):
            replan.push(f"{name}-{i}")
            elapsed, note = replan.plan()
            bot.append(elapsed)
            notes.add(note)
            hand.append(plan_by_hand(lab, lab.base / "by-hand", project_dirs=(project_dir,), number=replan.number))
        modules = sum(1 for f in files if f.startswith("modules/")) if name == "module_heavy" else 0
        out[name] = {"first_plan_s": round(first, 4), "replan_s": median(bot), "by_hand_s": median(hand),
                     "ratio": round(median(bot) / median(hand), 2), "init": sorted(notes), "local_modules": modules}
    return out


def bench_fanout(lab: Lab, runs: int) -> dict:
    out: dict = {"projects": 16, "workers": {}, "writes": {}, "memory_mb": {}}
    for workers in (1, 2, 4):
        server = start_server(lab, f"fan{workers}", workers)
        proc = psutil.Process(server.proc.pid)
        peaks = {"web": 0, "workers": 0}

        def sample() -> None:
            web, wk = rss_tree(proc)
            peaks["web"], peaks["workers"] = max(peaks["web"], web), max(peaks["workers"], wk)

        try:
            plan_via_bot(lab, server, 16, f"warm{workers}")  # warm the mirror
            time.sleep(1)
            idle = rss_tree(proc)
            times = []
            for i in range(runs):
                elapsed, writes = plan_via_bot(lab, server, 16, f"w{workers}-{i}", sample)
                times.append(elapsed)
                out["writes"].setdefault("16", []).append(writes)
            out["workers"][str(workers)] = median(times)
            out["memory_mb"][str(workers)] = {
                "web_idle": round(idle[0] / 2**20, 1), "workers_idle": round(idle[1] / 2**20, 1),
                "web_peak": round(peaks["web"] / 2**20, 1), "workers_peak": round(peaks["workers"] / 2**20, 1)}
            if workers == 2:
                for count in (1, 4):
                    out["writes"][str(count)] = [plan_via_bot(lab, server, count, f"n{count}-{i}")[1]
                                                 for i in range(runs)]
        finally:
            server.stop()
    one = out["workers"]["1"]
    out["speedup"] = {w: round(one / t, 2) for w, t in out["workers"].items()}
    out["writes"] = {n: int(statistics.median(v)) for n, v in out["writes"].items()}
    out["writes_target"] = {n: 4 + int(n) for n in out["writes"]}
    return out


def table(results: dict) -> str:
    rows: list[tuple[str, str, str]] = []
    if "ack" in results:
        ack = results["ack"]
        burst = f"p50 {ack['p50_ms']} ms · p99 {ack['p99_ms']} ms · max {ack['max_ms']} ms · {ack['throughput_per_s']}/s"
        rows += [("Webhook ack, 2,000 at 50 in flight", burst, "target p99 ≤ 100 ms, ≥ 500/s"),
                 ("Webhook ack one at a time", f"p50 {ack['sequential_p50_ms']} ms · CPU {ack.get('cpu_per_ack_ms')} ms",
                  "target CPU ≤ 1.5 ms")]
    if "e2e" in results:
        e2e = results["e2e"]
        rows += [("End-to-end plan / by hand, 1 project", f"{e2e['bot_1']} s / {e2e['hand_1']} s = {e2e['ratio_1']}×",
                  "target ≤ 1.1"),
                 ("End-to-end plan / by hand, 4 projects, 2 workers",
                  f"{e2e['bot_4']} s / {e2e['hand_4']} s = {e2e['ratio_4']}×", "target ≤ 1.0")]
    if "checkout" in results:
        co = results["checkout"]
        rows.append(("Second checkout / first", f"{co['second_s']} s / {co['first_s']} s = {co['ratio']}×",
                     f"{co['objects_fetched_second']} objects fetched; target ≤ 0.2"))
    if "fanout" in results:
        fan = results["fanout"]
        rows += [("16 projects on 1 / 2 / 4 workers", " / ".join(f"{fan['workers'][w]} s" for w in ("1", "2", "4")),
                  "speed-up " + " / ".join(f"{fan['speedup'][w]}×" for w in ("1", "2", "4"))),
                 ("Forge writes per plan (1 / 4 / 16 projects)", " / ".join(str(fan["writes"][n]) for n in ("1", "4", "16")),
                  "target " + " / ".join(str(fan["writes_target"][n]) for n in ("1", "4", "16")))]
        for w, mem in fan["memory_mb"].items():
            rows.append((f"RSS MiB, {w} worker(s): web / workers", f"idle {mem['web_idle']} / {mem['workers_idle']}",
                         f"16-project plan {mem['web_peak']} / {mem['workers_peak']}"))
    rows += _trees_rows(results) if "trees" in results else []
    rows += _replan_rows(results) if "replan" in results else []
    width = max((len(r[0]) for r in rows), default=0)
    return "\n".join(f"{a:<{width}}  {b}  ({c})" for a, b, c in rows)


def _trees_rows(results: dict) -> list[tuple[str, str, str]]:
    t = results["trees"]
    measured = f"{t['second_s']} s / {t['first_s']} s = {t['ratio']}×"
    return [("Second checkout of the same PR / first (kept tree)", measured,
             f"{t['files_written_second']} of {t['files']} files written; release after the job {t['release_s']} s; "
             "target ≤ 0.2")]


def _replan_rows(results: dict) -> list[tuple[str, str, str]]:
    rows = []
    for name, r in results["replan"].items():
        rows.append((f"Re-plan / clone + init + plan by hand, {name.replace('_', '-')} root",
                     f"{r['replan_s']} s / {r['by_hand_s']} s = {r['ratio']}×",
                     f"{'; '.join(r['init'])}; target ≤ 0.6"))
    return rows



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default="", help="comma-separated sections (ack, e2e, checkout, trees, replan, fanout); "
                        "the others keep their last figures in results.json")
    args = parser.parse_args()
    runs = max(args.runs, 5)
    base = Path(tempfile.mkdtemp(prefix="plankeeper-bench-"))
    lab = Lab(base)
    results: dict = json.loads(RESULTS.read_text()) if args.only and RESULTS.exists() else {}
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform(), "runs": runs,
                          "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    sections = (("ack", lambda: bench_ack(lab, runs)), ("e2e", lambda: bench_e2e(lab, runs)),
                ("checkout", lambda: bench_checkout(base, runs)), ("trees", lambda: bench_trees(base, runs)),
                ("replan", lambda: bench_replan(lab, runs)), ("fanout", lambda: bench_fanout(lab, runs)))
    wanted = set(args.only.split(",")) if args.only else {name for name, _ in sections}
    try:
        for name, fn in sections:
            if name not in wanted:
                continue
            os.sync()  # each section starts with the last one's writes on disk, not being flushed under it
            started = time.time()
            results[name] = fn()
            print(f"{name}: {results[name]} ({time.time() - started:.0f}s)", flush=True)
    finally:
        lab.fake.stop()
        shutil.rmtree(base, ignore_errors=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
