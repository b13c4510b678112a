"""Which runner plans a project: the one place that turns settings into a Runner.

TerraformRunner for the default workflow, WorkflowRunner for a custom one, KubectlRunner for
`engine: kubectl`. A project's terraform_version (or an exact required_version in its root
module) picks a binary from terraform.binaries, else is downloaded once into
data_dir/terraform-versions (runners.terraform_install) when terraform.download is on. Every
runner gets the job's sandbox (runners.sandbox): what a process running a pull request's code
may see of this machine.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from bot import selection
from bot.errors import UserFacingError
from bot.settings import Settings
from runners.base import Runner
from runners.embedded_terraform import embedded_paths
from runners.environment import minimal_env, path_values
from runners.git import GitError, run_git
from runners.git_credentials import HELPER as GIT_CREDENTIAL_HELPER, GitCredentials
from runners.incremental_init import InitRecords
from runners.models import Project
from runners.process import SessionPool
from runners.repo_config_schema import EffectiveProject
from runners.sandbox import BUBBLEWRAP, NO_SANDBOX, NONE, Sandbox, probe
from runners.terraform import TerraformRunner
from runners.terraform_binaries import MissingBinary, resolve_binary
from runners.terraform_install import InstallError, exact_version, install, required_version
from runners.terraform_config import write_cli_config
from runners.kubectl import KubectlRunner
from runners.workflows import WorkflowRunner, comment_args
from runners.workspace import PathEscape, Workspace
from runners.worktrees import shared_git_dir

BASE_DIR = "base"  # render-only mode: the pull request's base checkout, next to the head's
CLI_CONFIG = "terraform.tfrc"  # in data_dir: the TF_CLI_CONFIG_FILE of every Terraform
PROVIDER_MIRROR = "provider-mirror"  # in data_dir: read-only providers the operator may put there
GIT_CACHE = "git-cache"  # in data_dir: one mirror per repository (runners.git.RepoCache)
PLUGIN_CACHE = "plugin-cache"  # in the job's work dir: a job never shares what it downloads
TERRAFORM_VERSIONS = "terraform-versions"  # in data_dir: downloaded releases, shared by every job


def parent_environment() -> dict[str, str]:
    """The server's environment, from which runners.environment keeps only an allowlist."""
    return dict(os.environ)


def own_secret_values(settings: Any) -> set[str]:
    """The values of every secret setting (forge tokens, webhook secrets, UI password, ...)."""
    found: set[str] = set()
    items = [settings]
    while items:
        item = items.pop()
        if isinstance(item, tuple):
            items += item
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            for spec in dataclasses.fields(item):
                value = getattr(item, spec.name)
                if spec.metadata.get("secret") and isinstance(value, str) and value:
                    found.add(value)
                elif isinstance(value, tuple) or dataclasses.is_dataclass(value):
                    items.append(value)
    return found


def process_env(settings: Settings, workspace: Workspace, extra: Mapping[str, str] = {}) -> dict[str, str]:
    """runners.environment.minimal_env of the server's environment plus terraform.env_passthrough,
    without any variable holding one of the bot's own secret values, then extra."""
    own = own_secret_values(settings)
    parent = {k: v for k, v in parent_environment().items() if v not in own}
    return minimal_env(parent, workspace.home, workspace.tmp, extra, settings.terraform.env_passthrough)


def repo_env(settings: Settings, repo_id: Optional[str]) -> dict[str, str]:
    """repos[].env of the repository, files read now. Raises UserFacingError for a file it
    cannot read (naming the variable, never a value)."""
    if not repo_id:
        return {}
    env = {}
    for name, value in settings.repo_settings(repo_id).env.items():
        if isinstance(value, str):
            env[name] = value
            continue
        try:
            env[name] = Path(value["file"]).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserFacingError(f"The server cannot read the file of `{name}` (repos[].env): "
                                  f"{getattr(exc, 'strerror', None) or type(exc).__name__}.") from None
    return env


def runner_for(project: Project, settings: Settings, workspace: Workspace,
               effective: Optional[EffectiveProject] = None, step_env: Optional[Mapping[str, str]] = None,
               terraform_version: Optional[str] = None, project_dir: Optional[Path] = None,
               repo_id: Optional[str] = None, git_credentials: Optional[GitCredentials] = None,
               init_records: InitRecords | None = None, sessions: SessionPool | None = None) -> Runner:
    """The runner for the project's engine, with a private HOME/TMPDIR in the workspace.

    project_dir (the project's directory in the checkout) lets an exact `required_version` of its
    .tf files pick the version when terraform_version is unset. repo_id adds that repository's
    repos[].env to a Terraform project's environment; git_credentials are offered to git during
    its inits (JobContext.git_credentials). init_records (the checkout is a kept work tree:
    JobContext.init_records) lets Terraform skip an init that would change nothing; sessions (the
    job's) keep the embedded Terraform loaded between its commands and projects. Raises
    UserFacingError when no configured binary fits the project's terraform_version or
    terraform_distribution, when its download fails, when the kubectl binary is missing, or when a
    repos[].env file is unreadable.
    """
    if project.engine == "kubectl":
        env = process_env(settings, workspace)
        return _kubectl_runner(settings, env, effective, _applyset_name(project, step_env or {}), workspace)
    version = terraform_version or (effective.terraform_version if effective else None)
    distribution = effective.terraform_distribution if effective else "terraform"
    terraform = _terraform_runner(settings, workspace, repo_id, version, distribution, project_dir,
                                  git_credentials, init_records, sessions)
    if effective is None or effective.workflow.is_default:
        return terraform
    step = dict(step_env or {})
    if version:
        step.setdefault("ATLANTIS_TERRAFORM_VERSION", version)
    return WorkflowRunner(terraform, effective.workflow, step, settings.terraform.timeout, terraform.env)


def _terraform_runner(settings: Settings, workspace: Workspace, repo_id: Optional[str], version: Optional[str],
                      distribution: str, project_dir: Optional[Path], git_credentials: Optional[GitCredentials],
                      init_records: InitRecords | None, sessions: SessionPool | None) -> TerraformRunner:
    env = process_env(settings, workspace, repo_env(settings, repo_id))
    argv0 = _terraform_argv(settings, env.get("PATH", ""), version, distribution, project_dir)
    return TerraformRunner(argv0, env, settings.terraform.timeout,
                           plugin_cache_dir=workspace.root / PLUGIN_CACHE, cli_config=cli_config(settings),
                           sandbox=job_sandbox(settings, workspace, argv0[:1]), git_credentials=git_credentials,
                           init_records=init_records, sessions=sessions)


def prestart_terraform(settings: Settings, workspace: Workspace, repo_id: str, sessions: SessionPool,
                       init_records: InitRecords | None) -> None:
    """Start the job's embedded Terraform session once its checkout is there, while projects are
    selected and the comment posted (TerraformRunner.prestart), for the runner a project with no
    version pin gets. A wrong guess (a pinned version) costs one idle start-up: the pool replaces
    it at the first command. Not before the checkout: the sandbox binds its .git read-only, so
    only a sandbox started after it may run the pull request's code. Best effort."""
    try:
        runner = _terraform_runner(settings, workspace, repo_id, None, "terraform", None, None, init_records, sessions)
        runner.prestart(workspace.root)
    except (UserFacingError, OSError):
        pass  # what fails here fails again, reported, when the project runs


def _terraform_argv(settings: Settings, path: str, version: Optional[str], distribution: str,
                    project_dir: Optional[Path] = None) -> list[str]:
    try:
        if not version and project_dir is not None and settings.terraform.binary == "auto":
            version = _required_version(settings, project_dir, distribution)
        if version:
            return _versioned_argv(settings, path, version, distribution)
        if distribution == "opentofu" and not version and settings.terraform.binary in ("auto", "embedded"):
            found = shutil.which("tofu", path=path)
            if not found:
                raise MissingBinary("no `tofu` binary on PATH: install OpenTofu or set terraform.binary")
            return [found]
        return resolve_binary(settings.terraform.binary, path, version=version,
                              binaries=settings.terraform.binaries, distribution=distribution)
    except MissingBinary as exc:
        raise UserFacingError(
            f"Cannot run this project with {distribution} {version or ''}: {exc}.".replace("  ", " "),
            title="Missing Terraform version") from exc


def _required_version(settings: Settings, project_dir: Path, distribution: str) -> Optional[str]:
    """The exact required_version of the project's .tf files, when it can be honoured (downloaded
    or found in terraform.binaries); None keeps terraform.binary's choice."""
    pinned = required_version(project_dir)
    if pinned is None or settings.terraform.download:
        return pinned
    try:
        resolve_binary("auto", "", version=pinned, binaries=settings.terraform.binaries, distribution=distribution)
    except MissingBinary:
        return None
    return pinned


def _versioned_argv(settings: Settings, path: str, version: str, distribution: str) -> list[str]:
    """terraform.binaries first; else the release, downloaded once (terraform.download)."""
    tf = settings.terraform
    try:
        return resolve_binary(tf.binary, path, version=version, binaries=tf.binaries, distribution=distribution)
    except MissingBinary as exc:
        exact = exact_version(version)
        if not tf.download:
            raise
        if exact is None:
            raise MissingBinary(f"{exc}; only an exact version (such as 1.6.2) can be downloaded") from exc
    url = tf.tofu_download_url if distribution == "opentofu" else tf.download_url
    try:
        return [str(install(distribution, exact, Path(settings.data_dir).resolve() / TERRAFORM_VERSIONS, url))]
    except InstallError as exc:
        raise UserFacingError(f"Cannot install {exc} (server setting terraform.download).",
                              title="Terraform download failed") from exc


def _kubectl_runner(settings: Settings, env: dict[str, str], effective: Optional[EffectiveProject],
                    applyset: str, workspace: Workspace) -> Runner:
    kube = settings.kubectl
    path = env.get("PATH", "")
    kubectl = shutil.which(kube.binary, path=path)
    if kubectl is None:
        raise UserFacingError(
            f"Cannot run this Kubernetes project: the kubectl binary `{kube.binary}` was not found. Install "
            "kubectl on the server or point the server setting `kubectl.binary` at it.", title="Missing kubectl")
    # context and namespace: server settings only (merge_with_server copies them from the server
    # side repo config); render, prune and values come from the repo file
    cfg = effective.kubectl if effective is not None else None
    helm = shutil.which(kube.helm, path=path)
    programs = [kubectl, *([helm] if helm else []), *([str(kube.kubeconfig)] if kube.kubeconfig else [])]
    return KubectlRunner(
        kubectl=kubectl, helm=helm, env=env, sandbox=job_sandbox(settings, workspace, programs),
        timeout=settings.terraform.timeout, kubeconfig=str(kube.kubeconfig) if kube.kubeconfig else None,
        context=(cfg.context if cfg and cfg.context else kube.context), namespace=cfg.namespace if cfg else None,
        render=cfg.render if cfg else "plain", prune=cfg.prune if cfg else False,
        helm_values=cfg.values if cfg else (), applyset=applyset,
    )


def _applyset_name(project: Project, step_env: Mapping[str, str]) -> str:
    """The ApplySet (parent Secret) of one project: prune must never touch another project's objects."""
    repo = f"{step_env.get('BASE_REPO_OWNER', '')}/{step_env.get('BASE_REPO_NAME', '')}"
    return "plankeeper-" + hashlib.sha256(f"{repo}:{project.key}".encode()).hexdigest()[:12]


def render_only(project: Project, settings: Settings) -> bool:
    """True when the project is planned without a cluster: its plan diffs base and head manifests."""
    return project.engine == "kubectl" and settings.kubectl.kubeconfig is None


def render_base_dir(ctx: Any, pull: Any, repo_dir: str, project: Project) -> Optional[Path]:
    """For a render-only project, its directory in a checkout of the pull request's merge base.

    ctx is a bot.context.JobContext, pull a bot.models.PullRequest. None when the project
    is planned against a cluster, or when the base cannot be checked out (then the job log says
    why and every object shows as new).
    """
    if not render_only(project, ctx.settings):
        return None
    try:
        if not ctx.workspace.resolve(BASE_DIR).exists():
            sha = _merge_base(ctx.workspace.resolve(repo_dir), pull, ctx.repo_cache().base_env)
            ctx.checkout(pull, sha=sha, subdir=BASE_DIR)
        return selection.project_dir(ctx.workspace, BASE_DIR, project)
    except (UserFacingError, PathEscape, GitError) as exc:  # no base to diff: diff against nothing
        ctx.log(f"[{project.label}] base of the pull request not checked out ({getattr(exc, 'message', exc)}): "
                "every object is shown as new")
        return None


def _merge_base(head_checkout: Path, pull: Any, git_env: Mapping[str, str]) -> str:
    """Where the pull request's branch left its base, as the forge's diff shows it; falls back
    to the base commit the forge reported when git cannot tell."""
    base = pull.base_sha or f"origin/{pull.base_ref}"
    try:
        return run_git(head_checkout, ["merge-base", base, pull.head_sha], git_env,
                       f"find where {pull.head_sha[:12]} left {base}").strip()
    except GitError:
        if pull.base_sha:
            return pull.base_sha
        raise


def step_env_for(pull, project: Project, repo_rel_dir: str, extra_args=(), user: str = "") -> dict[str, str]:
    """The Atlantis step variables about the pull request (pull: bot.models.PullRequest).

    Values may come from users (branch names, authors): they are only ever passed as
    environment variables, never put into a command line.
    """
    owner, _, name = pull.repo.full_name.rpartition("/")
    return {
        "PROJECT_NAME": project.name or "", "PULL_NUM": str(pull.number), "PULL_AUTHOR": pull.author,
        "PULL_URL": pull.url, "HEAD_COMMIT": pull.head_sha, "HEAD_BRANCH_NAME": pull.head_ref,
        "BASE_BRANCH_NAME": pull.base_ref, "BASE_REPO_OWNER": owner, "BASE_REPO_NAME": name,
        "HEAD_REPO_OWNER": owner, "HEAD_REPO_NAME": name, "USER_NAME": user or pull.author,
        "COMMENT_ARGS": comment_args(extra_args), "REPO_REL_DIR": repo_rel_dir,
    }


def cli_config(settings: Settings) -> Path:
    """The bot's Terraform CLI configuration (runners.terraform_config), written in data_dir,
    outside every work dir, and read-only in the sandbox."""
    data_dir = Path(settings.data_dir).resolve()  # Terraform reads it from the project's directory
    mirror = data_dir / PROVIDER_MIRROR
    return write_cli_config(data_dir / CLI_CONFIG, [mirror] if mirror.is_dir() else [])


def sandbox_status(settings: Settings) -> tuple[str, str]:
    """The sandbox jobs run in: ("bubblewrap", "") or ("none", what that exposes and how to fix it).

    For `serve`'s start and /healthz. "auto" uses bubblewrap when `bwrap` is on PATH and can
    create namespaces here; "bubblewrap" requires it (jobs are refused without it).
    """
    if settings.sandbox == NONE:
        return NONE, ("sandbox: none: Terraform, kubectl and workflow steps run code from pull requests as the "
                      "bot's own user, able to read its config, data_dir, other jobs and the Redis socket")
    bwrap = shutil.which("bwrap")
    problem = probe(bwrap) if bwrap else "`bwrap` is not on PATH (install the bubblewrap package)"
    if not problem:
        return BUBBLEWRAP, ""
    if settings.sandbox == BUBBLEWRAP:
        return NONE, f"sandbox: bubblewrap, but {problem}: every job is refused until it works"
    return NONE, (f"no sandbox: {problem}. Terraform, kubectl and workflow steps run code from pull requests "
                  "as the bot's own user, able to read its config, data_dir, other jobs and the Redis socket. "
                  "Install bubblewrap (and allow user namespaces), or set `sandbox: none` to accept this")


def _mirrors_of_work_trees(settings: Settings, workspace: Workspace) -> list[Path]:
    """The mirror (in data_dir's git cache) each kept work tree of the job reads its objects
    from, read-only, so that git works in the sandbox as in a clone: the same repository's
    commits, nothing of any other."""
    cache = os.path.realpath(Path(settings.data_dir) / GIT_CACHE)
    found = [shared_git_dir(checkout.parent) for checkout in sorted(workspace.root.glob("*/.git"))]
    return [path for path in found if path is not None and os.path.realpath(path).startswith(cache + os.sep)]


def job_sandbox(settings: Settings, workspace: Workspace, programs: Sequence[str] = ()) -> Sandbox:
    """The sandbox of one job's processes: its work dir writable, except its checkouts' .git; the
    programs it runs, the embedded Terraform, the CLI config, the provider mirror, the credential
    files named by the server's environment and `sandbox_paths` readable. Raises UserFacingError when
    `sandbox: bubblewrap` is set and bubblewrap does not work."""
    kind, problem = sandbox_status(settings)
    if kind == NONE:
        if settings.sandbox == BUBBLEWRAP:
            raise UserFacingError(f"Nothing was run: the server requires a sandbox ({problem}).",
                                  title="No sandbox")
        return NO_SANDBOX
    read_only = [Path(f(p)) for p in programs if "/" in p for f in (os.path.abspath, os.path.realpath)]
    read_only += [*embedded_paths(), cli_config(settings), Path(settings.data_dir).resolve() / PROVIDER_MIRROR,
                  GIT_CREDENTIAL_HELPER]
    read_only += path_values(minimal_env(parent_environment(), workspace.home, workspace.tmp))
    # the checkouts' .git stay read-only: the bot runs git there later, outside the sandbox, and a
    # .git/config written by a pull request (core.fsmonitor, core.sshCommand) would run its code
    read_only += sorted(workspace.root.glob("*/.git"))
    read_only += _mirrors_of_work_trees(settings, workspace)
    writable = [workspace.root]
    for entry in settings.sandbox_paths:
        path, _, mode = entry.rpartition(":") if entry.endswith((":ro", ":rw")) else (entry, "", "ro")
        if mode == "rw":  # made if missing: what a job writes there must outlive its sandbox
            Path(path).mkdir(parents=True, exist_ok=True)
        (writable if mode == "rw" else read_only).append(Path(path))
    bwrap = shutil.which("bwrap") or "bwrap"
    return Sandbox(BUBBLEWRAP, bwrap, tuple(map(Path.absolute, read_only)), tuple(map(Path.absolute, writable)))
